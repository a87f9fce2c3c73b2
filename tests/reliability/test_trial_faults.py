"""Trial faults through the command line: a trial over its time budget is FAIL with its reason, the study
goes on, and `execution.max_failures` stops the study cleanly (exit code 3, a message that says why).

Exceptions in user code, simulated out-of-memory and divergence are covered in
tests/search/test_end_to_end.py::test_failures_are_recorded_and_the_study_goes_on.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from optuna.trial import TrialState
from reliability_helpers import TINY_STUDY, load_trials, ray_sandbox, run_cli, write_study

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]

# 400 epochs of the tiny study take far longer than the 3 s budget; 1 epoch takes a fraction of it.
# One trial at a time, so the order is fixed: over budget (FAIL), 1 epoch (COMPLETE), over budget (FAIL,
# the second failure: over the cap of 1). The grid has more points than that, so only the cap can stop it.
SPACE = """
params:
  epochs: {type: categorical, choices: [400, 1]}
  lr: {type: categorical, choices: [0.05, 0.1, 0.15, 0.2]}
"""
STUDY = (
    TINY_STUDY.replace("max_concurrent: 2", "max_concurrent: 1").replace(
        "num_cpus: 2}", "num_cpus: 2, max_failures: 1}"
    )
    + """budget: {epochs: 1, time_s: 3}
n_trials: 4
sampler: {name: grid, seed: 0}
enqueue: [{epochs: 400, lr: 0.05}, {epochs: 1, lr: 0.05}, {epochs: 400, lr: 0.1}]
"""
)


def test_time_budget_fails_the_trial_and_the_failure_cap_stops_the_study(tmp_path: Path) -> None:
    study = write_study(tmp_path, "faults", STUDY, SPACE)
    with ray_sandbox() as box:
        done = run_cli(["run", str(study)], box.env(), timeout=300)
        assert box.kill_leftovers() == []

    # Clean stop: the documented exit code, and the reason in the output.
    assert done.returncode == 3, done.stdout[-3000:] + done.stderr[-3000:]
    assert (
        "study stopped early: stopped after 2 failed trials (more than execution.max_failures = 1)"
        in done.stdout
    )
    assert "Traceback" not in done.stderr

    trials = load_trials(study)
    assert [(t.params["epochs"], t.state) for t in trials] == [
        (400, TrialState.FAIL), (1, TrialState.COMPLETE), (400, TrialState.FAIL)
    ], "the study must go on after the first failure and stop at the second"  # fmt: skip
    for t in (trials[0], trials[2]):
        assert t.user_attrs["status"] == "failed"
        assert t.user_attrs["reason"].startswith("time budget of 3.0 s exhausted after ")
        assert t.user_attrs["epochs_done"] < 400  # stopped, and says how far it got
        assert len(t.user_attrs["curve"]) == t.user_attrs["epochs_done"]
    # Stopped early, but the report is still written.
    assert (tmp_path / "reports" / "faults" / "summary.md").exists()
