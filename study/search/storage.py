"""Where a study's Optuna state lives, and a study-wide lock for the few steps that must not interleave.

Default: a journal file under results/<study>/ (embedded, append-only, no SQLite locking). `--storage URL` (or
$STUDY_STORAGE_URL, which keeps a password out of `ps`): a shared database (PostgreSQL across machines). The lock serialises study setup (enqueueing cells, re-queueing
trials of dead workers) and budget-checked trial creation: a file lock for the journal, a PostgreSQL advisory lock
for a shared database.

The journal is appended under a kernel file lock (flock), which dies with its holder: a worker killed mid-append
does not leave a lock file that stalls the others (Optuna's own file locks wait out a 30 s grace period). Readers
(the report, optuna-dashboard) take no lock. Opening a journal whose last line was cut short (a power cut, a full
disk) moves the fragment to a side file and says so in one line; any other damage is one line naming the file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import optuna
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._file import BaseJournalFileLock

from study.atomic import file_lock

JOURNAL = "optuna.journal"
TAIL_BYTES = 1 << 20  # how far back from the end to look for the last complete line


class StorageError(RuntimeError):
    """The study's storage cannot be opened or written; the message is one line naming the file and what to do."""


class FlockLock(BaseJournalFileLock):
    """Optuna's journal append lock as a kernel flock on `<journal>.flock`: released when its holder dies.

    Each acquire opens its own descriptor, so threads of one process (a worker and its heartbeat) exclude each
    other too."""

    def __init__(self, journal: str | Path):
        self._path = str(journal) + ".flock"
        self._held = threading.local()

    def acquire(self) -> bool:
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._held.fd = fd
        return True

    def release(self) -> None:
        fd = self._held.fd
        self._held.fd = None
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def default_url(study_dir: Path) -> str:
    return f"journal:{study_dir / JOURNAL}"


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """`journal:<path>` -> file journal; anything else -> an SQLAlchemy URL (postgresql://..., sqlite:///...)."""
    if url.startswith("journal:"):
        return open_journal(Path(url.removeprefix("journal:")))
    try:
        return RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
    except Exception as e:  # noqa: BLE001 - surface any driver/connection error as one line
        raise RuntimeError(f"--storage {redact(url)}: cannot open ({str(e).splitlines()[0]})") from None


def open_journal(path: Path) -> JournalStorage:
    """The journal at `path` (created if missing), its torn tail moved aside first; damage -> StorageError."""
    lock = FlockLock(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.touch()
        lock.acquire()
        try:
            side = repair_torn_tail(path)
        finally:
            lock.release()
    except OSError as e:
        raise StorageError(f"{path.parent}: cannot write the study's storage ({e.strerror or e}); free space or "
                           f"fix permissions, then re-run") from None
    if side is not None:
        print(f"warning: {path}: its last line was cut short (an interrupted write) and was moved to {side}; "
              f"every completed write is kept", file=sys.stderr, flush=True)
    try:
        return JournalStorage(JournalFileBackend(str(path), lock_obj=lock))
    except Exception:  # noqa: BLE001 - Optuna raises JSONDecodeError, ValueError, KeyError... on a damaged log
        raise StorageError(journal_damage(path)) from None


def repair_torn_tail(path: Path) -> Path | None:
    """Under the append lock: if the journal's last line is incomplete (no newline, or not JSON), cut it off and
    keep it in `<journal>.torn-<n>`; returns that side file, or None when the journal was whole."""
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return None
        start = max(0, size - TAIL_BYTES)
        f.seek(start)
        tail = f.read()
        if tail.endswith(b"\n"):
            body = tail[:-1]
            cut = body.rfind(b"\n") + 1  # start of the last line within `tail`
            if cut == 0 and start > 0:
                return None  # a last line longer than TAIL_BYTES: leave it to Optuna's own check
            try:
                json.loads(tail[cut:])
                return None
            except ValueError:
                pass
        else:
            cut = tail.rfind(b"\n") + 1
            if cut == 0 and start > 0:
                return None
        fragment = tail[cut:]
        n = 1
        while (side := path.with_name(f"{path.name}.torn-{n}")).exists():
            n += 1
        with open(side, "wb") as out:
            out.write(fragment)
            out.flush()
            os.fsync(out.fileno())
        f.truncate(start + cut)
        f.flush()
        os.fsync(f.fileno())
    return side


def journal_damage(path: Path) -> str:
    """One line: where the journal is damaged and what to do."""
    where = "it"
    try:
        with open(path, "rb") as f:
            for number, line in enumerate(f, start=1):
                try:
                    json.loads(line)
                except ValueError:
                    where = f"line {number}"
                    break
    except OSError as e:
        return f"{path}: cannot read the study's storage ({e.strerror or e})"
    return (f"{path}: the study's storage is damaged at {where} (not an Optuna journal entry); restore it from a "
            f"backup, or move it aside and re-run: cells whose records are complete are taken from runs/ again")


def redact(url: str) -> str:
    """A URL without its password, for messages and manifests."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}@{host}"
    return url


@contextlib.contextmanager
def study_lock(storage: optuna.storages.BaseStorage, url: str, study_name: str) -> Iterator[None]:
    """Hold a lock shared by every worker of this study, on this machine or (for PostgreSQL) on all machines."""
    if isinstance(storage, RDBStorage) and storage.engine.dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(study_name.encode()).digest()[:8], "big", signed=True)
        from sqlalchemy import text

        with storage.engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
        return
    if url.startswith("journal:"):
        lock_path = Path(url.removeprefix("journal:")).with_suffix(".lock")
    elif url.startswith("sqlite:///"):
        lock_path = Path(url.removeprefix("sqlite:///") + ".lock")
    else:  # another database: its own transactions are all we have
        yield
        return
    with file_lock(lock_path):
        yield
