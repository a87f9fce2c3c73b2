"""Unit liveness: how much a trained unit's own parameters change what its site computes.

For a unit site with input x, δ = ‖unit(x) − conv(x)‖ / ‖conv(x)‖ over a fixed batch (conv: the same
weight and bias without the unit's own parameters). Every unit starts at δ = 0 (it is the plain
convolution at initialisation); a unit whose δ stays near 0 after training was a plain convolution in
all but name, and a comparison with it says nothing about the unit (DESIGN.md §3).
"""

from __future__ import annotations

import torch
from torch import nn

from icbench.liveness import INERT_DELTA, LIVENESS_BATCH, is_inert, median_delta
from icbench.units._base import UnitConv2d

__all__ = ["INERT_DELTA", "LIVENESS_BATCH", "is_inert", "median_delta", "unit_deltas"]


@torch.no_grad()
def unit_deltas(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """δ of every unit site of `model` on the batch `x`, by module path, in forward order.

    The model is run once in eval mode (the state validation sees); each unit's input is captured and
    its plain convolution computed beside it.
    """
    names = {id(m): name for name, m in model.named_modules() if isinstance(m, UnitConv2d)}
    out: dict[str, float] = {}

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...], y: torch.Tensor) -> None:
        assert isinstance(module, UnitConv2d)
        u = module.conv(args[0]).float()
        num = torch.linalg.vector_norm(y.float() - u)
        den = torch.linalg.vector_norm(u)
        out[names[id(module)]] = float(num / den) if float(den) > 0 else 0.0

    hooks = [m.register_forward_hook(hook) for m in model.modules() if id(m) in names]
    was_training = model.training
    try:
        model.eval()
        model(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return out
