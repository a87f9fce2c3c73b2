"""CNN families (DESIGN.md §5): one file each, registered in `FAMILIES`.

Adding a family: one file here with a `Family` subclass decorated with `@register_family` (it also names
a tiny test variant), plus its import below and its name and sizes in `icbench/names.py` (checked before
torch loads; tests/test_cli.py keeps the two equal).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from icbench.errors import ConfigError
from icbench.families import mobilenet_v2, resnet, resnet_cifar, torchvision_models, user, vgg  # noqa: F401
from icbench.families._base import (
    FAMILIES,
    GENERIC,
    SMALL_IMAGE_MAX,
    Family,
    ModelSpec,
    read_state_dict,
    register_family,
)
from icbench.families._base import load_weights_file as _load_weights_file


def build_model(
    family: str,
    size: str | None = None,
    *,
    num_classes: int = 10,
    in_chans: int = 3,
    image_size: int = 32,
    width: float = 1.0,
    **kwargs: Any,
) -> nn.Module:
    """Build a randomly initialised (or locally loaded) model of `family` and `size`.

    The model carries `model.icbench_spec` (a `ModelSpec`), which `icbench.placement.sites` reads for
    the family's site rules and the input shape.

    Args:
        family: a key of `FAMILIES` (resnet_cifar, resnet, vgg, mobilenet_v2, torchvision, user).
        size: one of `family_sizes(family)` (for `torchvision` a model name, for `user` an import path
            `package.module:function`); None for the family's default size.
        num_classes: output classes.
        in_chans: input channels (1 for MNIST).
        image_size: input height and width; families adapt their stem/head to small images (<= 64).
        width: channel width multiplier (not offered by the `torchvision` family).
        **kwargs: passed to the family's builder (e.g. `small_input`, `shortcut="B"` for resnet_cifar);
            `weights_path` loads a local state dict (never anything from the internet).

    Returns:
        The model, in training mode.

    Raises:
        UnknownNameError: unknown family or size (the message lists the valid ones).
        ConfigError: bad arguments, or a `user` import path that fails to import or does not return
            an nn.Module.
        CheckpointError: `weights_path` is unreadable or does not match the model.
    """
    fam = FAMILIES.get(family)
    if size is None:
        size = fam.default_size
        if size is None:
            raise ConfigError(
                f"family {family!r} has no default size; give one (e.g. {fam.tiny_size!r})", field="size"
            )
    fam.check_size(size)
    for arg, value in (("num_classes", num_classes), ("in_chans", in_chans), ("image_size", image_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{arg} must be a positive integer, got {value!r}", field=arg)
    if not isinstance(width, (int, float)) or isinstance(width, bool) or width <= 0:
        raise ConfigError(f"width must be a positive number, got {width!r}", field="width")
    weights_path: str | Path | None = kwargs.pop("weights_path", None)
    try:
        model = fam.build(
            size,
            num_classes=num_classes,
            in_chans=in_chans,
            image_size=image_size,
            width=float(width),
            **kwargs,
        )
    except TypeError as exc:
        if "unexpected keyword argument" not in str(exc):
            raise
        raise ConfigError(f"family {family!r} size {size!r}: {exc}", field="kwargs") from exc
    if weights_path is not None:
        _load_weights_file(model, weights_path)
    model.icbench_spec = ModelSpec(family, size, num_classes, in_chans, image_size, float(width))
    return model


def family_sizes(family: str) -> list[str]:
    """The sizes `family` builds (for `user`, any import path; the list holds the example)."""
    return FAMILIES.get(family).sizes()


def tiny_size(family: str) -> str:
    """The family's tiny test variant (one block per stage, narrow widths)."""
    return FAMILIES.get(family).tiny_size


def get_family(family: str) -> Family:
    """The registered `Family` object (raises `UnknownNameError` listing the families)."""
    return FAMILIES.get(family)


__all__ = [
    "FAMILIES",
    "GENERIC",
    "SMALL_IMAGE_MAX",
    "Family",
    "ModelSpec",
    "build_model",
    "family_sizes",
    "get_family",
    "read_state_dict",
    "register_family",
    "tiny_size",
]
