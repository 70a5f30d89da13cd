"""Where a study's Optuna state lives, and a study-wide lock for the few steps that must not interleave.

Default: a journal file under results/<study>/ (embedded, append-only, no SQLite locking). `--storage URL`:
a shared database (PostgreSQL across machines). The lock serialises study setup (enqueueing cells, re-queueing
trials of dead workers) and budget-checked trial creation: a file lock for the journal, a PostgreSQL advisory lock
for a shared database.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
from collections.abc import Iterator
from pathlib import Path

import optuna
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

JOURNAL = "optuna.journal"


def default_url(study_dir: Path) -> str:
    return f"journal:{study_dir / JOURNAL}"


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """`journal:<path>` -> file journal; anything else -> an SQLAlchemy URL (postgresql://..., sqlite:///...)."""
    if url.startswith("journal:"):
        path = Path(url.removeprefix("journal:"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))
    try:
        return RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
    except Exception as e:  # noqa: BLE001 - surface any driver/connection error as one line
        raise RuntimeError(f"--storage {redact(url)}: cannot open ({str(e).splitlines()[0]})") from None


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
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
