"""Early-stopping schedulers: one file per scheduler, registered by name with `@SCHEDULERS.register`.

A scheduler sees each trial's result after every epoch and says whether the trial goes on. It knows
nothing of the executor: the `ray` executor wraps it in a Ray Tune `TrialScheduler`
(`executors/ray_tune.py`), the `replay` executor calls it on its simulated clock, so a scheduler decides
the same way under both. A stopped trial is PRUNED (never on a front); each decision at a rung is kept
(`decisions`) and recorded on the trial, so a report can say why it stopped.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from icbench.registry import Registry

SCHEDULERS: Registry[type[Scheduler]] = Registry("scheduler")


class Scheduler(ABC):
    """Decides after each epoch whether a trial continues.

    Args:
        max_t: the budget in epochs (a trial that reaches it ends by itself).
        objectives: (metric name, "maximize" | "minimize") in the study's order; accuracy-like metrics
            arrive with each result, cost metrics (macs, params, latency_ms) are known when the trial starts.
        grace_period, reduction_factor: the rungs of successive halving (`execution.asha`).
    """

    def __init__(
        self,
        *,
        max_t: int,
        objectives: list[tuple[str, str]],
        grace_period: int = 1,
        reduction_factor: int = 2,
    ) -> None:
        self.max_t = max_t
        self.objectives = objectives
        self.grace_period = min(grace_period, max_t)
        self.reduction_factor = reduction_factor
        self.costs: dict[str, dict[str, float]] = {}
        self._decisions: dict[str, list[dict[str, Any]]] = {}

    def on_start(self, trial_id: str, costs: dict[str, Any] | None) -> None:
        """A trial starts; `costs` holds what is known before training (macs, params, ...)."""
        self.costs[trial_id] = {k: float(v) for k, v in (costs or {}).items() if isinstance(v, (int, float))}

    @abstractmethod
    def on_result(self, trial_id: str, epoch: int, result: dict[str, Any]) -> bool:
        """The trial finished `epoch` with `result` (val_acc, ...): True to continue, False to stop it."""

    def decisions(self, trial_id: str) -> list[dict[str, Any]]:
        """The rung decisions made about a trial so far (epoch, value, cutoff or rank, verdict)."""
        return list(self._decisions.get(trial_id, []))

    def _decide(self, trial_id: str, record: dict[str, Any]) -> bool:
        self._decisions.setdefault(trial_id, []).append(record)
        return bool(record["continue"])


def make_scheduler(loaded: Any) -> Scheduler:
    """The scheduler a study names (`execution.scheduler`), with its rungs (`execution.asha`)."""
    c = loaded.config
    cls = SCHEDULERS.get(c.execution.scheduler_name)
    return cls(
        max_t=c.budget.epochs,
        objectives=[(o.name, o.resolved_direction) for o in c.objectives],
        grace_period=c.execution.asha.grace_period,
        reduction_factor=c.execution.asha.reduction_factor,
    )


from icbench.search.schedulers import asha, fifo, mo_asha  # noqa: E402,F401 - registration
