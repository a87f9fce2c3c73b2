"""The live executor: trials run as Ray Tune trials, locally or on a cluster.

It owns Ray's start-up (`init_ray`) and, for a study on a cluster, the connection the study commands hold
while they run (`cluster_connection`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from icbench.search import interrupts, resources, trainable
from icbench.search.executors import EXECUTORS
from icbench.search.executors.progress import Progress
from icbench.search.schedulers import make_scheduler
from icbench.search.schema import LoadedStudy
from icbench.search.tracking import Tracking
from icbench.search.trainable import FINAL_KEY, trial_evaluation


def _tune_searcher(core: Any) -> Any:
    """`core` (an `AskTellSearcher`) as a Ray Tune `Searcher`: every call is passed through.

    A full disk while a call writes the study (`icbench.places.disk_full`) is kept in `fault` instead of
    raised into Tune (which would print its own traceback): the searcher then asks for no more trials,
    and `execute` raises it once Tune has stopped, for the command line to say in one line.
    """
    from ray.tune.search import Searcher

    from icbench.places import disk_full

    class TuneSearcher(Searcher):
        def __init__(self) -> None:
            super().__init__(metric="val_acc", mode="max")
            self.core = core
            self.fault: BaseException | None = None

        def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
            if self.fault is not None:
                return None
            try:
                return fn(*args)
            except Exception as e:
                if disk_full(e) is None:
                    raise
                self.fault = e
                return None

        def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
            if self.fault is not None:
                return Searcher.FINISHED
            return self._call(self.core.suggest, trial_id)

        def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
            self._call(self.core.on_trial_result, trial_id, result)

        def on_trial_complete(
            self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
        ) -> None:
            self._call(self.core.on_trial_complete, trial_id, result, error)

        def __reduce__(self) -> tuple[Any, tuple[()]]:
            # Tune pickles its searcher into the experiment folder (tuner.pkl). Ours holds the Optuna
            # study, whose storage URL may carry a database password; a resume reads the study itself,
            # never that pickle (`icbench.search.checkpoints`), so nothing of it is written there.
            return (_NotKept, ())

    return TuneSearcher()


class _NotKept:
    """What Tune's experiment pickle holds in place of icbench's searcher (see `TuneSearcher.__reduce__`)."""


#: Ray Tune's loggers that report its own writes (experiment state, trial folders) with a traceback.
_RAY_WRITERS = ("ray.tune.execution.experiment_state", "ray.tune.execution.tune_controller")


class _DiskFullFilter(logging.Filter):
    """Drops Ray's tracebacks of writes that failed on a full disk: icbench stops and says so in one line
    (`TuneSearcher.fault`); a resume never reads Ray's experiment state, only the study."""

    def filter(self, record: logging.LogRecord) -> bool:
        from icbench.places import disk_full

        exc = record.exc_info[1] if record.exc_info else None
        return exc is None or disk_full(exc) is None


def _tune_scheduler(core: Any, watch: resources.PendingWatch | None = None) -> Any:
    """`core` (an `icbench.search.schedulers.Scheduler`) as a Ray Tune trial scheduler; with a `watch`,
    it also shows Tune's trials to it once per step of Tune's loop (a trial Ray cannot place is reported)."""
    from ray.tune.schedulers import FIFOScheduler, TrialScheduler

    class TuneScheduler(FIFOScheduler):
        def choose_trial_to_run(self, tune_controller: Any) -> Any:
            if watch is not None:  # called once per step of Tune's loop
                resources.watch_tune_trials(watch, tune_controller.get_trials())
            return super().choose_trial_to_run(tune_controller)

        def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
            core.on_start(trial.trial_id, (trial.config or {}).get("cost"))

        def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
            if result.get(FINAL_KEY):  # the trial's last word: it ends by itself
                return TrialScheduler.CONTINUE
            go_on = core.on_result(trial.trial_id, int(result.get("epoch", 0)), result)
            return TrialScheduler.CONTINUE if go_on else TrialScheduler.STOP

    return TuneScheduler()


