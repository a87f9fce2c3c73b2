"""Optuna storage: where a study lives, opening it for a run or a read, and the resume rules."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from icbench.dbserver import connect_args, connection_error, is_server_url
from icbench.errors import ConfigError

if TYPE_CHECKING:
    import optuna

    from icbench.search.schema import LoadedStudy

T = TypeVar("T")

#: SQLite waits this long for a lock before "database is locked" (readers never hold one for long).
SQLITE_TIMEOUT_S = 60.0


def default_storage_url(runs_dir: str | Path, study_name: str) -> str:
    return f"sqlite:///{(Path(runs_dir) / study_name / 'study.db').resolve()}"


def storage_url(loaded: LoadedStudy) -> str:
    """Where a study lives: its `storage`, else a SQLite file in its run folder."""
    c = loaded.config
    if c.storage:
        return c.storage
    return default_storage_url(c.runs_dir, c.name)


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


#: The package extra that installs a database's driver, and that driver, by SQLAlchemy backend name.
DRIVER_EXTRAS = {"postgresql": ("postgres", "psycopg")}
#: Drivers tried, in order, for a URL that names a database but no driver (`postgresql://...`) when
#: SQLAlchemy's default driver for it is not installed (psycopg 3 is what `icbench[postgres]` installs).
KNOWN_DRIVERS = {"postgresql": ("psycopg", "psycopg2")}


def _driver_missing(dialect: Any) -> str | None:
    """Why the DB-API module of a SQLAlchemy dialect cannot be imported, or None if it can."""
    load = getattr(dialect, "import_dbapi", None) or dialect.dbapi  # SQLAlchemy 2 / 1.4
    try:
        load()
    except ImportError as e:
        return str(e)
    return None


def resolve_url(url: str) -> str:
    """`url` with a database driver that is installed here.

    A URL that names a database but no driver (`postgresql://host/db`) means SQLAlchemy's default driver
    for it; where that driver is missing but another known one is installed, the URL is rewritten to name
    it (`postgresql+psycopg://host/db`). SQLite (built into Python) and journal files need no driver.

    Raises:
        ConfigError: (field `storage`) the URL cannot be parsed, names an unknown database, or its driver
            is not installed; the message says what to install.
    """
    if url.startswith(("journal:", "sqlite:")):
        return url
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            f"{url!r} is not a storage URL; expected sqlite:///<path>, journal:<path> or a database URL "
            "such as postgresql://user@host/db",
            field="storage",
        ) from None
    shown = parsed.render_as_string(hide_password=True)
    try:
        dialect = parsed.get_dialect()
    except NoSuchModuleError:
        raise ConfigError(
            f"storage {shown}: SQLAlchemy knows no database {parsed.drivername!r}", field="storage"
        ) from None
    why = _driver_missing(dialect)
    if why is None:
        return url
    backend = parsed.get_backend_name()
    tried = [getattr(dialect, "driver", parsed.get_driver_name())]
    if "+" not in parsed.drivername:
        for driver in KNOWN_DRIVERS.get(backend, ()):
            if driver in tried:
                continue
            alternative = parsed.set(drivername=f"{backend}+{driver}")
            try:
                found = _driver_missing(alternative.get_dialect()) is None
            except NoSuchModuleError:  # an older SQLAlchemy without this driver
                continue
            if found:
                return alternative.render_as_string(hide_password=False)
            tried.append(driver)
    how = f"install the Python package that provides {' or '.join(tried)}"
    if backend in DRIVER_EXTRAS:
        extra, driver = DRIVER_EXTRAS[backend]
        how = f"pip install 'icbench[{extra}]'"
        if driver not in tried:  # the URL names another driver explicitly
            how = f"install {tried[0]}, or {how} and write the URL as {backend}://... or {backend}+{driver}://..."
    raise ConfigError(
        f"storage {shown} needs the database driver {' or '.join(tried)}, which is not installed ({why}): {how}",
        field="storage",
    )


def make_storage(url: str, *, create: bool = True) -> optuna.storages.BaseStorage:
    """An Optuna storage for `url`: `sqlite:///...`, another database URL, or `journal:<path>`.

    With `create=False` a missing SQLite or journal file is an error instead of a new empty study store.
    A database URL without a driver is resolved to an installed one (`resolve_url`).
    """
    import optuna

    url = resolve_url(url)
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
    return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": connect_args(url)})


def check_server(url: str) -> None:
    """Connect once to a database server URL (PostgreSQL, MySQL) and close; nothing for SQLite or journal
    files.

    Raises:
        ConfigError: (field `storage`) naming the server (host:port, never the password) and the driver's
            reason, when the server refuses, does not answer in time or rejects the login.
    """
    url = resolve_url(url)
    if not is_server_url(url):
        return
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool, connect_args=connect_args(url))
    try:
        engine.connect().close()
    except Exception as e:  # sqlalchemy's OperationalError, wrapping the driver's own
        raise ConfigError(connection_error(url, e), field="storage") from None
    finally:
        engine.dispose()


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
