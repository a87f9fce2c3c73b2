"""A study end to end on CPU with Ray: completion semantics, failures, constraints, resume (DESIGN.md §7)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from search_helpers import HERE, write_study

from icbench.search import run_study
from icbench.search.checks import check_study
from icbench.search.schema import load_study
from icbench.search.storage import storage_url

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]

TINY = """
dataset: {name: mnist5k}
family: {name: resnet_cifar, size: resnet8, width: 0.5}
budget: {epochs: 1}
training: {batch_size: 256}
execution: {max_concurrent: 2, cpus_per_trial: 1}
"""
SPACE = """
params:
  unit: {type: categorical, choices: [ic, ic_dual, conv]}
  strategy: {type: categorical, choices: [all, every_other, last_k]}
  k: {type: int, low: 1, high: 2, target: strategy_args.k, when: {strategy: [last_k]}}
"""


def trials(path: Path) -> list[optuna.trial.FrozenTrial]:
    loaded = load_study(path)
    return optuna.load_study(study_name=loaded.config.name, storage=storage_url(loaded)).get_trials()


def test_three_trials_complete_with_both_objectives(tmp_path: Path, ray_local: None) -> None:
    path = write_study(tmp_path, TINY + "n_trials: 3\nsampler: {name: random, seed: 1}\n", SPACE)
    run = run_study(path, report=False, echo=lambda s: None)
    ts = trials(path)
    assert run.n_complete == 3 and [t.state for t in ts] == [TrialState.COMPLETE] * 3
    for t in ts:
        acc, macs = t.values
        assert 0.0 <= acc <= 1.0 and macs == t.user_attrs["macs"] > 0
        assert t.user_attrs["status"] == "complete" and len(t.user_attrs["curve"]) == 1
        assert t.user_attrs["placement"].startswith(t.params["unit"] + ":")


def test_failures_are_recorded_and_the_study_goes_on(tmp_path: Path, ray_local: None) -> None:
    space = """
params:
  size: {type: categorical, choices: ["faulty_models:raising_cnn", "faulty_models:oom_cnn", "icbench.families.user:example_cnn"]}
  lr: {type: categorical, choices: [0.05, 1.0e+12]}
"""
    study = (
        TINY.replace("resnet_cifar, size: resnet8, width: 0.5", "user")
        + "n_trials: 2\nsampler: {name: grid, seed: 0}\n"
    )
    study += "enqueue:\n" + "".join(
        f"  - {{size: '{s}', lr: {lr}}}\n"
        for s, lr in [("faulty_models:raising_cnn", 0.05), ("faulty_models:oom_cnn", 0.05),
                      ("icbench.families.user:example_cnn", 1.0e12), ("icbench.families.user:example_cnn", 0.05)]
    )  # fmt: skip
    path = write_study(tmp_path, study, space)
    run_study(path, report=False, echo=lambda s: None)
    ts = [t for t in trials(path) if t.user_attrs.get("status") != "duplicate"]
    by_reason = {t.params["size"].split(":")[1] + f"@{t.params['lr']:g}": t for t in ts}
    assert len(by_reason) == len(ts), "a parameter set was evaluated twice"
    raising = by_reason["raising_cnn@0.05"]
    assert (
        raising.state == TrialState.FAIL and "RuntimeError: injected failure" in raising.user_attrs["reason"]
    )
    oom = by_reason["oom_cnn@0.05"]
    assert oom.state == TrialState.FAIL and "out of memory" in oom.user_attrs["reason"]
    diverged = by_reason["example_cnn@1e+12"]
    assert diverged.state == TrialState.FAIL and diverged.user_attrs["status"] == "diverged"
    assert by_reason["example_cnn@0.05"].state == TrialState.COMPLETE


def test_asha_stopped_trial_is_pruned_and_off_the_front(tmp_path: Path, ray_local: None) -> None:
    space = """
params:
  lr: {type: categorical, choices: [0.1, 1.0e-7]}
"""
    study = TINY.replace("epochs: 1", "epochs: 3") + (
        "n_trials: 2\nsampler: {name: grid, seed: 0}\n"
        "execution: {max_concurrent: 1, asha: {enabled: true, grace_period: 1, reduction_factor: 2}}\n"
        "enqueue: [{lr: 0.1}, {lr: 1.0e-7}]\n"
    )
    path = write_study(
        tmp_path, study.replace("execution: {max_concurrent: 2, cpus_per_trial: 1}\n", ""), space
    )
    run_study(path, report=False, echo=lambda s: None)
    ts = trials(path)
    good, bad = sorted(ts, key=lambda t: -t.params["lr"])
    assert good.state == TrialState.COMPLETE and len(good.user_attrs["curve"]) == 3
    assert bad.state == TrialState.PRUNED and bad.values is None
    loaded = load_study(path)
    best = optuna.load_study(study_name="s", storage=storage_url(loaded)).best_trials
    assert [t.number for t in best] == [good.number]


def test_candidate_over_the_ceiling_is_rejected_without_training(tmp_path: Path, ray_local: None) -> None:
    space = """
params:
  unit: {type: categorical, choices: [ic, ic_dual]}
"""
    study = TINY + "n_trials: 1\nsampler: {name: grid, seed: 0}\nenqueue: [{unit: ic_dual}, {unit: ic}]\n"
    path = write_study(tmp_path, study, space)
    from icbench.search.propose import Proposer
    from icbench.search.space import base_candidate

    loaded = load_study(path)
    proposer = Proposer(loaded, check_study(loaded))
    macs = {u: proposer.cost({**base_candidate(loaded), "unit": u})[0]["macs"] for u in ("ic", "ic_dual")}
    assert macs["ic_dual"] > macs["ic"]
    ceiling = (macs["ic"] + macs["ic_dual"]) / 2  # ic_dual doubles every replaced conv: over; ic: under
    path.write_text(path.read_text() + f"constraints: {{max_macs: {ceiling}}}\n")
    run_study(path, report=False, echo=lambda s: None)
    ts = trials(path)
    rejected = [t for t in ts if t.user_attrs.get("rejected")]
    assert len(rejected) == 1 and rejected[0].params["unit"] == "ic_dual"
    assert rejected[0].state == TrialState.FAIL and "constraints.max_macs" in rejected[0].user_attrs["reason"]
    assert "curve" not in rejected[0].user_attrs  # never trained
    assert [t.params["unit"] for t in ts if t.state == TrialState.COMPLETE] == ["ic"]


def _complete_count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def test_killed_driver_resumes_without_losing_or_repeating_trials(tmp_path: Path) -> None:
    path = write_study(tmp_path, TINY + "n_trials: 5\nsampler: {name: tpe, seed: 3}\n", SPACE)
    cmd = [sys.executable, str(HERE.parents[1] / "run_study.py"), "run", str(path), "--no-report"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parents[1])])}
    db = tmp_path / "runs" / "s" / "study.db"
    proc = subprocess.Popen(
        cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 240
    while _complete_count(db) < 1 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray processes it started
    proc.wait()
    before = {t.number: (t.params, t.values) for t in trials(path) if t.state == TrialState.COMPLETE}
    assert before, "no trial completed before the kill"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-2000:]
    ts = trials(path)
    complete = [t for t in ts if t.state == TrialState.COMPLETE]
    assert len(complete) == 5
    for number, (params, values) in before.items():  # nothing completed was lost or changed
        assert ts[number].params == params and ts[number].values == values
    trained = [json.dumps(t.params, sort_keys=True) for t in ts if "curve" in t.user_attrs]
    assert len(trained) == len(set(trained)), "a parameter set was trained twice"
    assert all(t.state != TrialState.RUNNING for t in ts)