@EXECUTORS.register("ray")
def execute_ray(
    loaded: Any, checked: Any, study: Any, target: int, echo: Callable[[str], None]
) -> str | None:
    """Run trials with Ray Tune until the target is reached; returns why the search stopped early, if it did."""
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    import ray
    from ray import tune

    from icbench.search.searcher import make_searcher  # imports torch (the trial's metric names)

    c = loaded.config
    ex = c.execution
    scheduler = make_scheduler(loaded)
    tracking = Tracking(loaded, warn=echo)
    if tracking.where:
        echo(f"per-epoch metrics of every trial: {'; '.join(tracking.where)}")
    progress = Progress(
        study, target, echo, tracking=tracking, epochs=c.budget.epochs, concurrency=ex.max_concurrent
    )
    searcher = make_searcher(loaded, checked, study, target, progress, scheduler)
    where = (
        f"on the Ray cluster at {ex.address}" if ex.address else "on a local Ray (starting it takes seconds)"
    )
    echo(
        f"running up to {ex.max_concurrent} trial(s) at once {where}, {c.budget.epochs} epoch(s) each; a line "
        "per finished trial follows"
    )
    started = init_ray(loaded)
    interrupts.install()  # take SIGTERM back from `ray.init`'s handler while the study command runs
    try:
        # Before the first trial: a request no node can meet would leave every trial PENDING forever.
        resources.check_connected(loaded)
        storage_path = ex.storage_path or str((Path(c.runs_dir) / c.name / "ray").resolve())
        tune_searcher = _tune_searcher(searcher)
        tuner = tune.Tuner(
            tune.with_resources(
                tune.with_parameters(trainable.run_trial, evaluation=trial_evaluation(loaded)),
                trial_resources(loaded),
            ),
            tune_config=tune.TuneConfig(
                search_alg=tune_searcher,
                scheduler=_tune_scheduler(scheduler, resources.PendingWatch(echo, free=resources.ray_free)),
                num_samples=-1,
                max_concurrent_trials=ex.max_concurrent,
                # One worker process serves many trials: no Python start-up, imports and dataset read per
                # trial (benchmarks/harness.py: overhead 12.7 -> 3.8 s per trial). Each trial sets its own
                # seed and thread count, so nothing a trial depends on carries over. Not for data-parallel
                # trials: a stopped trial's actor must die, so its Ray Train workers (owned by it) die too.
                reuse_actors=int(getattr(ex, "workers_per_trial", 1) or 1) == 1,
            ),
            run_config=tune.RunConfig(
                storage_path=storage_path,
                name=f"{c.name}-{time.strftime('%Y%m%d-%H%M%S')}",
                verbose=0,
                # A trial whose worker died (process killed, node lost) is restarted, on any node, and
                # resumes from its checkpoint (`trainable.run_trial`); the searcher hears of it only when
                # the restarts are spent.
                failure_config=tune.FailureConfig(max_failures=ex.trial_restarts),
                # The final report is the trial's last word: free its slot at once. Not for data-parallel
                # trials: stopping kills the trial's actor while Ray Train still shuts its worker group
                # down, and the group's placement group (workers x CPUs) then stays reserved (Ray Train's
                # cleaner needs the State API, which has no dashboard here): the next trial never starts.
                # Their function returns right after the final report anyway.
                stop={FINAL_KEY: True} if int(getattr(ex, "workers_per_trial", 1) or 1) == 1 else None,
            ),
        )
        quiet = _DiskFullFilter()
        for name in _RAY_WRITERS:
            logging.getLogger(name).addFilter(quiet)
        try:
            tuner.fit()
        finally:
            for name in _RAY_WRITERS:
                logging.getLogger(name).removeFilter(quiet)
        if tune_searcher.fault is not None:  # the disk filled: Tune has stopped, say it in one line
            raise tune_searcher.fault
    finally:
        progress.close()  # the live line cleared, the tracking files closed
        if started:
            ray.shutdown()
    return searcher.stop_reason


#: What a trial's first use of its worker imports (torch; `torch._dynamo`, which torch imports at the
#: first optimizer's construction, 1.1 s; Ray Tune; icbench's trial modules): local Ray workers import them
#: as Ray starts them (Ray's `preload_python_modules`), while the driver sets the study up
#: (`preload_modules`). Locally only: a cluster's nodes were started by `ray start` with their settings.
PRELOAD_CANDIDATES = (
    "torch",
    "torch._dynamo",
    "ray.tune",
    "icbench.training.candidate",
    "icbench.search.trainable",
)
#: Whether a local Ray's workers preload `PRELOAD_CANDIDATES` (when `preload_modules` finds it worth it):
#: off. Measured on 2 cores with Tune's actors in the pre-started workers: a study's first trials then wait
#: for the preloading instead of importing themselves, 1.53 against 1.66 s of overhead per trial in
#: benchmarks/results/harness.txt and 1.49 s either way in harness_run4.txt, while `ray.init` in a fresh
#: process takes ~0.55 s longer (the preloading workers share its two cores). The harness's `preload`
#: variant switches it on to measure again.
PRELOAD = False
#: Whether Ray Tune's trial actors may take a local Ray's pre-started workers (`share_prestarted_workers`).
SHARE_PRESTARTED = True
_TUNE_ENV_DEFAULTS: dict[str, str] = {}


