"""Writing files and folders so that readers see them whole or not at all,
and reading the JSON files users hand us with errors that name them.

Every writer in the package that must not leave half a result behind
(record shards, predictions, checkpoints, exports, the demo cache) goes
through this module.
"""

import contextlib
import json
import os
import pathlib
import shutil
import time
import uuid
from typing import Callable, Iterator, Optional, Type

# Staged folders are siblings named `.<name>.<kind>-<32 hex digits>`.
_STAGING = 'staging'
_OLD = 'old'


def write_atomically(path: str, write: Callable[[str], None],
                     temporary: Optional[str] = None) -> None:
    """Calls `write(temporary)`, then renames the temporary file to `path`.

    The default temporary name keeps the extension (`a.tmp.png` for
    `a.png`), so writers that infer the format from it still work. On
    failure the temporary file is removed and `path` is left as it was.
    """
    if temporary is None:
        root, extension = os.path.splitext(path)
        temporary = f'{root}.tmp{extension}'
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def sibling_path(path: pathlib.Path, kind: str) -> pathlib.Path:
    """A fresh hidden sibling of `path`: `.<name>.<kind>-<uuid hex>`."""
    return path.parent / f'.{path.name}.{kind}-{uuid.uuid4().hex}'


def is_sibling_of(candidate: pathlib.Path, path: pathlib.Path) -> bool:
    """Whether `candidate` is a staging or old sibling made for `path`."""
    name = candidate.name
    for kind in (_STAGING, _OLD):
        prefix = f'.{path.name}.{kind}-'
        if name.startswith(prefix) and len(name) == len(prefix) + 32:
            return True
    return False


def remove_stale_siblings(path, older_than_s: float = 0.0) -> list:
    """Deletes staging/old siblings of `path` left by killed writers;
    `older_than_s` spares those a running writer may still be filling.
    Returns the removed paths."""
    path = pathlib.Path(path)
    if not path.parent.is_dir():
        return []
    now, removed = time.time(), []
    for candidate in path.parent.iterdir():
        if not is_sibling_of(candidate, path):
            continue
        try:
            age = now - candidate.stat().st_mtime
        except FileNotFoundError:  # Another process removed it first.
            continue
        if age >= older_than_s:
            remove(candidate)
            removed.append(candidate)
    return removed


def remove(path: pathlib.Path) -> None:
    """Deletes a file or a folder tree; a missing path is not an error."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextlib.contextmanager
def staged_folder(path, replace: bool = False) -> Iterator[pathlib.Path]:
    """Yields an empty staging folder that becomes `path` on success.

    On an exception the staging folder is deleted and `path` is untouched.
    If `path` exists at the end: with `replace`, the old one is moved aside,
    the new one moved in, and only then the old one deleted (a failure puts
    the old one back); without it, FileExistsError (the caller decides
    whether another writer winning the race is fine).
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = sibling_path(path, _STAGING)
    staging.mkdir()
    try:
        yield staging
        _move_into_place(staging, path, replace)
    finally:
        if staging.exists():
            remove(staging)


def _move_into_place(staging: pathlib.Path, path: pathlib.Path,
                     replace: bool) -> None:
    if not path.exists():
        try:
            os.rename(staging, path)
            return
        except OSError:
            if not path.exists():  # Not a lost race: a real fault.
                raise
    if not replace:
        raise FileExistsError(f'{path} already exists.')
    old = sibling_path(path, _OLD)
    os.replace(path, old)
    try:
        os.replace(staging, path)
    except OSError:
        os.replace(old, path)
        raise
    remove(old)


def read_json_object(path: str, what: str,
                     error: Type[ValueError] = ValueError) -> dict:
    """The JSON object in file `path`; `what` names the file's role in
    errors ('Dataset spec'). A missing file is FileNotFoundError; text that
    is not JSON, or JSON that is not an object, raises `error`."""
    try:
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f'{what} not found: {path}') from None
    except (UnicodeDecodeError, json.JSONDecodeError) as problem:
        raise error(f'{path}: not a JSON {what.lower()}: {problem}'
                    ) from None
    if not isinstance(data, dict):
        raise error(f'{path}: must be a JSON object.')
    return data
