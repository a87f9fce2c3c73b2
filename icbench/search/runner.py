"""Run a study end to end: validate, open or resume the Optuna study, execute its trials, report.

This module is the orchestrator only; each step is done by the module that owns it:

- `study.py`: load the study file (every registered name checked); create the Optuna study, or open it for
  a resume after checking its experiment fingerprint (`fingerprint.py`); write the report.
- `checks.py`: everything checked before any compute, and the environment.
- `storage.py`: where the study lives; `lock.py`: one driver per study.
- `trials.py`: counts by state; trials left RUNNING by a crash are marked FAIL `interrupted`.
- `samplers/grid.py`: in a grid study the points of interrupted trials are queued again, so every point is
  still evaluated.
- `executors/`: who runs the trials (Ray Tune, started by `executors/ray_tune.py`, or a table replay).
- `seeding.py`: `seed_with`, a cheap estimator's top candidates enqueued before the search.
- `evaluation.py`: the test split for the chosen trials, after the search.

Running the same study file again resumes it: COMPLETE and PRUNED trials count toward `n_trials`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from icbench.redact import mask_url
from icbench.search.checkpoints import checkpoint_root
from icbench.search.checks import check_run, check_study
from icbench.search.evaluation import evaluate_chosen
from icbench.search.executors import execute
from icbench.search.executors.ray_tune import cluster_connection
from icbench.search.interrupts import handled
from icbench.search.lock import study_lock
from icbench.search.records import StudyRun
from icbench.search.samplers.grid import GridPoints
from icbench.search.seeding import seed_study
from icbench.search.space import target_trials
from icbench.search.storage import make_storage, storage_url
from icbench.search.study import load_study, open_study, write_report
from icbench.search.trials import counts, mark_interrupted

#: `run_study`, and the names scripts and benchmarks have imported from here (they live in the modules above).
__all__ = ["StudyRun", "open_study", "run_study", "storage_url", "target_trials"]

#: Set (to anything non-empty): the run stops where training would start, after every check and after
#: opening the study. The dry-run agreement test (tests/search/test_dry_run_agreement.py) uses it.
STOP_BEFORE_TRAINING_ENV = "ICBENCH_STOP_BEFORE_TRAINING"


def run_study(
    path: str | Path,
    *,
    report: bool = True,
    overrides: dict[str, Any] | None = None,
    echo: Callable[[str], None] = print,
) -> StudyRun:
    """Run (or resume) the study in `path` until it has its target number of evaluated trials.

    Raises:
        ConfigError: for any invalid input, before Ray starts and before anything is written to storage.
    """
    t0 = time.perf_counter()
    loaded = load_study(path, overrides)
    checked = check_study(loaded)
    check_run(loaded)  # data files, storage, resume fingerprint, resources: what the dry run checks
    c = loaded.config
    url = storage_url(loaded)
    run = StudyRun(name=c.name, storage_url=url)

    # SIGINT/SIGTERM raise `Interrupted` (the CLI exits 130/143): never "done", no report as if finished.
    with handled(), cluster_connection(loaded), study_lock(loaded, url):
        storage = make_storage(url)
        study = open_study(loaded, url, storage=storage, echo=echo)
        grid = GridPoints(loaded.space) if c.sampler.name == "grid" else None
        root = checkpoint_root(loaded)
        n_stale, n_queued = mark_interrupted(study, storage, grid=grid, checkpoints=root, requeue_enqueued=True)
        n_continued = counts(study)["running"]
        if n_continued:
            echo(
                f"resume: {n_continued} trial(s) left running by an earlier driver continue from their "
                "checkpoints (the same trials)"
            )
        if n_stale:
            queued = f"; {n_queued} enqueued or grid point(s) queued again" if n_queued else ""
            echo(
                f"resume: {n_stale} trial(s) left running by an earlier driver marked FAIL (interrupted)"
                f"{queued}"
            )
        if os.environ.get(STOP_BEFORE_TRAINING_ENV):
            echo(f"stopped before training ({STOP_BEFORE_TRAINING_ENV} is set): every check passed")
            return run
        seed_study(loaded, checked, study, echo)  # `seed_with`: once, before the first trial
        target = target_trials(loaded)
        before = counts(study)
        remaining = target - before["complete"] - before["pruned"]
        echo(
            f"study {c.name!r}: {before['complete']} complete, {before['pruned']} pruned, {before['failed']} failed, "
            f"{before['rejected']} rejected, {before['duplicate']} duplicate so far; target {target} evaluated trials; storage {mask_url(url)}"
        )
        if remaining > 0:
            run.stop_reason = execute(loaded, checked, study, target, echo)
        else:
            echo("nothing to run: the study already has its target number of trials")
        after = counts(study)
        run.n_complete, run.n_pruned = after["complete"], after["pruned"]
        run.n_failed, run.n_rejected = after["failed"], after["rejected"]
        run.n_duplicate = after["duplicate"]
        if run.stop_reason:
            echo(f"study stopped early: {run.stop_reason}")
        # After the search (or a resume with nothing left to run): the test split, for the chosen trials.
        evaluate_chosen(loaded, url, study, echo)
        if report:
            run.report_dir = write_report(loaded, url, echo)
    run.wall_time_s = time.perf_counter() - t0
    echo(f"done in {run.wall_time_s:.1f} s")
    return run
