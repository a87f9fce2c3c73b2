"""`ic_dual`: the collision on the input side, y = W ⋆ x + ρ_c·(W ⋆ ReLU(x − θ_i)) + b, ρ_c = tanh(r_c).

The input space splits per input channel into a region below θ_i and one above, each with its own
linear map (W and (1 + ρ)·W). It costs a second convolution (2× MACs). See DESIGN.md §3.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from icbench.units._base import UNITS, UnitConv2d


@UNITS.register("ic_dual")
class ICDualConv2d(UnitConv2d):
    """Convolution plus a gated second convolution of the thresholded input (C_out + C_in new parameters)."""

    unit_param_names = ("ic_r", "ic_theta_in")

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 - nn.Conv2d's signature
        super().__init__(*args, **kwargs)
        factory = {"device": self.weight.device, "dtype": self.weight.dtype}
        self.ic_r = nn.Parameter(torch.empty(self.out_channels, **factory))
        self.ic_theta_in = nn.Parameter(torch.empty(self.in_channels, **factory))
        self.reset_unit_parameters()

    def reset_unit_parameters(self) -> None:
        nn.init.zeros_(self.ic_r)
        nn.init.zeros_(self.ic_theta_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.conv(x)
        v = self._conv_forward(F.relu(x - self.ic_theta_in.view(1, -1, 1, 1)), self.weight, None)
        return torch.addcmul(u, torch.tanh(self.ic_r).view(1, -1, 1, 1), v)
