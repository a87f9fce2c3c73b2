"""`resnet`: torchvision's ResNet-18/34/50/101, with `in_chans`, a width multiplier and a small-image stem.

The network is torchvision's: its `BasicBlock` / `Bottleneck`, its `_make_layer`, its forward and its
init. Only the constructor is ours, because torchvision's hard-codes the stage widths (64 … 512) and the
3-channel 7×7 stem; at width 1, 3 channels and 224×224 the model is the same as
`torchvision.models.resnetXX(weights=None)` (same state-dict keys and shapes, same MACs; tested).

Small images (`image_size <= 64` unless `small_input` is given): the stem is a 3×3 stride-1 convolution
and the max-pool is an identity, the usual CIFAR adaptation, so 32×32 inputs reach layer4 at 4×4.

Sites: `conv1` (stem, stage 0), `layerS.B.conv1..3` (stage S) and `layerS.B.downsample.0` (1×1
projection). Blocks: the stem is block 0, then one block per residual block. Eligible by default: all
but the stem and the downsample convolutions.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from icbench.families._base import SMALL_IMAGE_MAX, Family, layer_prefix_stages, register_family, scaled

#: size -> (torchvision block class name, blocks per stage, stem width at width 1).
SIZES: dict[str, tuple[str, tuple[int, int, int, int], int]] = {
    "resnet18": ("BasicBlock", (2, 2, 2, 2), 64),
    "resnet34": ("BasicBlock", (3, 4, 6, 3), 64),
    "resnet50": ("Bottleneck", (3, 4, 6, 3), 64),
    "resnet101": ("Bottleneck", (3, 4, 23, 3), 64),
    # Tiny test variant: one basic block per stage, stage widths 8, 16, 32, 64.
    "resnet_tiny": ("BasicBlock", (1, 1, 1, 1), 8),
}


@functools.cache
def resnet_class() -> type[nn.Module]:
    """The `ResNet` class, defined on first use: importing torchvision costs about 2 s (it imports
    torch._dynamo), and a dry run or a trial of another family never needs it."""
    from torchvision.models import resnet as tv_resnet

    class ResNet(tv_resnet.ResNet):
        """torchvision's ResNet with stem width, input channels and small-image stem as arguments."""

        __init__ = _init

    ResNet.__module__, ResNet.__qualname__ = __name__, "ResNet"  # pickles as icbench.families.resnet.ResNet
    return ResNet


def __getattr__(name: str) -> Any:
    if name == "ResNet":
        return resnet_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _init(
    self: Any,
    block: Any,
    layers: Sequence[int],
    *,
    num_classes: int = 1000,
    in_chans: int = 3,
    stem_width: int = 64,
    small_input: bool = False,
    zero_init_residual: bool = False,
    norm_layer: Callable[..., nn.Module] | None = None,
) -> None:
    """`ResNet.__init__`."""
    from torchvision.models import resnet as tv_resnet

    nn.Module.__init__(self)  # torchvision's __init__ is replaced, not extended (see module doc)
    self._norm_layer = norm_layer or nn.BatchNorm2d
    self.inplanes = stem_width
    self.dilation = 1
    self.groups = 1
    self.base_width = 64  # torchvision's width_per_group; BasicBlock only supports 64
    if small_input:
        self.conv1 = nn.Conv2d(in_chans, stem_width, kernel_size=3, stride=1, padding=1, bias=False)
    else:
        self.conv1 = nn.Conv2d(in_chans, stem_width, kernel_size=7, stride=2, padding=3, bias=False)
    self.bn1 = self._norm_layer(stem_width)
    self.relu = nn.ReLU(inplace=True)
    # Kept as a named (identity) module on small inputs so that module paths do not depend on size.
    self.maxpool = nn.Identity() if small_input else nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    self.layer1 = self._make_layer(block, stem_width, layers[0])
    self.layer2 = self._make_layer(block, stem_width * 2, layers[1], stride=2)
    self.layer3 = self._make_layer(block, stem_width * 4, layers[2], stride=2)
    self.layer4 = self._make_layer(block, stem_width * 8, layers[3], stride=2)
    self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
    self.fc = nn.Linear(stem_width * 8 * block.expansion, num_classes)

    for m in self.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
    # Zero-initialising the last BN of each residual branch makes every block start as the identity
    # (Goyal et al. 2017, arXiv 1706.02677); off by default, as in torchvision.
    if zero_init_residual:
        for m in self.modules():
            if isinstance(m, tv_resnet.Bottleneck):
                nn.init.constant_(m.bn3.weight, 0)
            elif isinstance(m, tv_resnet.BasicBlock):
                nn.init.constant_(m.bn2.weight, 0)


@register_family
class ResNetFamily(Family):
    """torchvision ResNet-18/34/50/101; `resnet_tiny` is the tiny variant."""

    name = "resnet"
    default_size = "resnet18"
    tiny_size = "resnet_tiny"

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
        **kwargs: Any,
    ) -> nn.Module:
        from torchvision.models import resnet as tv_resnet

        block_name, layers, stem_width = SIZES[size]
        if small_input is None:
            small_input = image_size <= SMALL_IMAGE_MAX
        return resnet_class()(
            getattr(tv_resnet, block_name),
            layers,
            num_classes=num_classes,
            in_chans=in_chans,
            stem_width=scaled(stem_width, width),
            small_input=small_input,
            **kwargs,
        )

    def site_stages(
        self,
        model: nn.Module,
        names: Sequence[str],
        blocks: Sequence[int],
        out_sizes: Sequence[tuple[int, int]],
    ) -> list[int]:
        return layer_prefix_stages(names)
