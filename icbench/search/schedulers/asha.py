"""Asynchronous successive halving on validation accuracy alone (Li et al. 2020), as Ray Tune's
`ASHAScheduler` does it with one bracket.

Rungs at grace_period × reduction_factor^k epochs (k = 0, 1, ... while within the budget). When a trial
reaches a rung, its accuracy is compared with the accuracies recorded at that rung by the trials that
reached it before (asynchronous: no waiting for a full rung); it stops when it is below their
(1 − 1/η) quantile (numpy's linear interpolation, NaN ignored). The first trial at a rung always goes on.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from icbench.search.schedulers import SCHEDULERS, Scheduler


def rungs(grace_period: int, reduction_factor: int, max_t: int) -> list[int]:
    """The rung epochs, ascending (Ray's bracket: int(log(max_t / grace) / log(η) + 1) of them)."""
    n = int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1)
    return [grace_period * reduction_factor**k for k in range(n)]


@SCHEDULERS.register("asha")
class ASHA(Scheduler):
    metric = "val_acc"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rungs = rungs(self.grace_period, self.reduction_factor, self.max_t)
        self.recorded: dict[int, dict[str, float]] = {r: {} for r in self.rungs}

    def on_result(self, trial_id: str, epoch: int, result: dict[str, Any]) -> bool:
        value = float(result.get(self.metric, math.nan))
        for rung in reversed(self.rungs):  # the highest rung reached and not yet recorded
            if epoch < rung or trial_id in self.recorded[rung]:
                continue
            earlier = list(self.recorded[rung].values())
            cutoff = (
                float(np.nanpercentile(earlier, (1 - 1 / self.reduction_factor) * 100)) if earlier else None
            )
            go_on = cutoff is None or math.isnan(cutoff) or not value < cutoff
            self.recorded[rung][trial_id] = value
            return self._decide(
                trial_id,
                {"epoch": epoch, "rung": rung, self.metric: value, "cutoff": cutoff,
                 "at_rung": len(earlier), "continue": go_on},
            )  # fmt: skip
        return True
