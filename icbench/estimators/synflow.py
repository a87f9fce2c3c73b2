"""`synflow`: synaptic flow (Tanaka et al. 2020; Abdelfattah et al. 2021): with every parameter replaced by
its absolute value and an all-ones input, R = sum of the outputs; the score is Σ θ ⊙ ∂R/∂θ. Data-free; in
double precision, BatchNorm in evaluation mode; after the warm start (`_zero_cost`), which it needs: at
initialisation every placement is the same function."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from icbench.estimators._base import ESTIMATORS, EstimateContext, Estimator, Scores, TableCandidate
from icbench.estimators._zero_cost import proxy_scores


def synflow(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    net.zero_grad(set_to_none=True)
    net(torch.ones((1, *x.shape[1:]), dtype=torch.float64)).sum().backward()
    total = sum((p.detach() * p.grad).sum() for p in net.parameters() if p.grad is not None)
    return float(torch.log(torch.clamp(total, min=1e-300)))  # the raw product spans hundreds of decades


@ESTIMATORS.register("synflow")
class Synflow(Estimator):
    kind = "proxy"
    shares = "warm_start"
    describe = (
        "log synaptic flow of the absolute-valued network on an all-ones input, after a 20-step warm start"
    )

    def score(self, cands: Sequence[TableCandidate], ctx: EstimateContext, repeat: int) -> Scores:
        return proxy_scores(cands, ctx, repeat, synflow)
