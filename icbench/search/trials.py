"""The trials of a stored study, by state: counts, the points that are settled, and the trials an earlier
driver left running.

What a study command reads of its trials before and after it runs them; it knows nothing of who runs them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: FAIL statuses that do not settle a grid point: the trial never finished (`interrupted`), or it was
#: only a repeat of a point another trial holds (`duplicate`).
UNSETTLED = ("interrupted", "duplicate")


def settled_keys(study: Any, key_of: Callable[[Any], Any]) -> tuple[set[Any], set[Any]]:
    """(settled, waiting) keys of a study whose trials each run one queued point (`key_of(trial)`, None
    for a trial that runs none): settled by a COMPLETE or PRUNED trial or a FAIL that is not `UNSETTLED`
    (a diverged point is an outcome and not retrained); waiting when a WAITING trial already queues it,
    or a RUNNING one (before a run: a trial an earlier driver left with a checkpoint, which the searcher
    continues)."""
    from optuna.trial import TrialState

    settled: set[Any] = set()
    waiting: set[Any] = set()
    for t in study.get_trials(deepcopy=False):
        key = key_of(t)
        if key is None:
            continue
        if t.state in (TrialState.WAITING, TrialState.RUNNING):
            waiting.add(key)
        elif t.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
            t.state == TrialState.FAIL and t.user_attrs.get("status") not in UNSETTLED
        ):
            settled.add(key)
    return settled, waiting


def queue_missing(
    study: Any, points: list[tuple[Any, dict[str, Any], dict[str, Any]]], key_of: Callable[[Any], Any]
) -> tuple[int, int]:
    """Enqueue every (key, params, user_attrs) point without a settling trial (`settled_keys`), unless a
    WAITING trial already queues it; returns (points to run now, points already settled)."""
    settled, waiting = settled_keys(study, key_of)
    todo = 0
    for key, params, attrs in points:
        if key in settled:
            continue
        todo += 1
        if key not in waiting:
            study.enqueue_trial(params, user_attrs=attrs)
    return todo, len(settled & {key for key, _, _ in points})


def mark_interrupted(
    study: Any,
    storage: Any,
    *,
    grid: Any = None,
    checkpoints: str | None = None,
    requeue_enqueued: bool = False,
) -> tuple[int, int]:
    """Settle the trials a driver that died left RUNNING; returns how many were marked FAIL `interrupted`
    and how many of their points were queued again.

    - A trial with a checkpoint (`checkpoints`, the study's checkpoint root, given, and
      `trainable.has_checkpoint`) stays RUNNING: the searcher hands it out again first, as the same Optuna
      trial, and it resumes from its checkpoint (`AskTellSearcher`).
    - Every other one is FAIL `interrupted` with a reason. Its point is first queued again
      (`enqueue_trial`, with `retry_of` naming the interrupted trial) when it is a point of the grid
      (`grid`, the study's `samplers.grid.GridPoints`: Optuna's grid sampler never asks a finished point
      again), or, with `requeue_enqueued`, when the trial ran an enqueued point (the study's `enqueue:`
      points such as its basic networks, `seed_with`'s candidates): each is then trained to the end once.
      A sampled trial is not queued again (the sampler proposes afresh).

    Queuing before marking, and never twice for one trial, keeps a kill in between harmless.

    Args:
        storage: the study's Optuna storage (the one it was opened with): attributes of a trial that
            this process did not ask are written through the storage's public API.
    """
    from optuna.trial import TrialState

    from icbench.search.checkpoints import has_checkpoint

    trials = study.get_trials(deepcopy=False)
    stale = [
        t
        for t in trials
        if t.state == TrialState.RUNNING and not (checkpoints and has_checkpoint(checkpoints, t.number))
    ]
    retried = {t.user_attrs.get("retry_of") for t in trials}
    study_id = storage.get_study_id_from_name(study.study_name)
    queued = 0
    for t in stale:
        point = _requeue_point(t, grid, requeue_enqueued) if t.number not in retried else None
        if point is not None:
            attrs = {"retry_of": t.number}
            if t.user_attrs.get("proposed_by"):
                attrs["proposed_by"] = t.user_attrs["proposed_by"]
            study.enqueue_trial(point, user_attrs=attrs)
            queued += 1
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        storage.set_trial_user_attr(trial_id, "status", "interrupted")
        storage.set_trial_user_attr(
            trial_id, "reason", "interrupted: the driver stopped before this trial finished"
        )
        study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
    return len(stale), queued


def _requeue_point(trial: Any, grid: Any, enqueued: bool) -> dict[str, Any] | None:
    """The parameters to queue again for an interrupted trial, or None (see `mark_interrupted`)."""
    if grid is not None and trial.params and grid.is_whole(trial.params):
        return dict(trial.params)
    fixed = trial.system_attrs.get("fixed_params")  # set by `enqueue_trial`
    if enqueued and fixed:
        return dict(fixed)
    return None


def counts(study: Any) -> dict[str, int]:
    """Trials by state: complete, pruned, failed, rejected (over a constraint), duplicate (the same candidate
    as an earlier trial), running, waiting. Rejected and duplicate trials are FAIL in Optuna, never trained;
    the terminal, the report and its plots use these two names."""
    from optuna.trial import TrialState

    out = {"complete": 0, "pruned": 0, "failed": 0, "rejected": 0, "duplicate": 0, "running": 0, "waiting": 0}
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.WAITING:  # enqueued, not yet asked
            out["waiting"] += 1
        elif t.state == TrialState.COMPLETE:
            out["complete"] += 1
        elif t.state == TrialState.PRUNED:
            out["pruned"] += 1
        elif t.state == TrialState.RUNNING:
            out["running"] += 1
        elif t.user_attrs.get("status") in ("rejected", "duplicate"):
            out[t.user_attrs["status"]] += 1
        else:
            out["failed"] += 1
    return out
