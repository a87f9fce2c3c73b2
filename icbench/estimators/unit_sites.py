"""`unit_sites`: how many sites hold the unit (more predicts better); a baseline that costs nothing."""

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


@ESTIMATORS.register("unit_sites")
class UnitSitesEstimator(Estimator):
    kind = "free"
    describe = "how many sites hold the unit (more predicts better)"

    def score(self, cands: Sequence[TableCandidate], ctx: EstimateContext, repeat: int) -> Scores:
        return timed_scores(cands, lambda c: c.n_unit_sites)
