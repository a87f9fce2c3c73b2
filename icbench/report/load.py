"""Read an Optuna study written by the search layer into one tidy table (one row per trial).

Reports may be built while the study is still running, so reading must never block or break the
writer (DESIGN.md §11): SQLite storages are opened without creating tables, every connection is put in
`query_only` mode (the report can never write to the study), each storage call is its own short read,
and a read that meets "database is locked" is retried with backoff instead of failing. The reader does
not switch the file to WAL itself: that needs exclusive access, which a running study does not give;
a writer that enables WAL makes concurrent reading cheaper still.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from icbench.dbserver import connect_args, connection_error, is_server_url, safe_url
from icbench.errors import IcbenchError
from icbench.places import journal_problem, sqlite_problem
from icbench.redact import mask_url
from icbench.report.environment import machine_label, parse_machine
from icbench.report.evaluation import END_OF_TRAINING, after_search_records

if TYPE_CHECKING:
    import optuna
    import pandas as pd

    StorageLike = str | os.PathLike[str] | optuna.storages.BaseStorage

T = TypeVar("T")

#: Objectives assumed when a study does not record its own (the search layer's defaults).
DEFAULT_OBJECTIVES: tuple[tuple[str, str], ...] = (("val_acc", "maximize"), ("macs", "minimize"))

#: Numeric per-trial metrics copied from trial user attributes.
METRIC_COLUMNS: tuple[str, ...] = (
    "val_acc",
    "test_acc",
    "macs",
    "params",
    "params_trainable",
    "latency_ms",
    "epochs_done",
    "epochs_target",
    "wall_time_s",
    "train_time_s",
    "teacher_val_acc",
    "n_sites",
    "n_unit_sites",
    "unit_delta",
)

#: Descriptive per-trial fields copied from trial user attributes (or parameters). `warm_start`: the
#: trial's network started from the teacher's weights (WLD's warm start), so its first epochs begin at the
#: teacher's accuracy; None where the trial did not record its candidate.
INFO_COLUMNS: tuple[str, ...] = (
    "family", "size", "width", "unit", "placement", "strategy", "is_basic", "wld", "warm_start", "seed",
)  # fmt: skip

#: Columns every trials table has, in this order; sampled parameters follow as `param_<name>`, then `curve`.
BASE_COLUMNS: tuple[str, ...] = (
    "number",
    "state",
    "status",
    "rejected",
    "reason",
    *INFO_COLUMNS,
    *METRIC_COLUMNS,
    "test_evaluated",
    "test_evaluated_at",
    "machine",
    "start_time",
    "end_time",
    "duration_s",
    "elapsed_s",
)

_KNOWN_ATTRS = {*BASE_COLUMNS, "curve", "stop_reason", "diverged", "teacher_key", "unit_deltas"}
_LOCK_WORDS = ("database is locked", "database table is locked", "database is busy", "sqlite_busy")


class StorageError(IcbenchError):
    """A storage cannot be opened or read (missing file, not an Optuna storage, locked too long)."""


class StudyNotFoundError(IcbenchError, LookupError):
    """The storage has no study of the requested name; the message lists the studies it has."""

    def __init__(self, study_name: str, storage: str, known: Sequence[str]) -> None:
        self.study_name = study_name
        self.known = sorted(known)
        listed = ", ".join(self.known) if self.known else "(none)"
        super().__init__(f"no study named {study_name!r} in storage {storage}; studies there: {listed}")


@dataclass
class StudyData:
    """A study as read from storage: its attributes plus the tidy trials table.

    Attributes:
        name: Study name.
        storage: Printable description of the storage (URL or path).
        directions: Optuna directions, "maximize"/"minimize", in objective order.
        objectives: (metric column, direction) pairs in objective order.
        user_attrs: Study user attributes (see the storage schema in the search layer).
        system_attrs: Study system attributes (Optuna's own, e.g. the grid of a GridSampler).
        trials: One row per trial, columns `BASE_COLUMNS`, then `param_*`, then `curve`.
        machines: The `machine` label of the trials table -> the machine description it stands for.
    """

    name: str
    storage: str
    directions: list[str]
    objectives: list[tuple[str, str]]
    user_attrs: dict[str, Any] = field(default_factory=dict)
    system_attrs: dict[str, Any] = field(default_factory=dict)
    trials: pd.DataFrame | None = None
    machines: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def is_grid(self) -> bool:
        """True when the study was sampled from a full grid (a factorial ablation)."""
        sampler = str(self.user_attrs.get("sampler", "")).lower()
        return "grid" in sampler or "search_space" in self.system_attrs


# --------------------------------------------------------------------------------------------------
# Opening storages


def describe_storage(storage: StorageLike) -> str:
    """A printable name for a storage: its URL or path, or its class name for a storage object."""
    if isinstance(storage, (str, os.PathLike)):
        return mask_url(os.fspath(storage))
    url = getattr(storage, "url", None)
    return mask_url(str(url)) if url else type(storage).__name__


def _is_lock_error(exc: BaseException) -> bool:
    """Whether `exc` (or anything in its cause chain) is SQLite reporting a held lock."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if any(word in str(cur).lower() for word in _LOCK_WORDS):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def with_retries(fn: Callable[[], T], *, attempts: int = 10, first_delay_s: float = 0.05) -> T:
    """Call `fn`, retrying with exponential backoff while the storage reports a held lock.

    Args:
        fn: The read to perform; it must be safe to repeat.
        attempts: How many tries in all before giving up.
        first_delay_s: Delay after the first failure; doubled after each (capped at 2 s).

    Returns:
        What `fn` returns.

    Raises:
        StorageError: The storage stayed locked for every attempt.
    """
    delay = first_delay_s
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as exc:
            if not _is_lock_error(exc):
                raise
            if attempt == attempts - 1:
                raise StorageError(
                    f"storage stayed locked after {attempts} attempts; is another process holding a long "
                    f"write transaction? ({exc})"
                ) from exc
            time.sleep(delay)
            delay = min(2.0, delay * 2)
    raise AssertionError("unreachable")


def _sqlite_path(url: str) -> str | None:
    """The database file of a SQLite URL, or None for other URLs and in-memory databases."""
    if not url.startswith("sqlite"):
        return None
    from sqlalchemy.engine import make_url

    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return database


def _open_rdb(url: str) -> optuna.storages.RDBStorage:
    import optuna
    import sqlalchemy

    sqlite = url.startswith("sqlite")
    # SQLite: wait for a writer's commit inside its busy handler rather than failing at once; a server:
    # give up on one that does not answer within a few seconds.
    kwargs: dict[str, Any] = {"connect_args": {"timeout": 30.0} if sqlite else connect_args(url)}
    if is_server_url(url):
        engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool, **kwargs)
        try:
            engine.connect().close()
        except Exception as exc:
            raise StorageError(f"storage {safe_url(url)}: {connection_error(url, exc)}") from None
        finally:
            engine.dispose()
    try:
        storage = optuna.storages.RDBStorage(url, engine_kwargs=kwargs, skip_table_creation=True)
    except Exception as exc:
        if _is_lock_error(exc):
            raise
        raise StorageError(f"cannot open {safe_url(url)} as an Optuna storage: {exc}") from exc
    if sqlite:

        @sqlalchemy.event.listens_for(storage.engine, "connect")
        def _read_only(dbapi_connection: Any, _record: Any) -> None:
            # The report only reads; a bug here must never be able to alter the study.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA query_only = ON")
            cursor.close()

        storage.engine.dispose()  # drop the connection opened before the listener existed
    return storage


