"""`resnet_cifar`: the CIFAR ResNets of He et al. 2016 (§4.2), depth 6n + 2, with a width multiplier.

Three stages of n basic blocks at widths 16·w, 32·w, 64·w on 32×32 maps, then 16×16 and 8×8, a 3×3
stem without max-pooling, global average pooling and one linear layer. Where a stage doubles the
width the shortcut is He et al.'s option A by default: subsample and zero-pad the channels, no
parameters (that is how ResNet-20 has 0.27 M parameters). Option B (a 1×1 convolution + BN) is
available as `shortcut="B"`; its convolution is a site named `layerS.B.shortcut.0`.

Sites: `conv1` (stem, stage 0), `layerS.B.conv1` / `layerS.B.conv2` (stage S, 1-based), and with
option B `layerS.B.shortcut.0`. Blocks: the stem is block 0, then one block per residual block.
Eligible by default: all but the stem and the 1×1 shortcut convolutions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from icbench.errors import UnknownNameError
from icbench.families._base import Family, layer_prefix_stages, register_family, scaled

NormLayer = Callable[[int], nn.Module]

#: Number of basic blocks per stage for each depth (depth = 6n + 2).
BLOCKS_PER_STAGE = {
    "resnet8": 1,
    "resnet14": 2,
    "resnet20": 3,
    "resnet32": 5,
    "resnet44": 7,
    "resnet56": 9,
    "resnet110": 18,
}
BASE_WIDTHS = (16, 32, 64)


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class PadShortcut(nn.Module):
    """Option A shortcut: take every `stride`-th pixel and zero-pad the new channels (no parameters)."""

    def __init__(self, in_planes: int, planes: int, stride: int, norm_layer: NormLayer) -> None:
        super().__init__()
        self.stride = stride
        self.pad = planes - in_planes
        if self.pad < 0:
            raise ValueError(f"option A shortcut cannot reduce channels ({in_planes} -> {planes})")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        half = self.pad // 2
        return F.pad(x, (0, 0, 0, 0, half, self.pad - half))


def conv_shortcut(in_planes: int, planes: int, stride: int, norm_layer: NormLayer) -> nn.Module:
    """Option B shortcut: a 1×1 projection convolution and BN."""
    return nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), norm_layer(planes))


SHORTCUTS: dict[str, Callable[[int, int, int, NormLayer], nn.Module]] = {"A": PadShortcut, "B": conv_shortcut}


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with BN and ReLU, plus the shortcut (He et al. 2016, Fig. 2 left)."""

    expansion = 1

    def __init__(
        self,
        in_planes: int,
        planes: int,
        stride: int = 1,
        shortcut: str = "A",
        norm_layer: NormLayer = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        # Defined in forward order, so module order and forward order of the sites agree.
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        if stride != 1 or in_planes != planes:
            self.shortcut = SHORTCUTS[shortcut](in_planes, planes, stride, norm_layer)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for small images: 3×3 stem, three stages of `n` basic blocks, GAP, linear head."""

    def __init__(
        self,
        blocks_per_stage: int,
        *,
        num_classes: int = 10,
        in_chans: int = 3,
        width: float = 1.0,
        shortcut: str = "A",
        norm_layer: NormLayer | None = None,
    ) -> None:
        super().__init__()
        if shortcut not in SHORTCUTS:
            raise UnknownNameError("shortcut", shortcut, SHORTCUTS)
        self._norm_layer = norm_layer or nn.BatchNorm2d
        self._shortcut = shortcut
        widths = [scaled(c, width) for c in BASE_WIDTHS]
        self.in_planes = widths[0]
        self.conv1 = conv3x3(in_chans, widths[0])
        self.bn1 = self._norm_layer(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(BasicBlock, widths[0], blocks_per_stage, stride=1)
        self.layer2 = self._make_layer(BasicBlock, widths[1], blocks_per_stage, stride=2)
        self.layer3 = self._make_layer(BasicBlock, widths[2], blocks_per_stage, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[2], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # He et al. 2015 init, as He et al. 2016 use for these networks.
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, block: type[BasicBlock], planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = []
        for i in range(blocks):
            layers.append(
                block(self.in_planes, planes, stride if i == 0 else 1, self._shortcut, self._norm_layer)
            )
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


@register_family
class ResNetCifarFamily(Family):
    """ResNet-8/14/20/32/44/56/110 (CIFAR variant); `resnet8` (one block per stage) is the tiny variant."""

    name = "resnet_cifar"
    default_size = "resnet20"
    tiny_size = "resnet8"

    def sizes(self) -> list[str]:
        return list(BLOCKS_PER_STAGE)

    def build(
        self, size: str, *, num_classes: int, in_chans: int, image_size: int, width: float, **kwargs: Any
    ) -> nn.Module:
        # image_size is not needed: the network is fully convolutional up to global pooling.
        return CifarResNet(
            BLOCKS_PER_STAGE[size], num_classes=num_classes, in_chans=in_chans, width=width, **kwargs
        )

    def site_stages(
        self,
        model: nn.Module,
        names: Sequence[str],
        blocks: Sequence[int],
        out_sizes: Sequence[tuple[int, int]],
    ) -> list[int]:
        return layer_prefix_stages(names)
