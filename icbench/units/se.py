"""`se`: squeeze-and-excitation on the convolution's output, for comparison (not an IC unit).

y = u · 2·sigmoid(FC₂(ReLU(FC₁(GAP(u))))) with FC₂ zero-initialised, so the gate is exactly 1 at init.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from icbench.units._base import UNITS, UnitConv2d

#: Channel reduction of the squeeze (Hu et al. 2018 use 16), and the smallest hidden width.
SE_REDUCTION = 16
SE_MIN_HIDDEN = 4


@UNITS.register("se")
class SEConv2d(UnitConv2d):
    """Convolution followed by a squeeze-and-excitation channel gate centred on 1."""

    unit_param_names = ("se_fc1.weight", "se_fc1.bias", "se_fc2.weight", "se_fc2.bias")

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 - nn.Conv2d's signature
        super().__init__(*args, **kwargs)
        factory = {"device": self.weight.device, "dtype": self.weight.dtype}
        hidden = max(SE_MIN_HIDDEN, self.out_channels // SE_REDUCTION)
        self.se_fc1 = nn.Linear(self.out_channels, hidden, **factory)
        self.se_fc2 = nn.Linear(hidden, self.out_channels, **factory)
        self.reset_unit_parameters()

    def reset_unit_parameters(self) -> None:
        self.se_fc1.reset_parameters()
        nn.init.zeros_(self.se_fc2.weight)
        nn.init.zeros_(self.se_fc2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.conv(x)
        s = u.mean(dim=(2, 3))
        gate = 2.0 * torch.sigmoid(self.se_fc2(F.relu(self.se_fc1(s))))
        return u * gate[:, :, None, None]
