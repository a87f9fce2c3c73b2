"""`nwot`: neural architecture search without training (Mellor et al. 2021): the binary ReLU activation
codes of one batch give K = C Cᵀ + (1 − C)(1 − C)ᵀ (agreements between images); the score is log |det K|.
After the warm start (`_zero_cost`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from icbench.estimators._base import ESTIMATORS, EstimateContext, Estimator, Scores, TableCandidate
from icbench.estimators._zero_cost import proxy_scores


def nwot(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    codes: list[torch.Tensor] = []
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    if not relus:  # a family with functional ReLUs: read the sign of the BatchNorm outputs instead
        relus = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    hooks = [m.register_forward_hook(lambda _m, _i, out: codes.append((out > 0).flatten(1).double()))
             for m in relus]  # fmt: skip
    try:
        with torch.no_grad():  # train mode: BatchNorm normalises with the batch, as in training
            model(x)
    finally:
        for h in hooks:
            h.remove()
    c = torch.cat(codes, dim=1)
    k = c @ c.T + (1 - c) @ (1 - c).T
    return float(torch.linalg.slogdet(k).logabsdet)


@ESTIMATORS.register("nwot")
class Nwot(Estimator):
    kind = "proxy"
    shares = "warm_start"
    describe = "log |det| of the batch's ReLU-code agreement matrix, after a 20-step warm start"

    def score(self, cands: Sequence[TableCandidate], ctx: EstimateContext, repeat: int) -> Scores:
        return proxy_scores(cands, ctx, repeat, nwot)
