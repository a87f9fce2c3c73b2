"""Multi-objective search: study files, Optuna storage, Ray Tune execution and resume (DESIGN.md §7).

Heavy dependencies (Ray, Optuna, torch) are imported when a study runs, not on `import icbench.search`:
`load_study`, `run_study` and `dry_run` are imported on first use (`load_study` checks names against the
sampler, scheduler and executor registries, which import their entries).
"""

from icbench.search.schema import LoadedStudy, StudyConfig

__all__ = ["LoadedStudy", "StudyConfig", "dry_run", "load_study", "run_study"]


def __getattr__(name: str):  # noqa: ANN202 - lazy re-exports
    if name == "load_study":
        from icbench.search.study import load_study

        return load_study
    if name == "run_study":
        from icbench.search.runner import run_study

        return run_study
    if name == "dry_run":
        from icbench.search.preview import dry_run

        return dry_run
    raise AttributeError(name)
