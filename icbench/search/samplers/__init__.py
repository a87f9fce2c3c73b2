"""Samplers: one file per sampler, registered by name with `@SAMPLERS.register`.

A sampler entry is a factory `(loaded_study, seed, **kwargs) -> optuna.samplers.BaseSampler`; the study
file's `sampler: {name, seed, kwargs}` picks it, always with an explicit seed (Optuna 5 changed its
defaults). Adding one is one file here with one decorator, plus its import line below.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from icbench.registry import Registry

SamplerFactory = Callable[..., Any]
SAMPLERS: Registry[SamplerFactory] = Registry("sampler")

from icbench.search.samplers import gp, grid, nsga2, random, tpe  # noqa: E402,F401 - registration
