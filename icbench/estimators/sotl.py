"""`sotl`: minus the sum of the first two epochs' mean training losses (SoTL-E, Ru et al. 2021), one seed."""

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

EPOCHS = 2


@ESTIMATORS.register("sotl")
class SumOfTrainingLosses(Estimator):
    kind = "training"
    reads = ("train_loss_curve", *CURVE_COST_COLUMNS)
    describe = (
        f"minus the sum of the mean training losses of the first {EPOCHS} epochs (lower loss predicts better)"
    )

    def score(self, cands: Sequence[TableCandidate], ctx: EstimateContext, repeat: int) -> Scores:
        return curve_scores(
            cands, ctx.seed(repeat), lambda row: -sum(float(v) for v in list(row["train_loss_curve"])[:EPOCHS]),
            epochs=EPOCHS,
        )  # fmt: skip
