"""`ic` (default): the inter-layer collision unit, y = u + (τ_c − 1)·ReLU(u − θ_c), τ_c = 2·sigmoid(a_c).

u = W ⋆ x + b is the velocity of the incoming ball; a ball above the threshold θ_c collides elastically
with the output neuron's ball and passes on τ_c·(u − θ_c) beyond the threshold (τ_c = 2 m_in/(m_in + m_c)),
one below it passes unchanged. a_c = 0 (equal masses) is the identity. See DESIGN.md §3.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from icbench.units._base import UNITS, UnitConv2d


@UNITS.register("ic")
class ICConv2d(UnitConv2d):
    """Convolution followed by a per-channel two-piece linear collision (2·C_out new parameters)."""

    unit_param_names = ("ic_a", "ic_theta")

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 - nn.Conv2d's signature
        super().__init__(*args, **kwargs)
        factory = {"device": self.weight.device, "dtype": self.weight.dtype}
        self.ic_a = nn.Parameter(torch.empty(self.out_channels, **factory))
        self.ic_theta = nn.Parameter(torch.empty(self.out_channels, **factory))
        self.reset_unit_parameters()

    def reset_unit_parameters(self) -> None:
        nn.init.zeros_(self.ic_a)
        nn.init.zeros_(self.ic_theta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.conv(x)
        # τ − 1 = 2·sigmoid(a) − 1 = tanh(a/2): exactly 0 at a = 0, so y == u bit for bit at init.
        gain = torch.tanh(0.5 * self.ic_a).view(1, -1, 1, 1)
        theta = self.ic_theta.view(1, -1, 1, 1)
        return torch.addcmul(u, gain, F.relu(u - theta))
