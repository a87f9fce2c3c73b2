"""Samplers: one file per sampler, registered by name with `@SAMPLERS.register`.

A sampler entry is a factory `(loaded_study, seed, **kwargs) -> optuna.samplers.BaseSampler`; the study
file's `sampler: {name, seed, kwargs}` picks it, always with an explicit seed (Optuna 5 changed its
defaults). Adding one is one file here with one decorator, plus its import line below.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from icbench.errors import ConfigError
from icbench.registry import Registry
from icbench.search.schema import LoadedStudy, SamplerSection

SamplerFactory = Callable[..., Any]
SAMPLERS: Registry[SamplerFactory] = Registry("sampler")

from icbench.search.samplers import gp, grid, nsga2, random, tpe  # noqa: E402,F401 - registration


def make_sampler(cfg: SamplerSection, seed: int, loaded: LoadedStudy) -> Any:
    """The sampler named in the study (`icbench.search.samplers`), always with an explicit seed, and
    unless `sampler.informed` is off, wrapped so it learns from pruned and rejected trials
    (`samplers/informed.py`)."""
    try:
        sampler = SAMPLERS.get(cfg.name)(loaded, seed, **cfg.kwargs)
    except TypeError as e:
        raise ConfigError(
            f"invalid sampler arguments: {e}", source=str(loaded.study_path), field="sampler.kwargs"
        ) from None
    if not cfg.informed or cfg.name == "grid":
        return sampler
    from icbench.search.samplers.informed import InformedSampler  # imports Optuna

    c = loaded.config
    objectives = [(o.name, o.resolved_direction) for o in c.objectives]
    return InformedSampler(sampler, objectives, c.constraints.max_macs)
