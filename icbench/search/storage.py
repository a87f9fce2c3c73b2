"""Optuna storage: where a study lives, opening it for a run or a read, and the resume rules."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from icbench.errors import ConfigError

if TYPE_CHECKING:
    import optuna

T = TypeVar("T")

#: SQLite waits this long for a lock before "database is locked" (readers never hold one for long).
SQLITE_TIMEOUT_S = 60.0


def default_storage_url(runs_dir: str | Path, study_name: str) -> str:
    return f"sqlite:///{(Path(runs_dir) / study_name / 'study.db').resolve()}"


def _enable_wal(db_path: Path) -> None:
    """Write-ahead logging lets readers (reports, dashboards) read while a study writes.

    The mode is stored in the database file, so setting it once when the file is created is enough.
    """
    db_path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(db_path, timeout=SQLITE_TIMEOUT_S)
    try:
        con.execute("PRAGMA journal_mode=WAL")
    finally:
        con.close()


def make_storage(url: str, *, create: bool = True) -> optuna.storages.BaseStorage:
    """An Optuna storage for `url`: `sqlite:///...`, another database URL, or `journal:<path>`.

    With `create=False` a missing SQLite or journal file is an error instead of a new empty study store.
    """
    import optuna

    if url.startswith("journal:"):
        path = Path(url[len("journal:") :])
        if not create and not path.exists():
            raise ConfigError(f"journal file not found: {path}", field="storage")
        path.parent.mkdir(parents=True, exist_ok=True)
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(str(path)))
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:///"):
        db = Path(url[len("sqlite:///") :])
        if not db.exists():
            if not create:
                raise ConfigError(f"no study database at {db}", field="storage")
            _enable_wal(db)
        kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    return retry_locked(lambda: optuna.storages.RDBStorage(url, engine_kwargs=kwargs))


def retry_locked(fn: Callable[[], T], attempts: int = 8, delay_s: float = 0.25) -> T:
    """Run `fn`, retrying with backoff while SQLite reports the database as locked."""
    for i in range(attempts):
        try:
            return fn()
        except Exception as e:  # sqlalchemy wraps sqlite3.OperationalError
            if "database is locked" not in str(e) or i == attempts - 1:
                raise
            time.sleep(delay_s * 2**i)
    raise AssertionError("unreachable")
