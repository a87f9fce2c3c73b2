"""Optuna's Gaussian-process sampler (multi-objective through expected hypervolume improvement)."""

from __future__ import annotations

from typing import Any

from icbench.search.samplers import SAMPLERS


@SAMPLERS.register("gp")
def gp(loaded: Any, seed: int, **kwargs: Any) -> Any:
    import optuna

    return optuna.samplers.GPSampler(seed=seed, **kwargs)
