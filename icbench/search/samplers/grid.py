"""Every point of a finite space once (a factorial ablation), with the grid recovery of `runner.GridPoints`."""

from __future__ import annotations

from typing import Any

from icbench.search.samplers import SAMPLERS


@SAMPLERS.register("grid")
def grid(loaded: Any, seed: int, **kwargs: Any) -> Any:
    from icbench.search import space as sp
    from icbench.search.checks import mask_length
    from icbench.search.runner import GridPoints, _grid_sampler_class

    quiet_grid_sampler = _grid_sampler_class()
    return quiet_grid_sampler(
        sp.grid(loaded.space, mask_length(loaded)), GridPoints(loaded.space), seed=seed, **kwargs
    )
