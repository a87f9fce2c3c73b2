"""Crash and resume: a study SIGKILLed at five points, and the same command run again after each.

The kill points are exact, not left to timing: `crash_hooks.py` (the CLI with pause points wrapped
around library functions) stops at a named point and writes a marker; the test then kills the whole
process group. The last run is the plain `run_study.py run`. What must hold at the end: exactly the
target number of COMPLETE trials, every trial that was COMPLETE after any kill still COMPLETE with the
same parameters and values, no parameter set trained twice, a sound database, and a report.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState
from reliability_helpers import (
    HERE,
    TINY_STUDY,
    db_path,
    integrity,
    kill_group,
    load_trials,
    ray_sandbox,
    run_cli,
    start,
    wait_for_marker,
    write_study,
)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]

N_TRIALS = 6
#: Two epochs so that a trial has a "middle" to be killed in (after its first epoch).
STUDY = TINY_STUDY + f"budget: {{epochs: 2}}\nn_trials: {N_TRIALS}\nsampler: {{name: tpe, seed: 0}}\n"


def _complete(trials: list) -> dict[int, tuple[dict, list[float]]]:
    return {t.number: (t.params, t.values) for t in trials if t.state == TrialState.COMPLETE}


def test_sigkill_at_five_points_then_resume(tmp_path: Path) -> None:
    study = write_study(tmp_path, "soak", STUDY)
    db = db_path(study)
    markers = tmp_path / "markers"
    markers.mkdir()
    log = tmp_path / "runs.log"
    cmd = [sys.executable, str(HERE / "crash_hooks.py"), "run", str(study)]
    seen_complete: dict[int, tuple[dict, list[float]]] = {}
    leftovers: dict[str, list[int]] = {}

    with ray_sandbox() as box:
        for point in ("ray_start", "mid_trial", "between_trials", "storage_write", "report"):
            proc = start(cmd, box.env(ICBENCH_CRASH_AT=point, ICBENCH_CRASH_DIR=str(markers)), log)
            info = wait_for_marker(markers / point, proc, log)
            kill_group(proc)
            # Ray workers run in process groups of their own; they exit once their raylet is gone.
            # Whatever is still alive after a grace period is killed by pid (and reported on failure).
            leftovers[point] = box.kill_leftovers()
            trials = load_trials(study) if db.exists() else []
            states = [t.state for t in trials]

            # The kill landed where it was meant to.
            if point == "ray_start":
                assert trials == [], "no trial may exist before Ray is up"
            elif point == "mid_trial":
                assert TrialState.RUNNING in states, "no trial was running at the mid-trial kill"
            elif point == "between_trials":
                assert states[info["trial"]] == TrialState.COMPLETE
            elif point == "storage_write":
                # The kill came before the transaction committed: the trial is not COMPLETE, and the
                # next run marks it FAIL (interrupted) instead of counting a half-written result.
                running = [t for t in trials if t.state == TrialState.RUNNING and "curve" in t.user_attrs]
                assert running, "the trial whose completion was being written should still be RUNNING"
            elif point == "report":
                assert states.count(TrialState.COMPLETE) == N_TRIALS
                report = tmp_path / "reports" / "soak"
                assert (report / "trials.csv").exists() and not (report / "summary.md").exists()

            complete = _complete(trials)
            for number, record in seen_complete.items():  # nothing completed is ever lost or changed
                assert complete.get(number) == record, f"trial {number} changed after the {point} kill"
            seen_complete.update(complete)
            if db.exists():
                assert integrity(db) == "ok", f"database damaged by the {point} kill"

        # The plain command: nothing left to train, so it only writes the report.
        done = run_cli(["run", str(study)], box.env(), timeout=300)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert "nothing to run" in done.stdout
        assert box.kill_leftovers() == [], "a normal run left processes behind"
    print(f"processes still alive 5 s after each group kill: {leftovers}")

    trials = load_trials(study)
    complete = _complete(trials)
    assert len(complete) == N_TRIALS
    assert all(complete[n] == record for n, record in seen_complete.items())
    assert seen_complete.keys() == complete.keys()
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    for t in trials:
        if t.state == TrialState.FAIL:
            assert t.user_attrs["status"] == "interrupted" and t.user_attrs["reason"].startswith(
                "interrupted"
            )
    # No parameter set was trained to the end twice (a trained trial records its learning curve).
    trained = [json.dumps(t.params, sort_keys=True) for t in trials if "curve" in t.user_attrs]
    assert len(trained) == len(set(trained)), "a parameter set was trained twice"

    assert integrity(db) == "ok"
    loaded = optuna.load_study(study_name="soak", storage=f"sqlite:///{db}")
    assert len(loaded.best_trials) >= 1
    report = tmp_path / "reports" / "soak"
    assert {"summary.md", "trials.csv", "pareto.csv", "pareto.png"} <= {p.name for p in report.iterdir()}
    table = pd.read_csv(report / "trials.csv")
    assert len(table) == len(trials)
