"""`val_acc_e2`: validation accuracy after two epochs of the candidate's own training (one seed)."""

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


@ESTIMATORS.register("val_acc_e2")
class ValAccEpoch2(Estimator):
    kind = "training"
    reads = ("val_acc_curve", *CURVE_COST_COLUMNS)
    describe = "validation accuracy after 2 epochs of the candidate's training (the repeat's seed)"

    def score(self, cands: Sequence[TableCandidate], ctx: EstimateContext, repeat: int) -> Scores:
        return curve_scores(
            cands,
            ctx.seed(repeat),
            lambda row: float(row["val_acc_curve"][min(1, len(row["val_acc_curve"]) - 1)]),
            epochs=2,
        )
