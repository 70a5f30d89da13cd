"""The one atomic writer: temp file in the same folder, fsync, rename. Readers never see half a file.

Torch-free, so results/ and report/ use it too. Torch objects are written through `atomic_write_with`, which hands
the temp file's path to a writer callable (e.g. `lambda p: torch.save(obj, p)`).

A folder that cannot be written (full disk, read-only mount, no permission) raises OSError with nothing left
behind; `disk_error` tells those apart and `disk_error_line` turns one into the single line a user sees. For tests,
`STUDY_INJECT_WRITE_ERROR=ENOSPC:<part of a file name>` makes matching writes fail after the temp file is written
(fault injection, also in worker processes).
"""

from __future__ import annotations

import errno
import fcntl
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT})
INJECT = "STUDY_INJECT_WRITE_ERROR"


def disk_error(e: BaseException) -> bool:
    """An error of the folder being written (full, read-only, not permitted), not of the data written."""
    return isinstance(e, OSError) and e.errno in DISK_ERRNOS


def disk_error_line(e: OSError, folder: str | Path | None = None) -> str:
    """One line naming the folder that cannot be written and what to do."""
    where = Path(e.filename).parent if e.filename else folder
    return (f"{where}: cannot write ({e.strerror or e}); free space or make it writable, then re-run the same "
            f"command: the study resumes where it stopped")


def _injected_fault(path: Path) -> None:
    spec = os.environ.get(INJECT)
    if spec:
        name, _, part = spec.partition(":")
        if part in path.name:
            code = getattr(errno, name)
            raise OSError(code, os.strerror(code), str(path))


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_with(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call write(temp_path), fsync the temp file, rename it over `path`; on any error nothing is left behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        _injected_fault(path)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write_with(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


@contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """An exclusive advisory lock on `path` (created if missing) for the with-block: other processes wait for it."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
