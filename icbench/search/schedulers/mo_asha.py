"""Pareto-aware asynchronous successive halving (MO-ASHA, Schmucker et al. 2021).

The rungs are ASHA's (grace_period × reduction_factor^k epochs). When a trial reaches a rung, it is
ranked among every trial recorded at that rung, itself included, by non-dominated sorting over the study's
objectives: validation accuracy at that rung (the only partial measurement) and the costs known exactly
before training (MACs, parameters; an objective known neither way, such as latency before a trial ends,
is left out). It goes on when its position is within the best ceil(n / η) of those n trials.

Tie-break inside a non-dominated rank: higher accuracy first, then the lower cost objectives in order,
then the earlier arrival. So a cheap candidate with a lower accuracy that no recorded trial dominates keeps
the rank of the most accurate ones, where accuracy-only ASHA would stop it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from icbench.search.schedulers import SCHEDULERS, Scheduler
from icbench.search.schedulers.asha import rungs

#: Objectives whose value arrives with each epoch's result; the others must be known at the start.
PARTIAL = ("val_acc",)


def nondominated_ranks(points: np.ndarray) -> np.ndarray:
    """Rank 0 for the non-dominated points, 1 for those dominated only by rank 0, ... (all minimised)."""
    n = len(points)
    ranks = np.full(n, -1)
    remaining = np.arange(n)
    rank = 0
    while remaining.size:
        sub = points[remaining]
        dominated = np.array(
            [bool(np.any(np.all(sub <= p, axis=1) & np.any(sub < p, axis=1))) for p in sub], dtype=bool
        )
        ranks[remaining[~dominated]] = rank
        remaining = remaining[dominated]
        rank += 1
    return ranks


@SCHEDULERS.register("mo_asha")
class MOASHA(Scheduler):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rungs = rungs(self.grace_period, self.reduction_factor, self.max_t)
        self.recorded: dict[int, dict[str, list[float]]] = {r: {} for r in self.rungs}

    def _vector(self, trial_id: str, result: dict[str, Any]) -> list[float] | None:
        """The trial's objectives as values to minimise; None when accuracy is missing."""
        out = []
        for name, direction in self.objectives:
            value = result.get(name) if name in PARTIAL else self.costs.get(trial_id, {}).get(name)
            if value is None or (name in PARTIAL and math.isnan(float(value))):
                if name in PARTIAL:
                    return None
                continue  # neither partial nor known in advance: not part of the ranking
            out.append(-float(value) if direction == "maximize" else float(value))
        return out

    def on_result(self, trial_id: str, epoch: int, result: dict[str, Any]) -> bool:
        for rung in reversed(self.rungs):
            if epoch < rung or trial_id in self.recorded[rung]:
                continue
            vector = self._vector(trial_id, result)
            if vector is None:
                return True
            recorded = self.recorded[rung]
            recorded[trial_id] = vector
            ids = list(recorded)
            widths = {len(v) for v in recorded.values()}
            if len(widths) > 1:  # a cost some trials lack: rank on accuracy alone
                points = np.array([[recorded[i][0]] for i in ids])
            else:
                points = np.array([recorded[i] for i in ids])
            ranks = nondominated_ranks(points)
            order = sorted(range(len(ids)), key=lambda k: (ranks[k], *points[k], k))
            position = order.index(ids.index(trial_id))
            keep = math.ceil(len(ids) / self.reduction_factor)
            return self._decide(
                trial_id,
                {"epoch": epoch, "rung": rung, "val_acc": float(result.get("val_acc", math.nan)),
                 "rank": int(ranks[ids.index(trial_id)]), "position": position, "kept": keep,
                 "at_rung": len(ids), "continue": position < keep},
            )  # fmt: skip
        return True
