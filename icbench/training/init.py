"""Weight initialisation applied to a freshly built network before training (`Recipe.init`)."""

from __future__ import annotations

from torch import nn

from icbench.errors import ConfigError
from icbench.recipe import INITS

__all__ = ["initialise"]


def initialise(model: nn.Module, scheme: str) -> nn.Module:
    """Re-initialise `model` in place by `scheme` and return it.

    "family" keeps what the family's constructor did. "torch" resets every `nn.Conv2d` and `nn.Linear`
    to PyTorch's default, a uniform draw with bound 1/sqrt(fan_in); BatchNorm layers are left as built
    (scale 1, shift 0). Call it on the basic network, before units are placed: a placed unit copies the
    convolution's weights, so a candidate and its basic network start from the same draw.
    """
    if scheme not in INITS:
        raise ConfigError(f"unknown init {scheme!r}; valid: {', '.join(INITS)}", field="init")
    if scheme == "torch":
        for module in model.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                module.reset_parameters()
    return model
