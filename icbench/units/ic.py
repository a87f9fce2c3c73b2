"""`ic` (default): the inter-layer collision unit, y = u + (τ_c − 1)·ReLU(u − θ_c), τ_c = 2·sigmoid(a_c).

u = W ⋆ x + b is the velocity of the incoming ball; a ball above the threshold θ_c collides elastically
with the output neuron's ball and passes on τ_c·(u − θ_c) beyond the threshold (τ_c = 2 m_in/(m_in + m_c)),
one below it passes unchanged. a_c = 0 (equal masses) is the identity. See DESIGN.md §3.

Speed: in eager mode the elementwise tail runs as one autograd Function (`CollisionTail`) that writes y
into the convolution's output buffer, allocates one output-sized tensor per direction fewer, and sums
over channels along the contiguous axis (benchmarks/units.py, 2-core CPU, ResNet-20 3×3 shape:
forward+backward about 1.2× a plain convolution, against about 1.4× for the composed ops). What is left
is memory traffic: about eight passes over the output, where a fused kernel needs two. Under
torch.compile the plain formula is used instead, because the compiler fuses it into the convolution's
neighbouring kernels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import FunctionCtx, once_differentiable

from icbench.units._base import UNITS, UnitConv2d


def collision_reference(u: torch.Tensor, gain: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """y = u + gain·ReLU(u − θ) with per-channel `gain` and `theta` (shape (C,)), composed of plain ops."""
    g = gain.view(1, -1, 1, 1)
    return torch.addcmul(u, g, F.relu(u - theta.view(1, -1, 1, 1)))


def _channel_sum(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Sum of an (N, C, *spatial) tensor over every dimension but C, accumulated in `dtype`."""
    if not t.is_contiguous():  # e.g. channels_last: a reshape would copy
        return t.sum(dim=[0, *range(2, t.dim())], dtype=dtype)
    n, c = t.shape[:2]
    # The contiguous innermost sum first: several times faster on CPU than t.sum((0, 2, 3)).
    return t.view(n, c, -1).sum(2, dtype=dtype).sum(0)


class CollisionTail(torch.autograd.Function):
    """y = u + g·ReLU(u − θ), computed in place in u (the convolution's output, which nothing else reads).

    Saves r = ReLU(u − θ) (one output-sized tensor, as autograd would); the backward uses
    mask = r > 0:  ∂y/∂u = 1 + g·mask,  ∂L/∂g_c = Σ ∂L/∂y·r,  ∂L/∂θ_c = −g_c·Σ ∂L/∂y·mask.
    Once differentiable: a second derivative raises instead of silently being wrong.
    """

    @staticmethod
    def forward(ctx: FunctionCtx, u: torch.Tensor, gain: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        g = gain.to(u.dtype).view(1, -1, 1, 1)
        r = (u - theta.to(u.dtype).view(1, -1, 1, 1)).clamp_min_(0)
        ctx.mark_dirty(u)
        ctx.save_for_backward(r, g)
        ctx.param_dtypes = (gain.dtype, theta.dtype)
        return u.addcmul_(g, r)

    @staticmethod
    @once_differentiable
    def backward(
        ctx: FunctionCtx, grad_y: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        r, g = ctx.saved_tensors
        gain_dtype, theta_dtype = ctx.param_dtypes
        need_u, need_gain, need_theta = ctx.needs_input_grad
        acc = torch.promote_types(gain_dtype, torch.float32)  # parameter gradients summed in ≥ float32
        grad_masked = torch.ops.aten.threshold_backward(grad_y, r, 0)  # grad_y where r > 0, else 0
        grad_u = grad_gain = grad_theta = None
        if need_theta:
            grad_theta = (-g.view(-1).to(acc) * _channel_sum(grad_masked, acc)).to(theta_dtype)
        prod = None
        if need_gain:
            prod = grad_masked * r  # == grad_y * r, since r is 0 wherever grad_masked is
            grad_gain = _channel_sum(prod, acc).to(gain_dtype)
        if need_u:
            # The product is no longer needed: its buffer receives grad_u (one allocation fewer).
            grad_u = torch.addcmul(grad_y, g, grad_masked, out=prod)
        return grad_u, grad_gain, grad_theta


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

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor) -> None:
        """θ_c := the mean of channel c of u = W ⋆ x + b over the batch. With θ = 0 the kink sits wherever
        the convolution's output crosses 0; at the mean it splits every channel's actual values in two.
        The gain stays as it is (0 at initialisation: still the identity)."""
        u = self.conv(x)
        self.ic_theta.copy_(
            _channel_sum(u, torch.float32).div_(u.numel() // u.shape[1]).to(self.ic_theta.dtype)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.conv(x)
        # τ − 1 = 2·sigmoid(a) − 1 = tanh(a/2): exactly 0 at a = 0, so y == u bit for bit at init.
        gain = torch.tanh(0.5 * self.ic_a)
        if torch.compiler.is_compiling():
            return collision_reference(u, gain, self.ic_theta)
        if torch.is_grad_enabled() and (u.requires_grad or gain.requires_grad or self.ic_theta.requires_grad):
            return CollisionTail.apply(u, gain, self.ic_theta)
        # No gradient wanted (inference): the same arithmetic in place, without the Function's overhead.
        r = (u - self.ic_theta.to(u.dtype).view(1, -1, 1, 1)).clamp_min_(0)
        return u.addcmul_(gain.to(u.dtype).view(1, -1, 1, 1), r)
