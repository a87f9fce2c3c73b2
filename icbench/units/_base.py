"""What every unit formulation shares (DESIGN.md §3).

A unit is a subclass of `nn.Conv2d` with nn.Conv2d's constructor. Its own parameters are created by
`reset_unit_parameters()` at values that make it compute exactly the plain convolution, so a basic
network's weights load into an IC network (`strict=False`, only the unit's own keys missing) and the IC
network starts out computing the same logits.
"""

from __future__ import annotations

import torch
from torch import nn

from icbench.registry import Registry

UNITS: Registry[type[nn.Conv2d]] = Registry("unit")


class UnitConv2d(nn.Conv2d):
    """Base of the non-trivial units: a convolution plus a few parameters of its own."""

    #: Names of the parameters the unit adds to nn.Conv2d's `weight` and `bias`.
    unit_param_names: tuple[str, ...] = ()

    def reset_unit_parameters(self) -> None:
        """Set the unit's own parameters to their identity values."""
        raise NotImplementedError

    def conv(self, x: torch.Tensor) -> torch.Tensor:
        """The plain convolution u = W ⋆ x + b."""
        return self._conv_forward(x, self.weight, self.bias)


def make_unit(name: str, conv: nn.Conv2d) -> nn.Conv2d:
    """A unit of kind `name` with `conv`'s configuration, weights, device, dtype and train/eval mode.

    The unit is built without re-initialising the convolution (its weights are copied from `conv`),
    and its own parameters start at their identity values.
    """
    cls = UNITS.get(name)
    padding = conv.padding if isinstance(conv.padding, str) else tuple(conv.padding)
    # Built on the meta device and then materialised: no time spent on an init that is overwritten.
    unit = cls(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
        device="meta",
        dtype=conv.weight.dtype,
    ).to_empty(device=conv.weight.device)
    with torch.no_grad():
        unit.weight.copy_(conv.weight)
        if conv.bias is not None:
            unit.bias.copy_(conv.bias)
    if isinstance(unit, UnitConv2d):
        unit.reset_unit_parameters()
    unit.weight.requires_grad_(conv.weight.requires_grad)
    return unit.train(conv.training)


def unit_name(module: nn.Module) -> str | None:
    """The registry name of `module`'s class, `"conv"` for a plain nn.Conv2d, None for anything else."""
    for key, cls in UNITS.items():
        if type(module) is cls:
            return key
    return "conv" if type(module) is nn.Conv2d else None
