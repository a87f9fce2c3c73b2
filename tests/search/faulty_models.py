"""User models (family `user`) that misbehave on purpose, for the search layer's failure tests."""

from __future__ import annotations

import torch
from torch import nn


class _Raises(nn.Module):
    def __init__(self, in_chans: int, num_classes: int, error: type[BaseException]) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chans, 4, 3, padding=1)
        self.fc = nn.Linear(4, num_classes)
        self.error = error

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            raise self.error("injected failure in the user model's forward pass")
        return self.fc(self.conv(x).mean(dim=(2, 3)))


def raising_cnn(num_classes: int, in_chans: int) -> nn.Module:
    """Builds fine and costs fine, raises RuntimeError as soon as it trains."""
    return _Raises(in_chans, num_classes, RuntimeError)


def oom_cnn(num_classes: int, in_chans: int) -> nn.Module:
    """Raises torch.OutOfMemoryError as soon as it trains (a simulated out-of-memory)."""
    return _Raises(in_chans, num_classes, torch.OutOfMemoryError)
