"""`mobilenet_v2`: torchvision's MobileNetV2 (Sandler et al. 2018), with `in_chans` and small-image strides.

Built by torchvision's own constructor (`width_mult` = the width multiplier). The stem is rebuilt only
when `in_chans != 3` or for small images. Small images (`image_size <= 64` unless `small_input` is
given): the stem and the first stride-2 bottleneck sequence use stride 1 (the usual CIFAR adaptation),
so 32×32 inputs reach the last stage at 4×4 instead of 1×1.

Sites (depthwise and pointwise convolutions are all sites): `features.0.0` (stem, stage 0); for
bottleneck I, `features.I.conv.0.0` (1×1 expansion), `features.I.conv.1.0` (3×3 depthwise) and
`features.I.conv.2` (1×1 projection), or, where the expansion factor is 1 (the first bottleneck),
`features.I.conv.0.0` (depthwise) and `features.I.conv.1` (projection); and `features.N.0` (the last
1×1 convolution). Stage S (1-based) is the S-th bottleneck sequence (one row t, c, n, s of the paper's
Table 2): a new stage starts at a bottleneck with stride 2 or whose output width differs from the
previous one's; the last 1×1 convolution gets its own final stage. Blocks: the stem is block 0, each
bottleneck one block, the last convolution one block. Eligible by default: all but the stem.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from icbench.families._base import (
    SMALL_IMAGE_MAX,
    Family,
    kaiming_init_conv,
    register_family,
    resolution_stages,
)

#: Tiny test variant: one bottleneck per row, narrow widths (distinct, which keeps the stage rule exact).
_TINY_SETTING = [
    [1, 8, 1, 1],
    [6, 16, 1, 2],
    [6, 24, 1, 2],
    [6, 32, 1, 2],
    [6, 40, 1, 1],
    [6, 48, 1, 2],
    [6, 64, 1, 1],
]
#: torchvision's default rows (t, c, n, s), passed explicitly so the small-image stride can be changed.
_DEFAULT_SETTING = [
    [1, 16, 1, 1],
    [6, 24, 2, 2],
    [6, 32, 3, 2],
    [6, 64, 4, 2],
    [6, 96, 3, 1],
    [6, 160, 3, 2],
    [6, 320, 1, 1],
]
SIZES: dict[str, list[list[int]]] = {"mobilenet_v2": _DEFAULT_SETTING, "mobilenet_v2_tiny": _TINY_SETTING}


@register_family
class MobileNetV2Family(Family):
    """torchvision MobileNetV2; `mobilenet_v2_tiny` (one bottleneck per row) is the tiny variant."""

    name = "mobilenet_v2"
    default_size = "mobilenet_v2"
    tiny_size = "mobilenet_v2_tiny"

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
        if small_input is None:
            small_input = image_size <= SMALL_IMAGE_MAX
        setting = [list(row) for row in SIZES[size]]
        if small_input:
            # The first stride-2 bottleneck sequence keeps the resolution on small images.
            first_s2 = next(i for i, row in enumerate(setting) if row[3] == 2)
            setting[first_s2][3] = 1
        from torchvision.models import mobilenetv2 as tv_mnv2  # lazily: see resnet.resnet_class
        from torchvision.ops.misc import Conv2dNormActivation

        model = tv_mnv2.MobileNetV2(
            num_classes=num_classes, width_mult=width, inverted_residual_setting=setting, **kwargs
        )
        if in_chans != 3 or small_input:
            stem_conv = model.features[0][0]
            model.features[0] = Conv2dNormActivation(
                in_chans,
                stem_conv.out_channels,
                stride=1 if small_input else 2,
                norm_layer=nn.BatchNorm2d,
                activation_layer=nn.ReLU6,
            )
            kaiming_init_conv(model.features[0][0])
        return model

    def site_stages(
        self,
        model: nn.Module,
        names: Sequence[str],
        blocks: Sequence[int],
        out_sizes: Sequence[tuple[int, int]],
    ) -> list[int]:
        from torchvision.models import mobilenetv2 as tv_mnv2  # already imported: `model` was built

        features = getattr(model, "features", None)
        if not isinstance(features, nn.Sequential):
            return resolution_stages(blocks, out_sizes)
        stage_of: dict[str, int] = {}
        stage, prev_width = 0, None
        for i, module in enumerate(features):
            if isinstance(module, tv_mnv2.InvertedResidual):
                if module.stride != 1 or module.out_channels != prev_width:
                    stage += 1
                prev_width = module.out_channels
            elif i > 0:  # the last 1×1 convolution
                stage += 1
            stage_of[str(i)] = stage
        try:
            return [stage_of[name.split(".")[1]] for name in names]
        except (KeyError, IndexError):
            return resolution_stages(blocks, out_sizes)
