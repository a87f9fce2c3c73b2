"""Multi-objective search: study files, Optuna storage, Ray Tune execution and resume (DESIGN.md §7).

Heavy dependencies (Ray, Optuna, torch) are imported when a study runs, not on `import icbench.search`.
"""

from icbench.search.schema import LoadedStudy, StudyConfig, load_study

__all__ = ["LoadedStudy", "StudyConfig", "dry_run", "load_study", "run_study"]


def __getattr__(name: str):  # noqa: ANN202 - lazy re-exports
    if name == "run_study":
        from icbench.search.runner import run_study

        return run_study
    if name == "dry_run":
        from icbench.search.preview import dry_run

        return dry_run
    raise AttributeError(name)
