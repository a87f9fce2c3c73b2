"""Optuna's NSGA-II genetic algorithm."""

from __future__ import annotations

from typing import Any

from icbench.search.samplers import SAMPLERS


@SAMPLERS.register("nsga2")
def nsga2(loaded: Any, seed: int, **kwargs: Any) -> Any:
    import optuna

    return optuna.samplers.NSGAIISampler(seed=seed, **kwargs)
