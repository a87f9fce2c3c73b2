"""`jacob_cov`: the correlation of input Jacobians over one batch (Mellor et al. 2020, v1): with J the
gradient of the summed outputs with respect to each image and λ the eigenvalues of its correlation
matrix, the score is −Σ (log(λ + k) + 1/(λ + k)), k = 1e-5. After the warm start (`_zero_cost`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from icbench.estimators._base import ESTIMATORS, EstimateContext, Estimator, Scores, TableCandidate
from icbench.estimators._zero_cost import proxy_scores

K = 1e-5


def jacob_cov(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    x = x.clone().requires_grad_(True)
    model.zero_grad(set_to_none=True)
    model(x).sum().backward()
    jac = x.grad.flatten(1).double().numpy()
    corr = np.nan_to_num(np.corrcoef(jac), nan=0.0)
    v = np.linalg.eigvalsh(corr)
    return float(-np.sum(np.log(np.abs(v) + K) + 1.0 / (np.abs(v) + K)))


@ESTIMATORS.register("jacob_cov")
class JacobCov(Estimator):
    kind = "proxy"
    shares = "warm_start"
    describe = "correlation spectrum of the batch's input Jacobians, after a 20-step warm start"

    def score(self, cands: Sequence[TableCandidate], ctx: EstimateContext, repeat: int) -> Scores:
        return proxy_scores(cands, ctx, repeat, jacob_cov)
