"""No early stopping: every trial trains its full budget."""

from __future__ import annotations

from typing import Any

from icbench.search.schedulers import SCHEDULERS, Scheduler


@SCHEDULERS.register("fifo")
class FIFO(Scheduler):
    def on_result(self, trial_id: str, epoch: int, result: dict[str, Any]) -> bool:
        return True
