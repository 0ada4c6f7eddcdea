"""Writing a file so that readers see it whole or not at all."""

import os
from typing import Callable


def write_atomically(path: str, write: Callable[[str], None]) -> None:
    """Calls `write(temporary)`, then renames the temporary file to `path`.

    The temporary name keeps the extension (`a.tmp.png` for `a.png`), so
    writers that infer the format from it still work. On failure the
    temporary file is removed and `path` is left as it was.
    """
    root, extension = os.path.splitext(path)
    temporary = f'{root}.tmp{extension}'
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
