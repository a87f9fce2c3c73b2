"""`conv`: the plain convolution, y = W ⋆ x + b (the reference every other unit starts from)."""

from __future__ import annotations

from torch import nn

from icbench.units._base import UNITS


@UNITS.register("conv")
class PlainConv2d(nn.Conv2d):
    """Exactly nn.Conv2d; registered so that `conv` is a unit like the others in studies and tests."""
