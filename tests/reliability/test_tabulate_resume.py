"""A tabulation SIGKILLed between two rows, then run again: every row trained once, none retrained."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
from optuna.trial import TrialState
from reliability_helpers import (
    HERE,
    db_path,
    kill_group,
    load_trials,
    ray_sandbox,
    run_cli,
    start,
    wait_for_marker,
    write_study,
)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray"), pytest.mark.timeout(900)]

STUDY = """
dataset: {name: synthetic, kwargs: {n: 400, image_size: 16, in_chans: 1}}
family: {name: resnet_cifar, size: resnet8, width: 0.25}
budget: {epochs: 1}
evaluation: {test: all}
execution: {max_concurrent: 2, cpus_per_trial: 1, num_cpus: 2}
"""
SPACE = """
params:
  unit: {type: categorical, choices: [conv, ic, ic_dual]}
  seed: {type: categorical, choices: [0, 1]}
"""


def test_killed_tabulate_resumes_without_retraining_finished_rows(tmp_path: Path) -> None:
    study = write_study(tmp_path, "tab", STUDY, SPACE)
    markers = tmp_path / "markers"
    markers.mkdir()
    log = tmp_path / "runs.log"
    out = tmp_path / "tab.parquet"
    cmd = [sys.executable, str(HERE / "crash_hooks.py"), "tabulate", str(study), "--out", str(out)]
    with ray_sandbox() as box:
        proc = start(cmd, box.env(ICBENCH_CRASH_AT="between_trials", ICBENCH_CRASH_DIR=str(markers)), log)
        info = wait_for_marker(markers / "between_trials", proc, log)
        kill_group(proc)
        box.kill_leftovers()
        before = {
            t.number: t.user_attrs["table_row"] for t in load_trials(study) if t.state == TrialState.COMPLETE
        }
        assert info["trial"] in before and not out.exists()
        done = run_cli(["tabulate", str(study), "--out", str(out)], box.env(), timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert f"{len(before)} already settled" in done.stdout
    trials = load_trials(study)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    rows = [t.user_attrs["table_row"] for t in complete]
    assert len(rows) == len(set(rows)) == 6, "every row trained exactly once"
    assert all(t.user_attrs["status"] == "interrupted" for t in trials if t.state == TrialState.FAIL)
    frame = pd.read_parquet(out)
    assert len(frame) == 6
    kept = dict(zip(frame["row"], frame["trial"], strict=True))
    assert all(kept[row] == number for number, row in before.items()), "finished rows were not retrained"
    assert db_path(study).exists()


def test_a_table_grown_in_a_journal_resumes_in_another_checkout(tmp_path: Path) -> None:
    """The v2 table's storage is a journal file committed as it grows: a session killed mid-table, its
    journal copied to a fresh checkout (what `git commit` and a new clone do), resumes there and trains
    none of the committed rows again."""
    import shutil

    import optuna

    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    body = STUDY + "storage: journal:FOLDER/tab.journal\n"
    study = write_study(first, "tab", body.replace("FOLDER", str(first)), SPACE)
    markers = tmp_path / "markers"
    markers.mkdir()
    cmd = [sys.executable, str(HERE / "crash_hooks.py"), "tabulate", str(study), "--out", str(first / "t.parquet")]
    with ray_sandbox() as box:
        proc = start(cmd, box.env(ICBENCH_CRASH_AT="between_trials", ICBENCH_CRASH_DIR=str(markers)), tmp_path / "log")
        wait_for_marker(markers / "between_trials", proc, tmp_path / "log")
        kill_group(proc)
        box.kill_leftovers()
        shutil.copy(first / "tab.journal", second / "tab.journal")  # the commit, and a fresh clone
        study2 = write_study(second, "tab", body.replace("FOLDER", str(second)), SPACE)

        def settled(folder: Path) -> dict[int, str]:
            storage = optuna.storages.JournalStorage(
                optuna.storages.journal.JournalFileBackend(str(folder / "tab.journal"))
            )
            trials = optuna.load_study(study_name="tab", storage=storage).get_trials()
            return {t.number: t.user_attrs["table_row"] for t in trials if t.state == TrialState.COMPLETE}

        before = settled(second)
        assert before, "the killed run committed at least one row"
        done = run_cli(["tabulate", str(study2), "--out", str(second / "t.parquet")], box.env(), timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert f"{len(before)} already settled" in done.stdout
    after = settled(second)
    assert len(after) == len(set(after.values())) == 6, "every row trained exactly once"
    assert all(after[n] == row for n, row in before.items()), "committed rows were not retrained"
    assert len(pd.read_parquet(second / "t.parquet")) == 6
