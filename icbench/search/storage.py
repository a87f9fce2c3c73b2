"""Optuna storage: where a study lives, opening it for a run or a read, and the resume rules."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from icbench.dbserver import connect_args, connection_error, is_server_url
from icbench.errors import ConfigError
from icbench.places import folder_problem, journal_problem, name_problem, note_writing, sqlite_problem
from icbench.redact import add_secret, mask_url

if TYPE_CHECKING:
    import optuna

    from icbench.search.schema import LoadedStudy

T = TypeVar("T")

#: SQLite waits this long for a lock before "database is locked" (readers never hold one for long).
SQLITE_TIMEOUT_S = 60.0


def default_storage_url(runs_dir: str | Path, study_name: str) -> str:
    return f"sqlite:///{(Path(runs_dir) / study_name / 'study.db').resolve()}"


def storage_url(loaded: LoadedStudy) -> str:
    """Where a study lives: its `storage`, else a SQLite file in its run folder.

    With `storage_password_env` the password is read from that environment variable and put into the URL
    returned (to connect with; never print it: `icbench.redact.mask_url`), and registered as a secret so
    that no message shows it.

    Raises:
        ConfigError: (field `storage_password_env`) the variable is not set.
    """
    c = loaded.config
    if not c.storage:
        return default_storage_url(c.runs_dir, c.name)
    var = getattr(c, "storage_password_env", None)
    if not var:
        return c.storage
    password = os.environ.get(var)
    if not password:
        raise ConfigError(
            f"the environment variable {var} is not set: it holds the password of {mask_url(c.storage)}",
            source=str(loaded.study_path),
            field="storage_password_env",
        )
    add_secret(password)
    from sqlalchemy.engine import make_url

    return make_url(c.storage).set(password=password).render_as_string(hide_password=False)


def shown_storage(loaded: LoadedStudy) -> str:
    """The study's storage as a person may see it: password masked, or where it is read from."""
    c = loaded.config
    var = getattr(c, "storage_password_env", None)
    shown = mask_url(c.storage or default_storage_url(c.runs_dir, c.name))
    return f"{shown} (password from ${var})" if var else shown


def storage_file_problem(url: str, *, write: bool = True) -> str | None:
    """What is wrong with the SQLite or journal file a storage URL names (see `icbench.places`), or None;
    nothing for a database server."""
    if url.startswith("sqlite:///"):
        return sqlite_problem(url[len("sqlite:///") :], write=write)
    if url.startswith("journal:"):
        return journal_problem(url[len("journal:") :], write=write)
    return None


def check_places(loaded: LoadedStudy) -> None:
    """The places a run writes can work: its storage file (an SQLite database or an Optuna journal, not a
    directory or another kind of file, writable), its run and report folders (not under a regular file,
    writable, not on a read-only filesystem) and its name (no longer than the filesystem allows).

    Raises:
        ConfigError: naming the study file and the field (`name`, `runs_dir`, `reports_dir`, `storage`).
    """
    c = loaded.config
    source = str(loaded.study_path)
    checks = [
        ("name", lambda: name_problem(c.runs_dir, c.name, "study name")),
        ("runs_dir", lambda: folder_problem(Path(c.runs_dir) / c.name)),
        ("reports_dir", lambda: folder_problem(Path(c.reports_dir) / c.name)),
        ("storage", lambda: storage_file_problem(c.storage or default_storage_url(c.runs_dir, c.name))),
    ]
    for field, check in checks:
        problem = check()
        if problem:
            raise ConfigError(problem, source=source, field=field)


def check_storage(loaded: LoadedStudy) -> None:
    """Everything a run needs of its storage before anything is written: the places (`check_places`),
    the password variable, the database driver, and a server that accepts a connection.

    Raises:
        ConfigError: naming the study file and the field.
    """
    check_places(loaded)
    if loaded.config.storage:
        url = storage_url(loaded)
        try:
            resolve_url(url)
            check_server(url)
        except ConfigError as e:
            raise ConfigError(e.detail, source=str(loaded.study_path), field=e.field) from None


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
            f"{mask_url(url)!r} is not a storage URL; expected sqlite:///<path>, journal:<path> or a database URL "
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
    problem = storage_file_problem(url, write=create)
    if problem:
        raise ConfigError(problem, field="storage")
    note_writing(url.split(":///", 1)[-1].removeprefix("journal:"))
    if url.startswith("journal:"):
        path = Path(url[len("journal:") :])
        path.parent.mkdir(parents=True, exist_ok=True)
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(str(path)))
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:///"):
        db = Path(url[len("sqlite:///") :])
        if not db.exists():
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
