"""Trial faults: a trial over its time budget is FAIL with its reason, the study goes on, and
`execution.max_failures` stops the study cleanly (exit code 3, a message that says why), through the
command line; and the searcher's bookkeeping of crashed workers, duplicates and the failure count.

Exceptions in user code, simulated out-of-memory and divergence are covered in
tests/search/test_end_to_end.py::test_failures_are_recorded_and_the_study_goes_on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState
from reliability_helpers import TINY_STUDY, load_trials, ray_sandbox, run_cli, write_study

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


@pytest.mark.slow
@pytest.mark.xdist_group("ray")
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


# --- the searcher alone (no Ray is started: Tune's side is played by the test)


def _searcher(propose: Any, *, max_failures: int = 10, max_rejections: int = 200) -> Any:
    from icbench.search.searcher import AskTellSearcher

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize"], sampler=optuna.samplers.RandomSampler(seed=0))
    return AskTellSearcher(
        study, propose, objectives=["val_acc"], target=10, max_failures=max_failures,
        max_consecutive_rejections=max_rejections,
    )  # fmt: skip


def _same_point(trial: optuna.Trial) -> Any:
    from icbench.search.searcher import Proposal

    return Proposal({"x": trial.suggest_int("x", 1, 1)})


def test_repeated_parameters_are_never_handed_out_twice() -> None:
    searcher = _searcher(_same_point, max_rejections=3)
    assert isinstance(searcher.suggest("t0"), dict)
    # Every later ask samples x = 1 again: settled as duplicates in the driver, never given to Tune.
    assert searcher.suggest("t1") is None
    trials = searcher.study.get_trials()
    assert [t.user_attrs.get("status") for t in trials[1:]] == ["duplicate"] * 3
    assert all(
        t.state == TrialState.FAIL and "same candidate as trial 0" in t.user_attrs["reason"]
        for t in trials[1:]
    )
    assert searcher.failures == 0, "duplicates are not failures"
    assert "max_consecutive_rejections" in searcher.stop_reason


def test_a_crashed_worker_is_fail_with_its_reason_and_counts_toward_the_cap() -> None:
    from icbench.search.searcher import Proposal

    searcher = _searcher(lambda t: Proposal({"x": t.suggest_float("x", 0, 1)}), max_failures=1)
    for i in range(2):
        assert isinstance(searcher.suggest(f"t{i}"), dict)
        searcher.on_trial_complete(f"t{i}", error=True)  # what Tune reports when a worker dies
    trials = searcher.study.get_trials()
    assert [(t.state, t.user_attrs["status"]) for t in trials] == [(TrialState.FAIL, "crashed")] * 2
    assert "error.txt" in trials[0].user_attrs["reason"]
    assert searcher.stop_reason.startswith(
        "stopped after 2 failed trials (more than execution.max_failures = 1)"
    )
    assert searcher.suggest("t2") == searcher.FINISHED, "no new trial starts once the cap is exceeded"
