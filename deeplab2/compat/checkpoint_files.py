"""Where a checkpoint's files are, and whether they can be read.

A checkpoint is named by its prefix, by a folder holding one or more (the
`checkpoint` file names the latest), or by a model-zoo .tar.gz that is
extracted into a temporary folder for as long as it is read. Whatever TF's
reader raises for damaged files becomes one CorruptCheckpointError naming
the checkpoint, so a user learns which download to repeat.
"""

import contextlib
import gzip
import pathlib
import shutil
import tarfile
import tempfile
import zlib

from google.protobuf import message as message_lib
import tensorflow as tf


class CorruptCheckpointError(ValueError):
    """The checkpoint's files (or its archive) cannot be read: truncated,
    damaged or partly missing. Names the checkpoint."""


@contextlib.contextmanager
def unreadable_is_corrupt(prefix: str):
    """Turns what TF's checkpoint reader raises for damaged files (an
    OpError such as DataLossError or NotFoundError, IndexError "Read less
    bytes than requested" for a cut `.data-*`, DecodeError for a damaged
    object graph) into one CorruptCheckpointError naming `prefix`."""
    try:
        yield
    except (tf.errors.OpError, IndexError,
            message_lib.DecodeError) as error:
        detail = getattr(error, 'message', None) or str(error)
        prefix_path = pathlib.Path(prefix)
        files = sorted(path.name for path in
                       prefix_path.parent.glob(prefix_path.name + '.*'))
        raise CorruptCheckpointError(
            f'Checkpoint {prefix} cannot be read: its files are truncated, '
            f'corrupt or incomplete ({detail.strip()}). Files present: '
            f'{", ".join(files) or "none"}. Copy or download the '
            'checkpoint again.') from None


class checkpoint_prefix:
    """Context manager: the checkpoint prefix behind `path`, extracting a
    .tar.gz into a temporary folder that is removed afterwards."""

    def __init__(self, path):
        self._path = pathlib.Path(path)
        self._tmp = None

    def __enter__(self) -> str:
        path = self._path
        if path.name.endswith(('.tar.gz', '.tgz', '.tar')):
            if not path.is_file():
                raise FileNotFoundError(f'Checkpoint archive not found: {path}')
            self._tmp = tempfile.mkdtemp(prefix='deeplab2_ckpt_')
            _extract(path, self._tmp)
            path = pathlib.Path(self._tmp)
        return _find_prefix(path, original=self._path)

    def __exit__(self, *exc):
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)


def _extract(archive: pathlib.Path, folder: str) -> None:
    """Extracts `archive` into `folder`, which is removed again on failure
    (__exit__ does not run when __enter__ raises)."""
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(folder, filter='data')
    except (tarfile.TarError, EOFError, zlib.error,
            gzip.BadGzipFile) as error:
        shutil.rmtree(folder, ignore_errors=True)
        raise CorruptCheckpointError(
            f'Checkpoint archive {archive} is truncated or corrupt '
            f'({str(error).strip()}). Download it again.') from None


def _find_prefix(path: pathlib.Path, original: pathlib.Path) -> str:
    if pathlib.Path(f'{path}.index').is_file():
        return str(path)
    if path.is_dir():
        latest = tf.train.latest_checkpoint(str(path))
        if latest:
            return latest
        indexes = sorted(path.rglob('*.index'))
        if len(indexes) == 1:
            return str(indexes[0])[:-len('.index')]
        if indexes:
            raise FileNotFoundError(
                f'{original} holds several checkpoints and no `checkpoint` '
                f'file naming the latest: {[str(i) for i in indexes]}; pass '
                'the prefix of one.')
    raise FileNotFoundError(
        f'No checkpoint at {original}: expected a prefix (with .index and '
        '.data-* files), a folder holding one, or a .tar.gz.')
