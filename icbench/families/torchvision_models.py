"""`torchvision`: any torchvision classification model by name (`size` = the model name, e.g. `resnet18`).

Built with `torchvision.models.get_model(name, weights=None, num_classes=...)`: never downloads
weights (pretrained weights load only from a local file, see `build_model(weights_path=...)`). With
`in_chans != 3` the first convolution (in module order) is rebuilt for that many channels. These
models are torchvision's as they are: no small-image adaptation and no width multiplier.

Sites, blocks, stages and eligibility follow the shared rules of `icbench.families._base`.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from icbench.errors import ConfigError
from icbench.families._base import Family, kaiming_init_conv, register_family


def replace_first_conv_in_channels(model: nn.Module, in_chans: int) -> None:
    """Rebuild the first nn.Conv2d of `model` (module order) to take `in_chans` channels."""
    name, conv = next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), (None, None))
    if conv is None:
        raise ConfigError(
            "the model has no nn.Conv2d whose input channels could be changed", field="in_chans"
        )
    padding = conv.padding if isinstance(conv.padding, str) else tuple(conv.padding)
    new = nn.Conv2d(
        in_chans,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=padding,
        dilation=conv.dilation,
        groups=conv.groups if in_chans % conv.groups == 0 else 1,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    )
    kaiming_init_conv(new)
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name), child, new)


@register_family
class TorchvisionFamily(Family):
    """Any torchvision classification model; `mobilenet_v3_small` is the tiny variant."""

    name = "torchvision"
    default_size = "resnet18"
    tiny_size = "mobilenet_v3_small"

    def sizes(self) -> list[str]:
        import torchvision.models

        return sorted(torchvision.models.list_models(module=torchvision.models))

    def build(
        self, size: str, *, num_classes: int, in_chans: int, image_size: int, width: float, **kwargs: Any
    ) -> nn.Module:
        import torchvision.models

        if width != 1.0:
            raise ConfigError(
                "the torchvision family has no width multiplier (use resnet_cifar, resnet, vgg or "
                "mobilenet_v2 for one)",
                field="width",
            )
        model = torchvision.models.get_model(size, weights=None, num_classes=num_classes, **kwargs)
        if in_chans != 3:
            replace_first_conv_in_channels(model, in_chans)
        return model