def open_storage(storage: StorageLike) -> tuple[optuna.storages.BaseStorage, Callable[[], None]]:
    """Open a storage for reading.

    Args:
        storage: A storage object (used as is), a database URL ("sqlite:///runs/x/study.db",
            "postgresql://..."), a path to a SQLite file, or an Optuna journal file as a path or as
            "journal:<path>".

    Returns:
        The storage and a function that releases what this call opened (a no-op for storage objects).

    Raises:
        StorageError: The file does not exist or is not an Optuna storage.
    """
    import optuna

    if isinstance(storage, optuna.storages.BaseStorage):
        return storage, lambda: None
    text = os.fspath(storage)
    journal_url = text.startswith("journal:")
    if journal_url:  # the search layer's spelling of a journal-file storage
        text = text[len("journal:") :]
    elif "://" in text:
        path = _sqlite_path(text)
        if path is not None and not Path(path).exists():
            raise StorageError(f"no storage file at {path} (from {mask_url(text)})")
        problem = sqlite_problem(path, write=False) if path is not None else None
        if problem:  # what is wrong with the file, rather than what SQLAlchemy makes of it
            raise StorageError(problem)
        rdb = with_retries(lambda: _open_rdb(text))
        return rdb, rdb.engine.dispose
    path = Path(text)
    if not path.is_file():
        raise StorageError(f"no storage file at {path}")
    with path.open("rb") as fh:
        is_sqlite = fh.read(16) == b"SQLite format 3\x00"
    if is_sqlite:
        rdb = with_retries(lambda: _open_rdb(f"sqlite:///{path.resolve()}"))
        return rdb, rdb.engine.dispose
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    problem = journal_problem(path, write=False)
    if problem:
        raise StorageError(problem if journal_url else f"{problem} (and not an SQLite database)")
    try:
        journal = JournalStorage(JournalFileBackend(str(path)))
    except Exception as exc:
        raise StorageError(f"cannot read {path} as an Optuna journal file: {exc}") from exc
    return journal, lambda: None


