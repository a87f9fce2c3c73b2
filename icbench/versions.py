"""The versions of Python and the packages a study records when it is created (`versions`) and each
proposal is stamped with: what a result was measured with."""

from __future__ import annotations

import platform
from importlib import metadata

VERSIONED = ("icbench", "torch", "torchvision", "optuna", "ray", "ptflops", "pandas", "numpy")


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out
