"""Atomic file writes: readers see the old file or the new one, never a part of one."""

import os
import tempfile


def write_atomically(path: str | os.PathLike, payload: bytes | str) -> None:
    """Write ``payload`` to ``path`` so that readers see the old file or the new one, never a part.

    The bytes go to a temporary file in the same directory (same filesystem),
    are flushed to disk, and then replace ``path`` in one ``os.replace``. On any
    error the temporary file is removed and ``path`` is left as it was.
    """
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=directory, prefix=".", suffix=".tmp", delete=False)
    try:
        with handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        # NamedTemporaryFile creates the file with mode 0600; give the result
        # the mode a plain open() would, 0666 less the umask.
        os.chmod(handle.name, 0o666 & ~_current_umask())
        os.replace(handle.name, path)
    except BaseException:
        if os.path.exists(handle.name):
            os.remove(handle.name)
        raise


def _current_umask() -> int:
    umask = os.umask(0)  # the only portable way to read it is to set it
    os.umask(umask)
    return umask
