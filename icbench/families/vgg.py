"""`vgg`: torchvision's VGG-11/13/16 with batch norm, plus a small-image head.

The model is `torchvision.models.VGG` around a feature stack laid out exactly as torchvision's
`make_layers(cfg, batch_norm=True)` (conv, BN, ReLU per layer; max-pool between stages), built here so
that the input channels and the widths can be set. At 224×224, width 1 and 3 channels it equals
`torchvision.models.vggXX_bn(weights=None)` (same keys, shapes and MACs).

Small images (`image_size <= 64` unless `small_input` is given): torchvision's head (7×7 adaptive
pooling and three linear layers, 120 M parameters) is replaced by global average pooling and one
linear layer, and the last max-pool by an identity, so 28×28 inputs (which a fifth 2×2 pool would
shrink to nothing) and 32×32 inputs both work. Module paths of the convolutions do not change.

Sites: `features.I` for each convolution. Stage S (1-based) holds the convolutions after S − 1
max-pools; each convolution is its own block. Eligible by default: all but the first convolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from icbench.families._base import SMALL_IMAGE_MAX, Family, register_family, resolution_stages, scaled

#: size -> torchvision's layer configuration (numbers: conv widths, "M": 2×2 max-pool): its `cfgs` "A",
#: "B" and "D", written out so that listing sizes does not import torchvision (tests compare them).
SIZES: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    # Tiny test variant: one convolution per stage, narrow widths.
    "vgg_tiny": [8, "M", 16, "M", 32, "M", 32, "M", 32, "M"],
}

#: torchvision's head expects 512 channels at 7×7.
_TV_HEAD_CHANNELS = 512
_TV_HEAD_POOL = 7


def _vgg() -> Any:
    from torchvision.models import vgg  # lazily: see resnet.resnet_class

    return vgg


def make_layers(cfg: Sequence[int | str], *, in_chans: int = 3, width: float = 1.0) -> nn.Sequential:
    """torchvision's `make_layers(cfg, batch_norm=True)` with input channels and a width multiplier."""
    layers: list[nn.Module] = []
    in_channels = in_chans
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            out_channels = scaled(int(v), width)
            layers += [
                nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
            ]
            in_channels = out_channels
    return nn.Sequential(*layers)


def _last_conv_channels(features: nn.Sequential) -> int:
    return [m for m in features if isinstance(m, nn.Conv2d)][-1].out_channels


def _init_linear(layer: nn.Linear) -> nn.Linear:
    # torchvision's VGG init for linear layers.
    nn.init.normal_(layer.weight, 0, 0.01)
    nn.init.zeros_(layer.bias)
    return layer


@register_family
class VGGFamily(Family):
    """torchvision VGG-11/13/16 with BN; `vgg_tiny` is the tiny variant."""

    name = "vgg"
    default_size = "vgg11"
    tiny_size = "vgg_tiny"

    def sizes(self) -> list[str]:
        return list(SIZES)

    def build(
        self,
        size: str,
        *,
        num_classes: int,
        in_chans: int,
        image_size: int,
        width: float,
        small_input: bool | None = None,
        dropout: float = 0.5,
        **kwargs: Any,
    ) -> nn.Module:
        if small_input is None:
            small_input = image_size <= SMALL_IMAGE_MAX
        features = make_layers(SIZES[size], in_chans=in_chans, width=width)
        channels = _last_conv_channels(features)
        if small_input:
            # torchvision's constructor always builds its 120 M-parameter head; build that on the meta
            # device (no memory, no init time) since it is replaced right away. The features were built
            # before, on the CPU, and are initialised by the constructor as usual.
            with torch.device("meta"):
                model = _vgg().VGG(features, num_classes=num_classes, dropout=dropout, **kwargs)
            last_pool = max(i for i, m in enumerate(features) if isinstance(m, nn.MaxPool2d))
            features[last_pool] = nn.Identity()
            model.avgpool = nn.AdaptiveAvgPool2d(1)
            model.classifier = nn.Sequential(_init_linear(nn.Linear(channels, num_classes)))
            return model
        model = _vgg().VGG(features, num_classes=num_classes, dropout=dropout, **kwargs)
        if channels != _TV_HEAD_CHANNELS:
            # A narrower network (width < 1, tiny) at full size keeps torchvision's head shape.
            model.classifier[0] = _init_linear(nn.Linear(channels * _TV_HEAD_POOL**2, 4096))
        return model

    def site_stages(
        self,
        model: nn.Module,
        names: Sequence[str],
        blocks: Sequence[int],
        out_sizes: Sequence[tuple[int, int]],
    ) -> list[int]:
        features = getattr(model, "features", None)
        if not isinstance(features, nn.Sequential):
            return resolution_stages(blocks, out_sizes)
        stage_of: dict[str, int] = {}
        stage = 1
        for i, module in enumerate(features):
            # A max-pool replaced by an identity (small-image head) still ends its stage.
            if isinstance(module, (nn.MaxPool2d, nn.Identity)):
                stage += 1
            elif isinstance(module, nn.Conv2d):
                stage_of[f"features.{i}"] = stage
        if not all(name in stage_of for name in names):
            return resolution_stages(blocks, out_sizes)
        return [stage_of[name] for name in names]
