"""icbench: architecture search and benchmarks for the Inter-layer Collision (IC) unit.

The Python API (`icbench.api`): `run_study`, `load_trials`, `build_candidate`, `read_table`, and the
types they return (`StudyRun`, `BenchTable`). They are imported on first use, so `import icbench` stays
light (no torch, no Ray); `dir(icbench)` lists them, so tab completion offers them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["BenchTable", "StudyRun", "build_candidate", "load_trials", "read_table", "run_study"]

if TYPE_CHECKING:
    from icbench.api import BenchTable, StudyRun, build_candidate, load_trials, read_table, run_study


def __getattr__(name: str) -> Any:
    if name in __all__:
        from icbench import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names (the lazy API included), for `dir()` and tab completion."""
    return sorted({*__all__, "__version__"})
