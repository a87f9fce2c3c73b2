"""`ic_dual`: the collision on the input side, y = W ⋆ x + ρ_c·(W ⋆ ReLU(x − θ_i)) + b, ρ_c = tanh(r_c).

The input space splits per input channel into a region below θ_i and one above, each with its own
linear map (W and (1 + ρ)·W). It costs a second convolution (2× MACs). See DESIGN.md §3.

Speed (benchmarks/units.py, 2-core CPU): ρ is folded into the second convolution's weight (ρ_c·W_c is a
tiny tensor) so the gate costs no output-sized product in either direction, θ is added as −θ (its
gradient is then a plain sum, without negating an input-sized tensor), and the two convolutions' outputs
are summed in place. Forward+backward went from about 2.4–2.5× to about 2.1–2.2× a plain convolution
at the ResNet-20 3×3 shape and from about 2.9–3.4× to 2.4–2.6× on a depthwise 3×3. Stacking x and
ReLU(x − θ) along the batch or channel dimension into one convolution was measured too: no faster for
dense convolutions, several times slower for depthwise ones, and no longer bit-exact at initialisation.
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

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor) -> None:
        """θ_i := the mean of input channel i over the batch. Inputs after a ReLU are ≥ 0, so with θ = 0
        the thresholded input equals the input, the gate is a per-channel scale that the following
        BatchNorm divides out, and ρ gets no useful gradient (DESIGN.md §3): a threshold inside the data
        makes the second convolution see another input than the first. ρ stays as it is (0 at
        initialisation: still the identity)."""
        mean = x.float().mean(dim=[0, *range(2, x.dim())])
        self.ic_theta_in.copy_(mean.to(self.ic_theta_in.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.conv(x)
        v = F.relu(x + (-self.ic_theta_in).view(1, -1, 1, 1), inplace=True)
        # ρ = tanh(0) = 0 makes the gated weight exactly zero, so y == u bit for bit at init.
        gated_weight = self.weight * torch.tanh(self.ic_r).view(-1, 1, 1, 1)
        # In place: the convolution's backward needs its input and weight, not its output.
        return u.add_(self._conv_forward(v, gated_weight, None))
