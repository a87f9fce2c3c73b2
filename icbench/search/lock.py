"""The driver lock: one driver per study, wherever the drivers run.

Where the study lives decides what the lock is:

- a database server (PostgreSQL, MySQL): a lock held by the server itself, on a connection of its own that
  stays open for the driver's lifetime. Drivers on different machines share nothing but the database, so
  the lock must live there. The server drops a session's locks when its connection closes, so a driver
  that is killed (SIGKILL, a lost machine) frees the study at once: no lease, heartbeat or stale-lock
  clean-up is needed.
- a SQLite file or a journal file: a file lock in the study's local run folder (SQLite is for one
  machine; a journal file on a shared filesystem relies on the filesystem's locks, as Optuna's does).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from icbench.dbserver import connect_args
from icbench.errors import IcbenchError
from icbench.search.storage import resolve_url

if TYPE_CHECKING:
    from icbench.search.schema import LoadedStudy

__all__ = ["DriverLockError", "advisory_key", "driver_lock", "study_lock"]


class DriverLockError(IcbenchError):
    """Another driver is already running this study."""


def advisory_key(study_name: str) -> int:
    """A signed 64-bit key for a study (PostgreSQL advisory locks are keyed by a bigint)."""
    digest = hashlib.sha256(f"icbench-driver:{study_name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _backend(url: str) -> str | None:
    """The database server behind `url` ("postgresql", "mysql", ...), or None for SQLite and journals."""
    if url.startswith(("sqlite:", "journal:")):
        return None
    from sqlalchemy.engine import make_url

    return make_url(url).get_backend_name()


@contextlib.contextmanager
def _file_lock(run_dir: Path, study_name: str) -> Iterator[None]:
    from filelock import FileLock, Timeout

    run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(run_dir / "driver.lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise DriverLockError(
            f"study {study_name!r} is already being run by another process (lock {lock.lock_file})"
        ) from None
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def _server_lock(url: str, backend: str, study_name: str) -> Iterator[None]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    if backend == "postgresql":
        key = advisory_key(study_name)
        take, params = "SELECT pg_try_advisory_lock(:key)", {"key": key}
        give = "SELECT pg_advisory_unlock(:key)"
    elif backend in ("mysql", "mariadb"):
        key_text = f"icbench-driver:{hashlib.sha256(study_name.encode()).hexdigest()[:40]}"
        take, params = "SELECT GET_LOCK(:key, 0)", {"key": key_text}
        give = "SELECT RELEASE_LOCK(:key)"
    else:
        raise DriverLockError(
            f"storage {backend}: icbench can lock a study only on PostgreSQL or MySQL servers, "
            "SQLite files and journal files"
        )
    # A connection of its own (not from Optuna's pool), in autocommit mode: the lock belongs to the
    # session, not to a transaction, and an idle-in-transaction timeout cannot close it.
    engine = create_engine(resolve_url(url), poolclass=NullPool, connect_args=connect_args(url))
    try:
        conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            got = conn.execute(text(take), params).scalar()
            if not got:
                raise DriverLockError(
                    f"study {study_name!r} is already being run by another driver "
                    f"(a {backend} lock on the study database is held)"
                )
            try:
                yield
            finally:
                with contextlib.suppress(Exception):  # a dropped connection has freed it already
                    conn.execute(text(give), params)
        finally:
            conn.close()
    finally:
        engine.dispose()


@contextlib.contextmanager
def driver_lock(url: str, study_name: str, run_dir: Path) -> Iterator[None]:
    """Hold the study's driver lock for the block.

    Args:
        url: the study's storage URL.
        study_name: the study's name (one lock per study in a database).
        run_dir: the study's local run folder (for the file lock of SQLite and journal storage).

    Raises:
        DriverLockError: another driver holds the lock.
    """
    backend = _backend(url)
    if backend is None:
        with _file_lock(run_dir, study_name):
            yield
    else:
        with _server_lock(url, backend, study_name):
            yield


@contextlib.contextmanager
def study_lock(loaded: LoadedStudy, url: str) -> Iterator[None]:
    """One driver per study (`driver_lock`): a second concurrent run is refused, through the database server
    when the study lives on one (drivers on other machines included), else through a file in the run folder."""
    c = loaded.config
    with driver_lock(url, c.name, Path(c.runs_dir) / c.name):
        yield
