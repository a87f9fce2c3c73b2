"""`user`: a model from an import path, `package.module:function` (`size` = the path).

The function is called with the keyword arguments it accepts among `num_classes`, `in_chans`,
`image_size` and `width` (all of them if it takes `**kwargs`), plus any extra keyword arguments given to
`build_model`, and must return an `nn.Module`. `example_cnn` below is such a function, and the tiny
variant: `build_model("user", "icbench.families.user:example_cnn")`.

Sites, blocks, stages and eligibility follow the shared rules of `icbench.families._base`.
"""

from __future__ import annotations

import importlib
import inspect
import re
from typing import Any

import torch
from torch import nn

from icbench.errors import ConfigError
from icbench.families._base import Family, register_family, scaled

_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def resolve_import_path(path: str) -> Any:
    """The object named by `package.module:attribute` (the attribute may be dotted).

    Raises:
        ConfigError: the path is malformed, the module fails to import, or the attribute is missing.
    """
    if not isinstance(path, str) or not _IMPORT_PATH.match(path):
        raise ConfigError(
            f"model import path {path!r} is not of the form 'package.module:function'", field="size"
        )
    module_name, _, attr_path = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # any error raised while importing user code
        raise ConfigError(
            f"cannot import module {module_name!r} of model {path!r}: {type(exc).__name__}: {exc}",
            field="size",
        ) from exc
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            raise ConfigError(
                f"module {module_name!r} has no attribute {attr_path!r} (model {path!r})", field="size"
            )
        obj = getattr(obj, part)
    return obj


@register_family
class UserFamily(Family):
    """Models from `package.module:function` import paths."""

    name = "user"
    default_size = None
    tiny_size = "icbench.families.user:example_cnn"

    def sizes(self) -> list[str]:
        # Any import path is a size; the example is the only one known in advance.
        return [self.tiny_size]

    def check_size(self, size: str) -> None:
        if not isinstance(size, str) or not _IMPORT_PATH.match(size):
            raise ConfigError(
                f"family 'user' takes an import path 'package.module:function' as its size, got {size!r} "
                f"(e.g. {self.tiny_size!r})",
                field="size",
            )

    def build(
        self, size: str, *, num_classes: int, in_chans: int, image_size: int, width: float, **kwargs: Any
    ) -> nn.Module:
        fn = resolve_import_path(size)
        if not callable(fn):
            raise ConfigError(
                f"{size!r} is a {type(fn).__name__}, not a function returning an nn.Module", field="size"
            )
        offered = {"num_classes": num_classes, "in_chans": in_chans, "image_size": image_size, "width": width}
        try:
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError):  # some builtins have no signature: offer nothing extra
            params = {}
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        call_kwargs = {k: v for k, v in offered.items() if takes_any or k in params}
        try:
            model = fn(**call_kwargs, **kwargs)
        except Exception as exc:  # the user's code: say which path failed, keep its traceback chained
            raise ConfigError(f"calling {size!r} failed: {type(exc).__name__}: {exc}", field="size") from exc
        if not isinstance(model, nn.Module):
            raise ConfigError(f"{size!r} returned a {type(model).__name__}, not an nn.Module", field="size")
        return model


class ExampleCNN(nn.Module):
    """A three-convolution network: the shape a user model takes (and the `user` family's tiny variant)."""

    def __init__(self, num_classes: int = 10, in_chans: int = 3, width: float = 1.0) -> None:
        super().__init__()
        c = scaled(16, width)
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, c, 3, padding=1, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(inplace=True),
            nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(2 * c),
            nn.ReLU(inplace=True),
            nn.Conv2d(2 * c, 2 * c, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * c),
            nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def example_cnn(num_classes: int = 10, in_chans: int = 3, width: float = 1.0) -> nn.Module:
    """Build `ExampleCNN` (an import-path target: `icbench.families.user:example_cnn`)."""
    return ExampleCNN(num_classes=num_classes, in_chans=in_chans, width=width)