def list_studies(storage: StorageLike) -> list[str]:
    """Names of the studies in a storage, sorted.

    Raises:
        StorageError: The storage cannot be opened.
    """
    opened, close = open_storage(storage)
    try:
        return sorted(with_retries(lambda: [s.study_name for s in opened.get_all_studies()]))
    finally:
        close()


# --------------------------------------------------------------------------------------------------
# Trials -> tidy table


def _objectives_from(user_attrs: dict[str, Any], directions: Sequence[str]) -> list[tuple[str, str]]:
    """(metric, direction) pairs: the recorded ones, or the defaults when they match the directions."""
    recorded = user_attrs.get("objectives")
    if isinstance(recorded, list) and len(recorded) == len(directions):
        try:
            return [
                (str(o["name"]), str(o.get("direction", d)))
                for o, d in zip(recorded, directions, strict=True)
            ]
        except (TypeError, KeyError):
            pass
    defaults = list(DEFAULT_OBJECTIVES[: len(directions)])
    if [d for _, d in defaults] == list(directions):
        return defaults
    return [(f"objective_{i}", d) for i, d in enumerate(directions)]


def _number(value: Any) -> float:
    """A float for numeric values (bools included), NaN for anything missing or non-numeric."""
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _status(state: str, attrs: dict[str, Any]) -> str:
    if attrs.get("status"):
        return str(attrs["status"])
    if attrs.get("rejected"):
        return "rejected"
    return {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}.get(state, state.lower())


def _info(name: str, attrs: dict[str, Any], params: dict[str, Any], candidate: dict[str, Any]) -> Any:
    """A descriptive field from the user attributes, else the sampled parameters, else the candidate.

    The search layer stores the full candidate config as the `candidate` attribute; fields fixed by the
    study file (e.g. a strategy that is not searched) are found only there.
    """
    for source in (attrs, params):
        if source.get(name) is not None:
            return source[name]
    if name == "warm_start":  # WLD's warm start: the `wld` block's `warm_start`, on by default
        wld = candidate.get("wld")
        return bool(wld.get("enabled") and wld.get("warm_start", True)) if isinstance(wld, dict) else None
    value = candidate.get(name)
    if name == "wld" and isinstance(value, dict):  # the candidate holds the WLD settings block
        return bool(value.get("enabled"))
    return value if value is None or isinstance(value, (str, int, float, bool)) else str(value)


