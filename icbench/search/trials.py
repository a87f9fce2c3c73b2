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
    (a diverged point is an outcome and not retrained); waiting when a WAITING trial already queues it."""
    from optuna.trial import TrialState

    settled: set[Any] = set()
    waiting: set[Any] = set()
    for t in study.get_trials(deepcopy=False):
        key = key_of(t)
        if key is None:
            continue
        if t.state == TrialState.WAITING:
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


def mark_interrupted(study: Any, storage: Any, *, grid: Any = None) -> tuple[int, int]:
    """Trials left RUNNING by a driver that died are FAIL `interrupted` with a reason; returns how many
    were marked and how many grid points were queued again.

    In a grid study (`grid`, the study's `samplers.grid.GridPoints`, given) each interrupted point is first queued again (`enqueue_trial`, with
    `retry_of` naming the interrupted trial), since Optuna's grid sampler never asks a finished point
    again. Queuing before marking, and never twice for one trial, keeps a kill in between harmless.

    Args:
        storage: the study's Optuna storage (the one it was opened with): attributes of a trial that
            this process did not ask are written through the storage's public API.
    """
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    stale = [t for t in trials if t.state == TrialState.RUNNING]
    retried = {t.user_attrs.get("retry_of") for t in trials}
    study_id = storage.get_study_id_from_name(study.study_name)
    queued = 0
    for t in stale:
        if grid is not None and t.number not in retried and t.params and grid.is_whole(t.params):
            study.enqueue_trial(dict(t.params), user_attrs={"retry_of": t.number})
            queued += 1
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        storage.set_trial_user_attr(trial_id, "status", "interrupted")
        storage.set_trial_user_attr(
            trial_id, "reason", "interrupted: the driver stopped before this trial finished"
        )
        study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
    return len(stale), queued


def counts(study: Any) -> dict[str, int]:
    """Trials by state: complete, pruned, failed, rejected (a constraint or a duplicate), running, waiting."""
    from optuna.trial import TrialState

    out = {"complete": 0, "pruned": 0, "failed": 0, "rejected": 0, "running": 0, "waiting": 0}
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
            out["rejected"] += 1
        else:
            out["failed"] += 1
    return out
