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

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor) -> None:
        """Set the unit's data-dependent parameters from `x`, a batch of its inputs, keeping the unit's
        output unchanged (at initialisation: the plain convolution). Default: nothing to set."""

    def unit_parameters(self) -> list[nn.Parameter]:
        """The unit's own parameters (those named in `unit_param_names`)."""
        params = dict(self.named_parameters())
        return [params[name] for name in self.unit_param_names]


def unit_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every unit's own parameters in `model` (not the convolutions' weights and biases)."""
    return [p for m in model.modules() if isinstance(m, UnitConv2d) for p in m.unit_parameters()]


@torch.no_grad()
def calibrate_units(model: nn.Module, x: torch.Tensor) -> int:
    """Calibrate every unit of `model` on its own inputs, from one forward pass of the batch `x`.

    The pass runs in training mode (the normalisation the first steps will see) and leaves every buffer,
    BatchNorm's running statistics included, as it found it. Units compute the same output before and
    after their calibration, so one pass serves all of them. Returns the number of units calibrated.
    """
    units = [m for m in model.modules() if isinstance(m, UnitConv2d)]
    if not units:
        return 0
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    inputs: dict[int, torch.Tensor] = {}
    hooks = [
        m.register_forward_pre_hook(lambda mod, args: inputs.__setitem__(id(mod), args[0].detach().clone()))
        for m in units
    ]
    was_training = model.training
    try:
        model.train()
        model(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
        for name, b in model.named_buffers():
            b.copy_(buffers[name])
    for m in units:
        m.calibrate(inputs[id(m)])
    return len(units)


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
