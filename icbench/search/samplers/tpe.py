"""Optuna's tree-structured Parzen estimator (multi-objective: MOTPE)."""

from __future__ import annotations

from typing import Any

from icbench.search.samplers import SAMPLERS


@SAMPLERS.register("tpe")
def tpe(loaded: Any, seed: int, **kwargs: Any) -> Any:
    import optuna

    return optuna.samplers.TPESampler(seed=seed, **kwargs)
