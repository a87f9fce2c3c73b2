"""`grad_norm`: the sum over parameters of the gradient's L2 norm of the loss on one batch (Abdelfattah
et al. 2021), after the warm start (`_zero_cost`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from icbench.estimators._base import ESTIMATORS, EstimateContext, Estimator, Scores, TableCandidate
from icbench.estimators._zero_cost import proxy_scores


def grad_norm(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()
    return float(sum(p.grad.norm() for p in model.parameters() if p.grad is not None))


@ESTIMATORS.register("grad_norm")
class GradNorm(Estimator):
    kind = "proxy"
    shares = "warm_start"
    describe = "sum of the parameters' gradient norms on one batch, after a 20-step warm start"

    def score(self, cands: Sequence[TableCandidate], ctx: EstimateContext, repeat: int) -> Scores:
        return proxy_scores(cands, ctx, repeat, grad_norm)