def _seconds(a: datetime | None, b: datetime | None) -> float:
    return (b - a).total_seconds() if a is not None and b is not None else math.nan


def _test_columns(row: dict[str, Any], attrs: dict[str, Any], after: dict[str, Any] | None) -> None:
    """test_acc, test_evaluated and test_evaluated_at of a row: the trial's own test evaluation (at the end
    of its training), else the driver's after the search (`after`), else none (NaN and None)."""
    row["test_evaluated"] = row["test_evaluated_at"] = None
    if not math.isnan(row["test_acc"]):
        # Trials recorded before `test_evaluated` existed evaluated the test split at the end of training.
        row["test_evaluated"] = attrs.get("test_evaluated") or END_OF_TRAINING
        # After the search the driver also writes its evaluation on the trial itself (with its time).
        row["test_evaluated_at"] = attrs.get("test_evaluated_at")
    elif after is not None and not math.isnan(_number(after.get("test_acc"))):
        row["test_acc"] = _number(after["test_acc"])
        row["test_evaluated"] = after.get("evaluated")
        row["test_evaluated_at"] = after.get("at")


def trials_frame(
    trials: Sequence[optuna.trial.FrozenTrial],
    objectives: Sequence[tuple[str, str]] = DEFAULT_OBJECTIVES,
    test_evals: dict[int, dict[str, Any]] | None = None,
) -> pd.DataFrame:
    """Turn Optuna trials into the tidy trials table (pure; no storage access).

    Metrics come from the trial's user attributes; a COMPLETE trial missing one that is an objective
    gets it from `trial.values`. `elapsed_s` is the trial's end relative to the earliest trial start.
    `test_acc` is set only for trials evaluated on the test split (see `icbench.report.evaluation`), and
    `machine` is a one-line label of the machine the trial recorded (None when it recorded none).

    Args:
        trials: Frozen trials of one study.
        objectives: (metric column, direction) pairs in the order of `trial.values`.
        test_evals: Trial number -> test evaluation after the search (`evaluation.after_search_records`).

    Returns:
        One row per trial sorted by number, columns `BASE_COLUMNS`, `param_<name>` for every sampled
        parameter, any other scalar user attribute as `attr_<name>`, and `curve` (list of epoch dicts).
    """
    import pandas as pd

    starts = [t.datetime_start for t in trials if t.datetime_start is not None]
    t0 = min(starts) if starts else None
    rows: list[dict[str, Any]] = []
    for t in sorted(trials, key=lambda tr: tr.number):
        attrs = dict(t.user_attrs)
        params = dict(t.params)
        state = t.state.name
        row: dict[str, Any] = {
            "number": t.number,
            "state": state,
            "status": _status(state, attrs),
            "rejected": bool(attrs.get("rejected", False)),
            "reason": attrs.get("reason") or attrs.get("stop_reason"),
        }
        candidate = attrs.get("candidate") if isinstance(attrs.get("candidate"), dict) else {}
        for name in INFO_COLUMNS:
            row[name] = _info(name, attrs, params, candidate)
        for name in METRIC_COLUMNS:
            row[name] = _number(attrs.get(name))
        if state == "COMPLETE" and t.values is not None:
            for (name, _), value in zip(objectives, t.values, strict=True):
                if name in row and math.isnan(row[name]):
                    row[name] = _number(value)
        _test_columns(row, attrs, (test_evals or {}).get(t.number))
        machine = parse_machine(attrs.get("machine"))
        row["machine"] = machine_label(machine) if machine else None
        row["start_time"] = t.datetime_start
        row["end_time"] = t.datetime_complete
        row["duration_s"] = _seconds(t.datetime_start, t.datetime_complete)
        row["elapsed_s"] = _seconds(t0, t.datetime_complete)
        if isinstance(attrs.get("sim_end_s"), (int, float)):  # a replayed trial: its simulated times
            row["duration_s"] = float(attrs["sim_end_s"]) - float(attrs.get("sim_start_s", 0.0))
            row["elapsed_s"] = float(attrs["sim_end_s"])
        if math.isnan(row["wall_time_s"]):
            row["wall_time_s"] = row["duration_s"]
        for name, value in params.items():
            row[f"param_{name}"] = value
        for name, value in attrs.items():
            if name not in _KNOWN_ATTRS and (value is None or isinstance(value, (str, int, float, bool))):
                row[f"attr_{name}"] = value
        curve = attrs.get("curve")
        row["curve"] = list(curve) if isinstance(curve, list) else []
        rows.append(row)
    frame = pd.DataFrame(rows, columns=None if rows else [*BASE_COLUMNS, "curve"])
    extra = sorted(c for c in frame.columns if c.startswith(("param_", "attr_")))
    frame = frame[[*BASE_COLUMNS, *extra, "curve"]]
    frame["rejected"] = frame["rejected"].astype(bool)
    for name in ("start_time", "end_time"):
        frame[name] = pd.to_datetime(frame[name])
    return frame.reset_index(drop=True)