def preload_modules(loaded: LoadedStudy, num_cpus: int) -> tuple[str, ...]:
    """The modules a local Ray's workers import as Ray starts them: `PRELOAD_CANDIDATES`, or none.

    Ray pre-starts one worker per CPU (`num_cpus`) and each preloading worker costs ~2.5 s of CPU and
    ~0.3 GB: preloading pays only when most of them will serve trials, so only when the CPUs are at most
    twice the trials that run at once (on a 64-CPU machine running 4 trials at once, 60 workers would
    import torch for nothing). Measured on 2 cores: benchmarks/results/harness.txt.
    """
    if not PRELOAD or not SHARE_PRESTARTED:  # without sharing, Tune's actors start in other workers
        return ()
    return PRELOAD_CANDIDATES if num_cpus <= 2 * max(1, loaded.config.execution.max_concurrent) else ()


def share_prestarted_workers(share: bool = True) -> bool:
    """Let Ray Tune's trial actors start in the workers a local Ray pre-starts (`share=False` undoes it).

    Ray Tune gives every trainable actor a `runtime_env` of environment variables
    (`ray.tune.execution.class_cache.DEFAULT_ENV_VARS`: `PL_DISABLE_FORK=1`, for PyTorch Lightning), and
    Ray starts an actor with a runtime_env of its own in a new worker process, never in a pre-started one:
    each trial slot's first trial waited for a new process (Python, Ray, imports) while Ray's pre-started
    workers idled. Locally the workers inherit the driver's environment, so the variables are set there
    instead and Tune's table emptied: its actors then ask for no environment of their own. (Tune still adds
    variables the driver has from its own list, such as AWS credentials; such a study gets new processes,
    as before.) Returns whether Tune's table was found (False: a Ray without it; nothing changed).
    """
    try:
        from ray.tune.execution import class_cache
    except ImportError:
        return False
    table = getattr(class_cache, "DEFAULT_ENV_VARS", None)
    if not isinstance(table, dict):
        return False
    if share:
        _TUNE_ENV_DEFAULTS.update(table)
        for k, v in table.items():
            os.environ.setdefault(k, v)
        table.clear()
    else:
        table.update(_TUNE_ENV_DEFAULTS)
    return True


def trial_resources(loaded: LoadedStudy) -> dict[str, float]:
    """What Ray Tune reserves for one trial: its CPUs and GPUs, or for a data-parallel trial
    (`execution.workers_per_trial` > 1) only a token of memory: its Ray Train workers reserve
    `workers_per_trial` x (`cpus_per_trial`, `gpus_per_trial`) themselves, and the Tune trial, which only
    waits for them, must not hold a share of those (2 workers of 1 CPU fit a 2-CPU machine)."""
    ex = loaded.config.execution
    if int(getattr(ex, "workers_per_trial", 1) or 1) > 1:
        return {"cpu": 0, "gpu": 0, "memory": 1 << 20}  # Ray needs some resource in a trial's bundle
    return {"cpu": ex.cpus_per_trial, "gpu": ex.gpus_per_trial}


def init_ray(loaded: LoadedStudy) -> bool:
    """Start a local Ray (or join the study's cluster) unless one is already up; True if this call started it."""
    import ray

    if ray.is_initialized():
        return False
    ex = loaded.config.execution
    # Trials import icbench and any user model module: give workers the driver's import path.
    paths = [str(Path.cwd())] + [p for p in sys.path if p and Path(p).is_dir()]
    pythonpath = os.pathsep.join(dict.fromkeys(paths))
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
    if ex.address:
        ray.init(address=ex.address, runtime_env={"env_vars": {"PYTHONPATH": pythonpath}}, **kwargs)
    else:
        # Locally the workers inherit the driver's environment; a runtime_env would stop Ray from using
        # its pre-started workers (0.94 s against 0.32 s per actor, benchmarks/harness.py).
        os.environ["PYTHONPATH"] = pythonpath
        num_cpus = int(ex.num_cpus or os.cpu_count() or 1)
        share_prestarted_workers(SHARE_PRESTARTED)
        preload = preload_modules(loaded, num_cpus)
        if preload:
            kwargs["_system_config"] = {"preload_python_modules": list(preload)}
        ray.init(num_cpus=num_cpus, num_gpus=ex.num_gpus, **kwargs)
    return True


@contextlib.contextmanager
def cluster_connection(loaded: LoadedStudy) -> Iterator[None]:
    """On a cluster (`execution.address`): connect, and refuse a study none of whose nodes can place one
    trial, before the driver lock and the storage are touched. Locally nothing happens here: the machine
    was checked by `check_environment`, and Ray starts only when the first trial is due."""
    if not loaded.config.execution.address:
        yield
        return
    import ray

    started = init_ray(loaded)
    try:
        resources.check_connected(loaded)
        yield
    finally:
        if started:
            ray.shutdown()
