"""`run_study.py confirm`: a linked confirmation study that retrains exactly the chosen trials x K seeds."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState
from search_helpers import HERE, write_study

from icbench.errors import ConfigError
from icbench.search import fingerprint as fpr
from icbench.search.confirm import (
    LINK_ATTR,
    confirm_study,
    confirmation_study,
    fresh_seeds,
)
from icbench.search.schema import IntParam, load_study
from icbench.search.storage import storage_url
from icbench.search.study import open_study

TINY = """
dataset: {name: mnist5k}
family: {name: resnet_cifar, size: resnet8, width: 0.5}
budget: {epochs: 1}
training: {batch_size: 256}
execution: {max_concurrent: 2, cpus_per_trial: 1}
n_trials: 3
sampler: {name: grid, seed: 0}
"""
SPACE = """
params:
  unit: {type: categorical, choices: [conv, ic, ic_dual]}
"""
MACS = {"conv": 2.3e6, "ic": 2.3e6, "ic_dual": 4.6e6}


def _source(tmp_path: Path, rows: list[tuple[str, float | None]]) -> Path:
    """A stored source study (created as `run` creates it) with finished trials added directly: the
    confirmation reads only the source's storage, so its trials need not be trained here."""
    path = write_study(tmp_path, TINY, SPACE)
    loaded = load_study(path)
    study = open_study(loaded, storage_url(loaded))
    dist = {"unit": CategoricalDistribution(["conv", "ic", "ic_dual"])}
    for unit, acc in rows:
        attrs = {"unit": unit, "placement": f"{unit}:{'0' if unit == 'conv' else '1'}111111", "seed": 0,
                 "is_basic": unit == "conv", "family": "resnet_cifar", "size": "resnet8", "width": 0.5,
                 "macs": MACS[unit], "status": "complete" if acc is not None else "failed"}  # fmt: skip
        if acc is None:
            trial = optuna.trial.create_trial(
                state=TrialState.FAIL, params={"unit": unit}, distributions=dist, user_attrs=attrs
            )
        else:
            attrs.update(val_acc=acc, test_acc=acc - 0.01)
            trial = optuna.trial.create_trial(
                state=TrialState.COMPLETE, values=[acc, MACS[unit]], params={"unit": unit},
                distributions=dist, user_attrs=attrs,
            )  # fmt: skip
        study.add_trial(trial)
    return path


def test_fresh_seeds_skip_the_seeds_the_search_used() -> None:
    assert fresh_seeds({0}, 3) == [1000, 1001, 1002]
    assert fresh_seeds({1000, 1002}, 3) == [1001, 1003, 1004]


def test_confirmation_study_is_its_own_experiment(tmp_path: Path) -> None:
    study = TINY.replace("cpus_per_trial: 1}", "cpus_per_trial: 1, asha: {enabled: true}}")
    loaded = load_study(write_study(tmp_path, study + "evaluation: {test: chosen}\n", SPACE))
    assert loaded.config.execution.asha.enabled
    derived = confirmation_study(loaded, 6)
    c = derived.config
    assert c.name == "s.confirm" and c.n_trials == 6 and c.enqueue == []
    assert c.evaluation.test == "all" and not c.execution.asha.enabled
    assert derived.space.params["seed"] == IntParam(type="int", low=0, high=2**31 - 1)
    fp = fpr.experiment_fingerprint(derived)
    assert fpr.fingerprint_hash(fp) != fpr.fingerprint_hash(fpr.experiment_fingerprint(loaded))
    # More seeds later extend the same confirmation: the point count is not part of the experiment.
    assert fpr.experiment_fingerprint(confirmation_study(loaded, 10)) == fp


