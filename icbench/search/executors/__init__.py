"""Executors: who runs the trials the searcher hands out (`execution.backend`).

An executor is a function `(loaded, checked, study, target, echo) -> stop_reason | None` that drives an
`AskTellSearcher` over the Optuna study until it has `target` evaluated trials (or the searcher stops),
with the study's scheduler (`icbench.search.schedulers`). Both executors write the same storage and the
same trial record; only the trial attribute `executor` (and a replay's simulated times) tell them apart.

- `ray` (`ray_tune.py`): live trials, Ray Tune on this machine or a cluster.
- `replay` (`replay.py`): every result looked up in a benchmark table, on a simulated clock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from icbench.registry import Registry

Executor = Callable[..., Any]
EXECUTORS: Registry[Executor] = Registry("executor")

from icbench.search.executors import ray_tune, replay  # noqa: E402,F401 - registration


def execute(loaded: Any, checked: Any, study: Any, target: int, echo: Callable[[str], None]) -> str | None:
    """Hand the study's trials to its executor (`execution.backend`) until the target is reached; returns
    why the search stopped early, if it did."""
    return EXECUTORS.get(loaded.config.execution.backend)(loaded, checked, study, target, echo)
