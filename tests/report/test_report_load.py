"""Reading studies: the tidy table, bad input, and reading while a study writes."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
from report_fixtures import SEARCH_ROWS, make_search_study

from icbench.errors import IcbenchError
from icbench.report import (
    StorageError,
    StudyNotFoundError,
    build_report,
    list_studies,
    load_study,
    load_trials,
    open_storage,
)
from icbench.report.load import BASE_COLUMNS


def test_tidy_table(search_url: str) -> None:
    trials = load_trials(search_url, "search")
    assert len(trials) == len(SEARCH_ROWS)
    assert list(trials.columns[: len(BASE_COLUMNS)]) == list(BASE_COLUMNS)
    assert {"param_unit", "param_strategy", "param_lr", "param_seed"} <= set(trials.columns)
    assert trials.columns[-1] == "curve"
    assert trials["number"].tolist() == list(range(len(SEARCH_ROWS)))
    rejected = trials[trials["rejected"]]
    assert rejected["state"].tolist() == ["FAIL"] and rejected["status"].tolist() == ["rejected"]
    assert "ceiling" in rejected["reason"].iloc[0]
    assert trials.loc[8, "status"] == "pruned" and trials.loc[9, "reason"] == "NaN loss"
    assert trials.loc[0, "is_basic"] and trials.loc[0, "placement"] == "conv:000000"
    assert len(trials.loc[0, "curve"]) == 4 and trials.loc[10, "curve"] == []
    # Elapsed: end of trial i (started at 60 i s, lasting 50 + i s) since the first start.
    assert trials.loc[3, "elapsed_s"] == pytest.approx(60 * 3 + 53)


def test_study_attributes(search_url: str) -> None:
    data = load_study(search_url, "search")
    assert data.objectives == [("val_acc", "maximize"), ("macs", "minimize")]
    assert data.user_attrs["device"] == "cpu (2 threads)"
    assert not data.is_grid


def test_metrics_fall_back_to_objective_values(db_url: str) -> None:
    study = optuna.create_study(study_name="bare", storage=db_url, directions=["maximize", "minimize"])
    study.add_trial(optuna.trial.create_trial(values=[0.8, 1e6]))
    trials = load_trials(db_url, "bare")  # no study attrs: default objectives match the directions
    assert trials.loc[0, "val_acc"] == 0.8 and trials.loc[0, "macs"] == 1e6
    assert trials.loc[0, "status"] == "complete"


def test_missing_study_lists_known(search_url: str, tmp_path: Path) -> None:
    with pytest.raises(StudyNotFoundError) as err:
        load_trials(search_url, "serch")
    assert isinstance(err.value, IcbenchError)
    assert "serch" in str(err.value) and "search" in str(err.value)
    with pytest.raises(StudyNotFoundError):
        build_report(search_url, "serch", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert list_studies(search_url) == ["search"]


def test_missing_file_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "nothing.db"
    with pytest.raises(StorageError, match="no storage file"):
        load_trials(f"sqlite:///{path}", "x")
    with pytest.raises(StorageError, match="no storage file"):
        load_trials(path, "x")
    assert not path.exists()


def test_path_url_and_storage_object(search_url: str, tmp_path: Path) -> None:
    path = Path(search_url.removeprefix("sqlite:///"))
    assert len(load_trials(path, "search")) == len(SEARCH_ROWS)
    storage = optuna.storages.RDBStorage(search_url)
    assert len(load_trials(storage, "search")) == len(SEARCH_ROWS)
    journal = tmp_path / "journal.log"
    backend = optuna.storages.journal.JournalFileBackend(str(journal))
    make_search_study(optuna.storages.JournalStorage(backend), name="j")
    assert len(load_trials(journal, "j")) == len(SEARCH_ROWS)
    assert len(load_trials(f"journal:{journal}", "j")) == len(SEARCH_ROWS)


def test_reading_never_writes(search_url: str) -> None:
    path = Path(search_url.removeprefix("sqlite:///"))
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    load_trials(search_url, "search")
    list_studies(search_url)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_storage_opened_read_only(search_url: str) -> None:
    storage, close = open_storage(search_url)
    try:
        study_id = storage.get_study_id_from_name("search")
        with pytest.raises(Exception, match="readonly|read-only|query_only|commit"):
            storage.set_study_user_attr(study_id, "x", 1)
    finally:
        close()
    assert "x" not in load_study(search_url, "search").user_attrs


WRITER = textwrap.dedent(
    """
    import sys, optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url, n = sys.argv[1], int(sys.argv[2])
    study = optuna.load_study(study_name="live", storage=url)
    for i in range(n):
        trial = study.ask()
        trial.suggest_categorical("unit", ["ic", "conv"])
        trial.set_user_attr("status", "complete")
        trial.set_user_attr("placement", "ic:1")
        trial.set_user_attr("curve", [{"epoch": 0, "val_acc": 0.5}])
        study.tell(trial, [0.5 + i / (2 * n), 1e6 * (1 + i % 7)])
    print("done", n)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("journal_mode", ["delete", "wal"])
def test_report_while_study_writes(db_url: str, tmp_path: Path, journal_mode: str) -> None:
    # The search layer switches its databases to WAL; plain rollback journals must work too.
    con = sqlite3.connect(db_url.removeprefix("sqlite:///"))
    con.execute(f"PRAGMA journal_mode={journal_mode}")
    con.close()
    study = optuna.create_study(study_name="live", storage=db_url, directions=["maximize", "minimize"])
    study.add_trial(optuna.trial.create_trial(values=[0.5, 1e6], user_attrs={"val_acc": 0.5, "macs": 1e6}))
    n = 30
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, db_url, str(n)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    reports = 0
    try:
        while writer.poll() is None or reports < 2:
            report = build_report(db_url, "live", tmp_path / f"r{reports % 2}")
            assert "summary.md" in report.files
            reports += 1
            for _ in range(5):  # plain reads between builds keep the pressure on the writer
                assert len(load_trials(db_url, "live")) >= 1
        out, err = writer.communicate(timeout=60)
    finally:
        if writer.poll() is None:
            writer.kill()
    assert writer.returncode == 0, err
    assert f"done {n}" in out
    assert reports >= 2
    final = load_trials(db_url, "live")
    assert (final["state"] == "COMPLETE").sum() == n + 1


def test_fields_fixed_by_the_study_come_from_the_candidate(db_url: str) -> None:
    # A strategy that is not searched is only in the `candidate` attribute the search layer stores.
    study = optuna.create_study(study_name="c", storage=db_url, directions=["maximize", "minimize"])
    attrs = {"status": "complete", "candidate": {"strategy": "stages", "wld": {"enabled": True}, "seed": 3}}
    study.add_trial(optuna.trial.create_trial(values=[0.8, 1e6], user_attrs=attrs))
    row = load_trials(db_url, "c").iloc[0]
    assert row["strategy"] == "stages" and bool(row["wld"]) and row["seed"] == 3
