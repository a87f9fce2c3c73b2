"""Trials a driver left RUNNING, settled by the next one (`trials.mark_interrupted`) and continued by the
searcher (`AskTellSearcher`), without Ray: Tune's side is played by the test.

- a trial with a checkpoint stays RUNNING and is handed out again first, as the same Optuna trial with
  its recorded candidate; its outcome is recorded once and its checkpoint folder removed;
- every enqueued point without a checkpoint (the study's `enqueue:` points such as its basic network,
  `seed_with`'s candidates) is queued again once, with `retry_of`; a sampled trial is not;
- a row of `tabulate` or a point of `confirm` held by a continued trial is not queued beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from icbench.search.checkpoints import checkpoint_folder, has_checkpoint
from icbench.search.records import Proposal
from icbench.search.searcher import AskTellSearcher
from icbench.search.trainable import FINAL_KEY
from icbench.search.trials import mark_interrupted, queue_missing, settled_keys

BASIC = {"unit": "conv", "lr": 0.1}
SEEDED = {"unit": "ic", "lr": 0.05}


def _study() -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(directions=["maximize"], sampler=optuna.samplers.RandomSampler(seed=0))


def _ask_all(study: optuna.Study, n: int) -> list[optuna.Trial]:
    trials = []
    for _ in range(n):
        t = study.ask()
        t.suggest_categorical("unit", ["conv", "ic", "se"])
        t.suggest_float("lr", 0.01, 0.3)
        t.set_user_attr("candidate", {"unit": t.params["unit"], "lr": t.params["lr"], "num_threads": 1})
        trials.append(t)
    return trials


def _checkpoint(root: Path, number: int) -> None:
    checkpoint_folder(str(root), number).write("state.pt", b"not read by the driver")


def _propose(trial: optuna.Trial) -> Proposal:
    cand = {"unit": trial.suggest_categorical("unit", ["conv", "ic", "se"]), "lr": trial.suggest_float("lr", 0.01, 0.3)}
    return Proposal({"candidate": {**cand, "num_threads": 1}, "cost": {"macs": 1}}, {"candidate": cand})


def test_enqueued_points_are_queued_again_once_and_checkpointed_trials_stay_running(tmp_path: Path) -> None:
    study = _study()
    study.enqueue_trial(BASIC)  # the study's `enqueue:` point (its basic network)
    study.enqueue_trial(SEEDED, user_attrs={"proposed_by": "estimator:params"})  # `seed_with`
    study.enqueue_trial({"unit": "se", "lr": 0.2})  # an enqueued point that left a checkpoint
    _ask_all(study, 4)  # the fourth is sampled
    root = tmp_path / "checkpoints"
    _checkpoint(root, 2)
    assert has_checkpoint(str(root), 2) and not has_checkpoint(str(root), 0)

    failed, queued = mark_interrupted(study, study._storage, checkpoints=str(root), requeue_enqueued=True)
    assert (failed, queued) == (3, 2)
    trials = study.get_trials()
    assert [t.state for t in trials[:4]] == [TrialState.FAIL, TrialState.FAIL, TrialState.RUNNING, TrialState.FAIL]
    assert all(trials[n].user_attrs["status"] == "interrupted" for n in (0, 1, 3))
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    assert [(t.user_attrs["retry_of"], t.system_attrs["fixed_params"]) for t in waiting] == [(0, BASIC), (1, SEEDED)]
    assert waiting[1].user_attrs["proposed_by"] == "estimator:params"

    # A second driver (after a kill right here) queues nothing twice.
    for _ in waiting:
        study.ask()  # taken by the next run, then interrupted again before finishing
    assert mark_interrupted(study, study._storage, checkpoints=str(root), requeue_enqueued=True) == (2, 2)
    assert mark_interrupted(study, study._storage, checkpoints=str(root), requeue_enqueued=True) == (0, 0)


def test_sampled_trials_and_commands_that_queue_their_own_points_are_not_requeued(tmp_path: Path) -> None:
    study = _study()
    study.enqueue_trial(BASIC)
    _ask_all(study, 2)
    # tabulate and confirm queue their own points (`queue_missing`): no requeue_enqueued there.
    assert mark_interrupted(study, study._storage) == (2, 0)
    assert not [t for t in study.get_trials() if t.state == TrialState.WAITING]


def test_a_continued_row_is_not_queued_beside_itself(tmp_path: Path) -> None:
    study = _study()
    study.enqueue_trial(BASIC, user_attrs={"row": "a"})
    study.enqueue_trial(SEEDED, user_attrs={"row": "b"})
    _ask_all(study, 2)
    root = tmp_path / "checkpoints"
    _checkpoint(root, 0)
    mark_interrupted(study, study._storage, checkpoints=str(root))
    points = [("a", BASIC, {"row": "a"}), ("b", SEEDED, {"row": "b"})]
    todo, done = queue_missing(study, points, lambda t: t.user_attrs.get("row"))
    assert (todo, done) == (2, 0)  # both still to run: "a" continued, "b" queued again
    assert [t.user_attrs["row"] for t in study.get_trials() if t.state == TrialState.WAITING] == ["b"]
    assert settled_keys(study, lambda t: t.user_attrs.get("row")) == (set(), {"a", "b"})


@pytest.mark.parametrize("fault_free", [False, True])
def test_searcher_continues_a_running_trial_first_and_counts_it_once(tmp_path: Path, fault_free: bool) -> None:
    study = _study()
    _ask_all(study, 1)
    root = tmp_path / "checkpoints"
    _checkpoint(root, 0)
    mark_interrupted(study, study._storage, checkpoints=str(root), requeue_enqueued=True)
    searcher = AskTellSearcher(
        study, _propose, objectives=["val_acc"], target=2, max_failures=0, max_consecutive_rejections=5,
        checkpoints=str(root), cost_of=lambda cand: {"macs": 7},
    )  # fmt: skip
    config = searcher.suggest("tune-a")
    assert config["trial_number"] == 0 and config["candidate"] == study.trials[0].user_attrs["candidate"]
    assert config["cost"] == {"macs": 7}
    other = searcher.suggest("tune-b")
    assert other["trial_number"] == 1  # then new trials are asked
    assert searcher.suggest("tune-c") is None  # the target is covered by the two running trials

    # Tune retried tune-a after a worker fault: intermediate results again, one final result.
    searcher.on_trial_result("tune-a", {"epoch": 2, "val_acc": 0.4, FINAL_KEY: False})
    final = {"status": "complete", "val_acc": 0.5, "epochs_retrained": 1, "resumed_from_epoch": 1, "attempts": 2,
             FINAL_KEY: True}  # fmt: skip
    searcher.on_trial_complete("tune-a", final)
    searcher.on_trial_complete("tune-a", final)  # a repeated notice is ignored, never counted twice
    trial = study.get_trials()[0]
    assert trial.state == TrialState.COMPLETE and trial.values == [0.5]
    assert {k: trial.user_attrs[k] for k in ("epochs_retrained", "resumed_from_epoch", "attempts", "driver_resumes")} == {
        "epochs_retrained": 1, "resumed_from_epoch": 1, "attempts": 2, "driver_resumes": 1}  # fmt: skip
    assert searcher.evaluated == 1
    assert not has_checkpoint(str(root), 0) and not (root / "trial_00000").exists()


def test_a_running_trial_without_its_candidate_ends_interrupted(tmp_path: Path) -> None:
    study = _study()
    t = study.ask()
    t.suggest_float("lr", 0.01, 0.3)
    root = tmp_path / "checkpoints"
    _checkpoint(root, 0)
    searcher = AskTellSearcher(
        study, _propose, objectives=["val_acc"], target=1, max_failures=0, max_consecutive_rejections=5,
        checkpoints=str(root),
    )  # fmt: skip
    config: Any = searcher.suggest("tune-a")
    assert config["trial_number"] == 1
    first = study.get_trials()[0]
    assert first.state == TrialState.FAIL and first.user_attrs["status"] == "interrupted"
