"""The names every registry holds, declared without importing what they register.

A study file is checked against these before torch or Ray is imported, so a typo in a family, dataset,
unit, strategy, size, sampler, scheduler or executor name is refused in well under a second
(`icbench validate`). The registries themselves (`icbench.units.UNITS`, `icbench.families.FAMILIES`, ...)
stay the source of truth: tests/test_cli.py checks that this table equals them, so it cannot drift.
Adding a registered name therefore means one line here as well.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterable

#: Registered names by registry kind (the `Registry.name` of each registry).
NAMES: dict[str, tuple[str, ...]] = {
    "dataset": ("cifar10", "cifar100", "digits", "imagefolder", "mnist5k", "synthetic"),
    "family": ("mobilenet_v2", "resnet", "resnet_cifar", "torchvision", "user", "vgg"),
    "unit": ("conv", "ic", "ic_dual", "se"),
    "strategy": ("none", "all", "stages", "first_k", "last_k", "every_other", "kernel", "random", "mask"),
    "sampler": ("gp", "grid", "nsga2", "random", "tpe"),
    "scheduler": ("asha", "fifo", "mo_asha"),
    "executor": ("ray", "replay"),
    "estimator": (
        "final", "grad_norm", "jacob_cov", "macs", "nwot", "params", "random", "snip", "sotl", "supernet",
        "synflow", "unit_sites", "val_acc_e1", "val_acc_e2",
    ),
}  # fmt: skip

#: Each family's sizes; None where the family takes open-ended sizes (checked when the family is loaded:
#: `torchvision` takes any torchvision model name, `user` an import path `package.module:function`).
FAMILY_SIZES: dict[str, tuple[str, ...] | None] = {
    "mobilenet_v2": ("mobilenet_v2", "mobilenet_v2_tiny"),
    "resnet": ("resnet18", "resnet34", "resnet50", "resnet101", "resnet_tiny"),
    "resnet_cifar": ("resnet8", "resnet14", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110"),
    "torchvision": None,
    "user": None,
    "vgg": ("vgg11", "vgg13", "vgg16", "vgg_tiny"),
}



def closest(name: object, known: Iterable[str]) -> str | None:
    """The known name a mistyped `name` most likely meant, or None when none is close.

    `difflib`'s ratio, with ties broken by the longest common prefix and then by the nearest number in
    the name: `resnet21` means `resnet20` (same prefix `resnet2`), not `resnet32`, which scores the same.
    """
    text = str(name)
    known = list(known)
    candidates = difflib.get_close_matches(text, known, n=len(known) or 1, cutoff=0.6)
    if not candidates:
        return None
    ratio = {k: difflib.SequenceMatcher(None, text, k).ratio() for k in candidates}

    def prefix(k: str) -> int:
        n = 0
        for a, b in zip(text, k, strict=False):
            if a != b:
                break
            n += 1
        return n

    def number_gap(k: str) -> float:
        a, b = re.findall(r"\d+", text), re.findall(r"\d+", k)
        return abs(int(a[-1]) - int(b[-1])) if a and b else float("inf")

    return min(candidates, key=lambda k: (-round(ratio[k], 6), -prefix(k), number_gap(k), k))


def unknown_message(kind: str, name: object, known: Collection[str]) -> str:
    """`unknown <kind> <name>; known <kind>s: ... (did you mean ...?)`, the one line every registry says."""
    plural = kind[:-1] + "ies" if kind.endswith("y") else kind + "s"
    msg = f"unknown {kind} {name!r}; known {plural}: {', '.join(sorted(known)) or '(none)'}"
    close = closest(name, known)
    return msg + (f" (did you mean {close!r}?)" if close else "")
