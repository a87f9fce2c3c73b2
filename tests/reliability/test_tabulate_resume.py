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
