"""Every point of a finite space once (a factorial ablation), with the grid's own bookkeeping: the
distinct points of a space (`GridPoints`), and a grid sampler that counts a point only once a trial
settled it, so the points of interrupted trials are run again on a resume."""

from __future__ import annotations

import itertools
import json
from typing import Any

from icbench.search import space as sp
from icbench.search.samplers import SAMPLERS
from icbench.search.schema import SearchSpace
from icbench.search.trials import UNSETTLED


@SAMPLERS.register("grid")
def grid(loaded: Any, seed: int, **kwargs: Any) -> Any:
    quiet_grid_sampler = grid_sampler_class()
    return quiet_grid_sampler(
        sp.grid(loaded.space, sp.mask_length(loaded)), GridPoints(loaded.space), seed=seed, **kwargs
    )


class GridPoints:
    """The distinct parameter sets of a grid study, computed from the search space alone.

    Optuna's grid enumerates every parameter, but a trial suggests only its active ones (`when`), so two
    grid points that differ only in an inactive parameter are one parameter set. A point is keyed by its
    active parameters, which is what a trial's `params` hold.
    """

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        grid = sp.grid(space, None)
        self.keys = frozenset(
            self.key(dict(zip(grid, combo, strict=True))) for combo in itertools.product(*grid.values())
        )

    def active(self, values: dict[str, Any]) -> dict[str, Any]:
        """`values` restricted to the parameters a trial with these values suggests."""
        out: dict[str, Any] = {}
        for name, p in self.space.params.items():
            if name in values and sp.is_active(p, out):
                out[name] = values[name]
        return out

    def key(self, values: dict[str, Any]) -> str:
        return json.dumps(self.active(values), sort_keys=True, default=str)

    def is_whole(self, params: dict[str, Any]) -> bool:
        """Whether `params` set every parameter that is active for them (a trial killed while its
        parameters were being sampled holds only some)."""
        seen: dict[str, Any] = {}
        for name, p in self.space.params.items():
            if sp.is_active(p, seen):
                if name not in params:
                    return False
                seen[name] = params[name]
        return set(params) == set(seen)

    def settled(self, study: Any) -> set[str]:
        """Points with a trial that counts for them: COMPLETE, PRUNED, running in this driver, or a FAIL
        that is never retried (failed, diverged, crashed, rejected)."""
        from optuna.trial import TrialState

        out = set()
        for t in study.get_trials(deepcopy=False):
            if t.state == TrialState.WAITING:
                continue
            if t.state == TrialState.FAIL and t.user_attrs.get("status") in UNSETTLED:
                continue
            if self.is_whole(t.params):
                out.add(self.key(t.params))
        return out


def grid_sampler_class() -> type:
    """`QuietGridSampler` (a class built on first use: Optuna is imported only by a study that runs)."""
    import optuna

    class QuietGridSampler(optuna.samplers.GridSampler):
        """GridSampler without its `study.stop()` once the grid is covered (that call is only allowed inside
        `study.optimize`, and with ask/tell the searcher decides when the study is done), and whose
        `exhausted` counts a point only once a trial has settled it.

        Optuna counts any finished trial, FAIL included, as a visited point: a point whose trial a crash
        interrupted is never asked again. `mark_interrupted` queues such points again (`enqueue_trial`),
        and `exhausted` does not count them until one of their trials settles them.
        """

        def __init__(self, search_space: dict[str, list[Any]], points: GridPoints, **kwargs: Any) -> None:
            super().__init__(search_space, **kwargs)
            self.points = points

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            return None

        def exhausted(self, study: Any) -> bool:
            """Every distinct point of the grid has a trial that settled it (`GridPoints.settled`)."""
            return self.points.keys <= self.points.settled(study)

    return QuietGridSampler
