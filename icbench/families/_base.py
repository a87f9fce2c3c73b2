"""The `Family` spec every CNN family implements, the `FAMILIES` registry and shared site rules.

A family builds models by size name and knows how its convolution sites group into stages. Everything
else about sites (their order, names, blocks, MACs) is read from the built model by
`icbench.placement.sites`, so the rules below only need module paths.

Rules shared by every family unless it overrides them (see `Family.site_stages` / `default_eligible`):

- **block**: consecutive sites whose module path has the same *block key* form one block; blocks are
  numbered 0, 1, ... over the whole network in forward order. The key is the path up to and
  including its first all-digit component (`layer2.1.conv1` -> `layer2.1`, `features.3` ->
  `features.3`, `features.4.conv.1.0` -> `features.4`), or else the parent path
  (`features.denseblock1.denselayer2.conv1` -> `features.denseblock1.denselayer2`), or else the name
  itself for a top-level conv (`conv1`).
- **eligible by default**: every site except the first one in forward order (the stem, which sees the
  raw image) and 1×1 convolutions whose path contains `downsample` or `shortcut` (projection
  shortcuts, which are not part of the residual function).
- **stage** (generic fallback): a block's stage is the number of distinct output resolutions seen up
  to its last site, minus one (each spatial downsampling starts a new stage).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from icbench.checkpoints import check_state_dict, read_state_dict
from icbench.errors import UnknownNameError
from icbench.registry import Registry

#: Inputs at most this wide get the small-image variants (3×3 stem, fewer early downsamplings) by default.
SMALL_IMAGE_MAX = 64

_DIGITS = re.compile(r"^\d+$")
_SHORTCUT_WORDS = ("downsample", "shortcut")


@dataclass(frozen=True)
class ModelSpec:
    """What a model was built from; `build_model` attaches it as `model.icbench_spec`."""

    family: str
    size: str
    num_classes: int
    in_chans: int
    image_size: int
    width: float

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.in_chans, self.image_size, self.image_size)


class Family(ABC):
    """A CNN family: builds models by size name and assigns stages to its convolution sites.

    Subclasses set `name`, `default_size` and `tiny_size` (a small test variant: one block per stage,
    narrow widths) and implement `sizes()` and `build()`. Register an instance with `@register_family`.
    """

    name: str = ""
    #: Size used when none is given (None: the family needs an explicit size).
    default_size: str | None = None
    #: A small variant every test runs on.
    tiny_size: str = ""

    @abstractmethod
    def sizes(self) -> list[str]:
        """The size names this family builds."""

    @abstractmethod
    def build(
        self, size: str, *, num_classes: int, in_chans: int, image_size: int, width: float, **kwargs: Any
    ) -> nn.Module:
        """Build a randomly initialised model of `size` (already validated by `check_size`)."""

    def check_size(self, size: str) -> None:
        """Raise `UnknownNameError` listing the valid sizes if `size` is not one of them."""
        if size not in self.sizes():
            raise UnknownNameError(f"{self.name} size", size, self.sizes())

    def default_eligible(self, index: int, name: str, conv: nn.Conv2d) -> bool:
        """Whether the site is eligible for a unit by default (see the module docstring)."""
        return default_eligible(index, name, conv)

    def site_stages(
        self,
        model: nn.Module,
        names: Sequence[str],
        blocks: Sequence[int],
        out_sizes: Sequence[tuple[int, int]],
    ) -> list[int]:
        """The stage of each site, given the sites in forward order with their blocks and output sizes."""
        return resolution_stages(blocks, out_sizes)


FAMILIES: Registry[Family] = Registry("family")


def register_family(cls: type[Family]) -> type[Family]:
    """Class decorator: register one instance of `cls` under `cls.name`."""
    FAMILIES.add(cls.name, cls())
    return cls


class GenericFamily(Family):
    """The shared rules, for models that do not come from a registered family (not registered itself)."""

    name = "generic"

    def sizes(self) -> list[str]:
        return []

    def build(self, size: str, **kwargs: Any) -> nn.Module:  # pragma: no cover - never built
        raise NotImplementedError


GENERIC = GenericFamily()


# ---------------------------------------------------------------------------------------------------
# Shared site rules
# ---------------------------------------------------------------------------------------------------
def block_key(name: str) -> str:
    """The block a site belongs to, from its module path (see the module docstring)."""
    parts = name.split(".")
    for i, part in enumerate(parts):
        if _DIGITS.match(part):
            return ".".join(parts[: i + 1])
    return ".".join(parts[:-1]) or name


def default_eligible(index: int, name: str, conv: nn.Conv2d) -> bool:
    """Not the stem (first site) and not a 1×1 projection shortcut."""
    if index == 0:
        return False
    is_1x1 = tuple(conv.kernel_size) == (1, 1)
    return not (is_1x1 and any(word in name for word in _SHORTCUT_WORDS))


def resolution_stages(blocks: Sequence[int], out_sizes: Sequence[tuple[int, int]]) -> list[int]:
    """Stage = number of distinct output resolutions seen up to the end of the site's block, minus one."""
    last_size_of_block: dict[int, tuple[int, int]] = {}
    for block, size in zip(blocks, out_sizes, strict=True):
        last_size_of_block[block] = size
    seen: list[tuple[int, int]] = []
    stage_of_block: dict[int, int] = {}
    for block in dict.fromkeys(blocks):
        size = last_size_of_block[block]
        if size not in seen:
            seen.append(size)
        stage_of_block[block] = len(seen) - 1
    return [stage_of_block[b] for b in blocks]


def layer_prefix_stages(names: Sequence[str]) -> list[int]:
    """ResNet rule: a site under `layerN.` is in stage N; anything else (the stem) is stage 0."""
    stages = []
    for name in names:
        match = re.match(r"^layer(\d+)\.", name)
        stages.append(int(match.group(1)) if match else 0)
    return stages


# ---------------------------------------------------------------------------------------------------
# Weights from local files (never from the internet)
# ---------------------------------------------------------------------------------------------------
def load_weights_file(model: nn.Module, path: str | Path) -> None:
    """Load a local state dict file into `model`, strictly (every key and shape must match)."""
    state_dict = read_state_dict(path, what="weights file")
    check_state_dict(model, state_dict, source=str(path))
    model.load_state_dict(state_dict)


def kaiming_init_conv(conv: nn.Conv2d) -> nn.Conv2d:
    """torchvision's convolution init (He et al. 2015, fan_out), for convs replaced after construction."""
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


def scaled(channels: int, width: float) -> int:
    """`channels` times the width multiplier, rounded, at least 1."""
    return max(1, int(round(channels * width)))
