"""`macs`: the candidate's multiply-accumulates per image (more predicts better); a baseline that costs nothing."""

from __future__ import annotations

from collections.abc import Sequence

from icbench.estimators._base import (
    ESTIMATORS,
    EstimateContext,
    Estimator,
    Scores,
    TableCandidate,
    timed_scores,
)


@ESTIMATORS.register("macs")
class MacsEstimator(Estimator):
    kind = "free"
    describe = "the candidate's multiply-accumulates per image (more predicts better)"

    def score(self, cands: Sequence[TableCandidate], ctx: EstimateContext, repeat: int) -> Scores:
        return timed_scores(cands, lambda c: c.macs)
