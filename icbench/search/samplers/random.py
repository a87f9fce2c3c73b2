"""Uniform random sampling: the baseline every other sampler is measured against."""

from __future__ import annotations

from typing import Any

from icbench.search.samplers import SAMPLERS


@SAMPLERS.register("random")
def random(loaded: Any, seed: int, **kwargs: Any) -> Any:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed, **kwargs)