def load_study(storage: StorageLike, study_name: str) -> StudyData:
    """Read a study's attributes and trials from storage.

    Args:
        storage: See `open_storage`.
        study_name: Name of the study.

    Returns:
        The study's attributes and its tidy trials table.

    Raises:
        StorageError: The storage cannot be opened or stays locked.
        StudyNotFoundError: The storage has no such study (the message lists those it has).
    """
    import optuna

    opened, close = open_storage(storage)
    where = describe_storage(storage)
    try:

        def read() -> StudyData:
            try:
                study_id = opened.get_study_id_from_name(study_name)
            except KeyError:
                names = [s.study_name for s in opened.get_all_studies()]
                raise StudyNotFoundError(study_name, where, names) from None
            directions = [d.name.lower() for d in opened.get_study_directions(study_id)]
            user_attrs = opened.get_study_user_attrs(study_id)
            system_attrs = opened.get_study_system_attrs(study_id)
            frozen = opened.get_all_trials(study_id, deepcopy=False)
            objectives = _objectives_from(user_attrs, directions)
            machines = {}
            for t in frozen:
                machine = parse_machine(t.user_attrs.get("machine"))
                if machine:
                    machines[machine_label(machine)] = machine
            return StudyData(
                name=study_name,
                storage=where,
                directions=directions,
                objectives=objectives,
                user_attrs=dict(user_attrs),
                system_attrs=dict(system_attrs),
                trials=trials_frame(frozen, objectives, after_search_records(user_attrs)),
                machines=machines,
            )

        try:
            return with_retries(read)
        except (IcbenchError, optuna.exceptions.OptunaError) as exc:
            if isinstance(exc, IcbenchError):
                raise
            raise StorageError(f"cannot read study {study_name!r} from {where}: {exc}") from exc
    finally:
        close()


def load_trials(storage: StorageLike, study_name: str) -> pd.DataFrame:
    """The tidy trials table of a study (see `trials_frame` for its columns).

    Raises:
        StorageError: The storage cannot be opened or stays locked.
        StudyNotFoundError: The storage has no such study.
    """
    data = load_study(storage, study_name)
    assert data.trials is not None
    return data.trials


def curve_to_json(curve: Any) -> str:
    """Serialise a learning curve for CSV/Parquet cells (JSON list of epoch dicts)."""
    return json.dumps(curve if isinstance(curve, list) else [], default=str)
