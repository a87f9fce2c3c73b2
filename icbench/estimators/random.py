"""`random`: a random score per candidate (the floor every estimator must beat), drawn per repeat."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from icbench.estimators._base import ESTIMATORS, EstimateContext, Estimator, Scores, TableCandidate


@ESTIMATORS.register("random")
class RandomEstimator(Estimator):
    kind = "free"
    describe = "a uniform random number per candidate, drawn anew for every repeat"

    def score(self, cands: Sequence[TableCandidate], ctx: EstimateContext, repeat: int) -> Scores:
        rng = np.random.default_rng(1000 + repeat)
        return Scores({c.key: float(v) for c, v in zip(cands, rng.random(len(cands)), strict=True)}, 0.0, 0.0)