def test_a_study_without_a_front_says_so(tmp_path: Path) -> None:
    path = _source(tmp_path, [("ic", None)])
    lines: list[str] = []
    run = confirm_study(path, 3, echo=lines.append)
    assert run.stop_reason and "has no Pareto front yet" in run.stop_reason
    assert any("nothing to confirm" in line for line in lines)
    md = (tmp_path / "reports" / "s.confirm" / "confirm.md").read_text()
    assert "Nothing confirmed" in md and "no COMPLETE trial" in md
    assert not (tmp_path / "runs" / "s.confirm").exists()  # no confirmation study was created


def test_a_study_that_was_never_run_is_refused(tmp_path: Path) -> None:
    path = write_study(tmp_path, TINY, SPACE)
    with pytest.raises(ConfigError, match="has not been run here"):
        confirm_study(path, 3, echo=lambda s: None)
    assert not (tmp_path / "runs" / "s.confirm").exists()


def test_a_changed_study_file_is_refused(tmp_path: Path) -> None:
    path = _source(tmp_path, [("conv", 0.9), ("ic", 0.92)])
    path.write_text(path.read_text().replace("epochs: 1", "epochs: 2"))
    with pytest.raises(ConfigError, match=r"budget\.epochs was 1, now 2"):
        confirm_study(path, 3, echo=lambda s: None)
    assert not (tmp_path / "runs" / "s.confirm").exists()


def _complete(db: Path) -> int:
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


@pytest.mark.slow
@pytest.mark.xdist_group("ray")
def test_confirm_trains_front_and_basic_times_k_and_resumes_after_a_kill(tmp_path: Path) -> None:
    # Front: #1 ic (0.92, 2.3M); basic reference: #0 conv; #2 ic_dual (0.91, 4.6M) is dominated.
    path = _source(tmp_path, [("conv", 0.90), ("ic", 0.92), ("ic_dual", 0.91)])
    cmd = [sys.executable, str(HERE.parents[1] / "run_study.py"), "confirm", str(path), "--seeds", "3"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parents[1])])}
    db = tmp_path / "runs" / "s.confirm" / "study.db"
    proc = subprocess.Popen(
        [*cmd, "--no-report"], env=env, start_new_session=True, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while _complete(db) < 1 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started
    proc.wait()
    confirm = optuna.load_study(study_name="s.confirm", storage=f"sqlite:///{db}")
    before = {t.number: t.user_attrs for t in confirm.get_trials() if t.state == TrialState.COMPLETE}
    assert before, "no confirmation trial completed before the kill"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    trials = optuna.load_study(study_name="s.confirm", storage=f"sqlite:///{db}").get_trials()
    points = [
        (t.user_attrs["source_trial"], t.user_attrs["confirm_seed"])
        for t in trials
        if t.state == TrialState.COMPLETE
    ]
    expected = {(n, s) for n in (1, 0) for s in (1000, 1001, 1002)}  # front + basic x 3 fresh seeds
    assert sorted(points) == sorted(expected), "not exactly the front and basic networks x K seeds, once each"
    for t in trials:
        if t.state == TrialState.COMPLETE:
            assert (
                t.params["seed"] == t.user_attrs["confirm_seed"]
                and t.user_attrs["candidate"]["seed"] == t.params["seed"]
            )
    trained = [
        (t.user_attrs.get("source_trial"), t.params.get("seed")) for t in trials if "curve" in t.user_attrs
    ]
    assert len(trained) == len(set(trained)), "a finished seed was trained again"
    for number, attrs in before.items():  # finished seeds kept as they were
        assert trials[number].state == TrialState.COMPLETE and trials[number].user_attrs == attrs
    link = optuna.load_study(study_name="s.confirm", storage=f"sqlite:///{db}").user_attrs[LINK_ATTR]
    assert link["study"] == "s" and sorted(link["trials"]) == [0, 1] and link["basic_trials"] == [0]
    md = (tmp_path / "reports" / "s.confirm" / "confirm.md").read_text()
    assert "6 of 6 seed runs COMPLETE" in md and "(n = 3)" in md
    assert all(t.user_attrs.get("test_acc") is not None for t in trials if t.state == TrialState.COMPLETE)
