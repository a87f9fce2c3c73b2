"""`final`: the candidate's own validation accuracy after its full training, one seed: the *noise ceiling*
as an estimator (what a search that trains each candidate once sees), at the full cost."""

from __future__ import annotations

from collections.abc import Sequence

from icbench.estimators._base import (
    CURVE_COST_COLUMNS,
    ESTIMATORS,
    EstimateContext,
    Estimator,
    Scores,
    TableCandidate,
    curve_scores,
)


@ESTIMATORS.register("final")
class FullBudgetOneSeed(Estimator):
    kind = "training"
    reads = CURVE_COST_COLUMNS
    describe = "validation accuracy after the full budget, one seed (the table's noise ceiling)"

    def score(self, cands: Sequence[TableCandidate], ctx: EstimateContext, repeat: int) -> Scores:
        return curve_scores(cands, ctx.seed(repeat), lambda row: float(row["val_acc"]), epochs=10**6)
