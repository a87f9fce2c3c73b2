"""Run a study end to end: validate, open or resume the Optuna study, execute trials with Ray Tune, report.

Running the same study file again resumes it: COMPLETE and PRUNED trials count toward `n_trials`, trials
left RUNNING by a crash are marked FAIL, the sampler is reseeded (seed + number of trials so far) so it
does not replay the same parameters, and a study whose experiment fingerprint changed (any setting that
changes what a trial measures, `fingerprint.py`) is refused before anything is written. In a grid study the
points of interrupted trials are queued again, so every point is still evaluated.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from icbench.errors import ConfigError, IcbenchError
from icbench.search import fingerprint as fpr
from icbench.search import space as sp
from icbench.search.checks import check_data_present, check_environment, check_study, mask_length
from icbench.search.schema import LoadedStudy, SamplerSection, SearchSpace, load_study
from icbench.search.storage import default_storage_url, make_storage, retry_locked

VERSIONED = ("icbench", "torch", "torchvision", "optuna", "ray", "ptflops", "pandas", "numpy")


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


@dataclass
class StudyRun:
    """What a run did: counts over the whole study, and why it stopped early (if it did)."""

    name: str
    storage_url: str
    n_complete: int = 0
    n_pruned: int = 0
    n_failed: int = 0
    n_rejected: int = 0
    stop_reason: str | None = None
    report_dir: Path | None = None
    wall_time_s: float = 0.0
    messages: list[str] = field(default_factory=list)


def storage_url(loaded: LoadedStudy) -> str:
    c = loaded.config
    if c.storage:
        return c.storage
    return default_storage_url(c.runs_dir, c.name)


def target_trials(loaded: LoadedStudy) -> int:
    c = loaded.config
    if c.n_trials is not None:
        return c.n_trials
    if c.sampler.name == "grid":
        return sp.grid_size(loaded.space, mask_length(loaded))
    return 10


#: FAIL statuses that do not settle a grid point: the trial never finished (`interrupted`), or it was
#: only a repeat of a point another trial holds (`duplicate`).
UNSETTLED = ("interrupted", "duplicate")


def settled_keys(study: Any, key_of: Callable[[Any], Any]) -> tuple[set[Any], set[Any]]:
    """(settled, waiting) keys of a study whose trials each run one queued point (`key_of(trial)`, None
    for a trial that runs none): settled by a COMPLETE or PRUNED trial or a FAIL that is not `UNSETTLED`
    (a diverged point is an outcome and not retrained); waiting when a WAITING trial already queues it."""
    from optuna.trial import TrialState

    settled: set[Any] = set()
    waiting: set[Any] = set()
    for t in study.get_trials(deepcopy=False):
        key = key_of(t)
        if key is None:
            continue
        if t.state == TrialState.WAITING:
            waiting.add(key)
        elif t.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
            t.state == TrialState.FAIL and t.user_attrs.get("status") not in UNSETTLED
        ):
            settled.add(key)
    return settled, waiting


def queue_missing(
    study: Any, points: list[tuple[Any, dict[str, Any], dict[str, Any]]], key_of: Callable[[Any], Any]
) -> tuple[int, int]:
    """Enqueue every (key, params, user_attrs) point without a settling trial (`settled_keys`), unless a
    WAITING trial already queues it; returns (points to run now, points already settled)."""
    settled, waiting = settled_keys(study, key_of)
    todo = 0
    for key, params, attrs in points:
        if key in settled:
            continue
        todo += 1
        if key not in waiting:
            study.enqueue_trial(params, user_attrs=attrs)
    return todo, len(settled & {key for key, _, _ in points})


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


def _grid_sampler_class() -> type:
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


def make_sampler(cfg: SamplerSection, seed: int, loaded: LoadedStudy) -> Any:
    """The sampler named in the study (`icbench.search.samplers`), always with an explicit seed, and
    unless `sampler.informed` is off, wrapped so it learns from pruned and rejected trials
    (`samplers/informed.py`)."""
    from icbench.search.samplers import SAMPLERS

    try:
        sampler = SAMPLERS.get(cfg.name)(loaded, seed, **cfg.kwargs)
    except TypeError as e:
        raise ConfigError(
            f"invalid sampler arguments: {e}", source=str(loaded.study_path), field="sampler.kwargs"
        ) from None
    if not cfg.informed or cfg.name == "grid":
        return sampler
    from icbench.search.samplers.informed import InformedSampler

    c = loaded.config
    objectives = [(o.name, o.resolved_direction) for o in c.objectives]
    return InformedSampler(sampler, objectives, c.constraints.max_macs)


def open_study(
    loaded: LoadedStudy,
    url: str,
    *,
    reseed_from_count: bool = True,
    storage: Any = None,
    echo: Callable[[str], None] | None = None,
) -> Any:
    """Create the study, or load it for a resume after checking that its experiment fingerprint is unchanged.

    Nothing is written to an existing study before that check. A study created before experiment
    fingerprints existed has only its search space and objectives checked; its fingerprint is then
    recorded, with the trial number from which it holds (`fingerprint_from_trial`).

    Args:
        storage: the Optuna storage for `url`, when the caller already opened it.
        echo: where to say that a study without a fingerprint was given one.

    Raises:
        ConfigError: when a fingerprinted setting changed since the study was created.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = storage if storage is not None else make_storage(url)
    name = loaded.config.name
    fp = fpr.experiment_fingerprint(loaded)
    directions = [o.resolved_direction for o in loaded.config.objectives]
    existing = retry_locked(lambda: optuna.get_all_study_names(storage))
    if name in existing:
        study = retry_locked(lambda: optuna.load_study(study_name=name, storage=storage))
        stored = study.user_attrs.get(fpr.FINGERPRINT_ATTR)
        legacy = stored is None
        if legacy:  # created before experiment fingerprints: check what it recorded
            recorded = fpr.from_legacy(study.user_attrs.get(fpr.LEGACY_ATTR) or {})
            stored, current = recorded, {k: fp[k] for k in recorded}
        else:
            current = fp
        fpr.check_unchanged(stored, current, study=name, url=url, source=str(loaded.study_path))
        n_before = len(study.get_trials(deepcopy=False))
        if legacy:
            _set_fingerprint(study, fp, from_trial=n_before)
            if echo is not None:
                echo(
                    f"resume: study {name!r} was created without an experiment fingerprint; the current "
                    f"settings are recorded as its fingerprint from trial {n_before} on (the settings of the "
                    "trials before cannot be checked)"
                )
        if study.metric_names is None:  # created before objectives were named in storage
            _name_metrics(study, loaded)
        seed = loaded.config.sampler.seed + (n_before if reseed_from_count else 0)
        study.sampler = make_sampler(loaded.config.sampler, seed, loaded)
        return study
    sampler = make_sampler(loaded.config.sampler, loaded.config.sampler.seed, loaded)
    study = optuna.create_study(study_name=name, storage=storage, directions=directions, sampler=sampler)
    _set_fingerprint(study, fp, from_trial=0)  # first: a study without one would be resumed unchecked
    _name_metrics(study, loaded)
    attrs = {
        "objectives": [{"name": o.name, "direction": o.resolved_direction} for o in loaded.config.objectives],
        "study_file": str(loaded.study_path),
        "study_yaml": loaded.study_text,
        "space_file": str(loaded.space_path),
        "space_yaml": loaded.space_text,
        "seed": loaded.config.sampler.seed,
        "sampler": loaded.config.sampler.name,
        "versions": package_versions(),
        "device": _device_name(loaded),
        "max_macs": loaded.config.constraints.max_macs,
        "n_trials": target_trials(loaded),
        "platform": f"{platform.platform()}, {os.cpu_count()} CPUs",
    }
    for k, v in attrs.items():
        study.set_user_attr(k, v)
    for point in loaded.config.enqueue:
        study.enqueue_trial(point, skip_if_exists=True)
    return study


def _name_metrics(study: Any, loaded: LoadedStudy) -> None:
    """Name the objectives in storage, so optuna-dashboard and `trials_dataframe()` show `val_acc` and
    `macs` instead of `values_0` and `values_1`."""
    import warnings

    with warnings.catch_warnings():  # experimental in some Optuna releases
        warnings.simplefilter("ignore")
        study.set_metric_names([o.name for o in loaded.config.objectives])


def _set_fingerprint(study: Any, fp: dict[str, Any], *, from_trial: int) -> None:
    study.set_user_attr(fpr.FINGERPRINT_ATTR, fp)
    study.set_user_attr(fpr.HASH_ATTR, fpr.fingerprint_hash(fp))
    study.set_user_attr(fpr.FROM_TRIAL_ATTR, from_trial)


def _device_name(loaded: LoadedStudy) -> str:
    import torch

    ex = loaded.config.execution
    if ex.device != "cpu" and (ex.gpus_per_trial > 0 or ex.device == "cuda") and torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return f"cpu ({platform.processor() or platform.machine()})"


def mark_interrupted(study: Any, storage: Any, *, grid: GridPoints | None = None) -> tuple[int, int]:
    """Trials left RUNNING by a driver that died are FAIL `interrupted` with a reason; returns how many
    were marked and how many grid points were queued again.

    In a grid study (`grid` given) each interrupted point is first queued again (`enqueue_trial`, with
    `retry_of` naming the interrupted trial), since Optuna's grid sampler never asks a finished point
    again. Queuing before marking, and never twice for one trial, keeps a kill in between harmless.

    Args:
        storage: the study's Optuna storage (the one it was opened with): attributes of a trial that
            this process did not ask are written through the storage's public API.
    """
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    stale = [t for t in trials if t.state == TrialState.RUNNING]
    retried = {t.user_attrs.get("retry_of") for t in trials}
    study_id = storage.get_study_id_from_name(study.study_name)
    queued = 0
    for t in stale:
        if grid is not None and t.number not in retried and t.params and grid.is_whole(t.params):
            study.enqueue_trial(dict(t.params), user_attrs={"retry_of": t.number})
            queued += 1
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        storage.set_trial_user_attr(trial_id, "status", "interrupted")
        storage.set_trial_user_attr(
            trial_id, "reason", "interrupted: the driver stopped before this trial finished"
        )
        study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
    return len(stale), queued


def counts(study: Any) -> dict[str, int]:
    from optuna.trial import TrialState

    out = {"complete": 0, "pruned": 0, "failed": 0, "rejected": 0, "running": 0, "waiting": 0}
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.WAITING:  # enqueued, not yet asked
            out["waiting"] += 1
        elif t.state == TrialState.COMPLETE:
            out["complete"] += 1
        elif t.state == TrialState.PRUNED:
            out["pruned"] += 1
        elif t.state == TrialState.RUNNING:
            out["running"] += 1
        elif t.user_attrs.get("status") in ("rejected", "duplicate"):
            out["rejected"] += 1
        else:
            out["failed"] += 1
    return out


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
    check_data_present(loaded)
    check_environment(loaded)  # storage driver; per-trial resources against this machine
    c = loaded.config
    url = storage_url(loaded)
    run = StudyRun(name=c.name, storage_url=url)

    with _cluster_connection(loaded), _driver_lock(loaded, url):
        storage = make_storage(url)
        study = open_study(loaded, url, storage=storage, echo=echo)
        grid = GridPoints(loaded.space) if c.sampler.name == "grid" else None
        n_stale, n_queued = mark_interrupted(study, storage, grid=grid)
        if n_stale:
            queued = f"; {n_queued} grid point(s) queued again" if grid is not None else ""
            echo(
                f"resume: {n_stale} trial(s) left running by an earlier driver marked FAIL (interrupted)"
                f"{queued}"
            )
        target = target_trials(loaded)
        before = counts(study)
        remaining = target - before["complete"] - before["pruned"]
        echo(
            f"study {c.name!r}: {before['complete']} complete, {before['pruned']} pruned, {before['failed']} failed, "
            f"{before['rejected']} rejected so far; target {target} evaluated trials; storage {url}"
        )
        if remaining > 0:
            run.stop_reason = _execute(loaded, checked, study, target, echo)
        else:
            echo("nothing to run: the study already has its target number of trials")
        after = counts(study)
        run.n_complete, run.n_pruned = after["complete"], after["pruned"]
        run.n_failed, run.n_rejected = after["failed"], after["rejected"]
        if run.stop_reason:
            echo(f"study stopped early: {run.stop_reason}")
        # After the search (or a resume with nothing left to run): the test split, for the chosen trials.
        from icbench.search.evaluation import evaluate_chosen

        evaluate_chosen(loaded, url, study, echo)
        if report:
            run.report_dir = _report(loaded, url, echo)
    run.wall_time_s = time.perf_counter() - t0
    echo(f"done in {run.wall_time_s:.1f} s")
    return run


@contextlib.contextmanager
def _cluster_connection(loaded: LoadedStudy) -> Iterator[None]:
    """On a cluster (`execution.address`): connect, and refuse a study none of whose nodes can place one
    trial, before the driver lock and the storage are touched. Locally nothing happens here: the machine
    was checked by `check_environment`, and Ray starts only when the first trial is due."""
    if not loaded.config.execution.address:
        yield
        return
    import ray

    from icbench.search import resources

    started = _init_ray(loaded)
    try:
        resources.check_connected(loaded)
        yield
    finally:
        if started:
            ray.shutdown()


@contextlib.contextmanager
def _driver_lock(loaded: LoadedStudy, url: str) -> Iterator[None]:
    """One driver per study: a second concurrent run is refused, through the database server when the
    study lives on one (drivers on other machines included), else through a file in the run folder."""
    from icbench.search.lock import driver_lock

    with driver_lock(url, loaded.config.name, Path(loaded.config.runs_dir) / loaded.config.name):
        yield


def _report(loaded: LoadedStudy, url: str, echo: Callable[[str], None]) -> Path | None:
    from icbench.report import build_report

    out = Path(loaded.config.reports_dir) / loaded.config.name
    try:
        build_report(url, loaded.config.name, out, study_file=str(loaded.study_path))
    except IcbenchError as e:
        echo(f"report: {e}")
        return None
    echo(f"report written to {out}/ (summary.md, pareto.md, pareto.png, ...)")
    return out


def _execute(
    loaded: LoadedStudy, checked: Any, study: Any, target: int, echo: Callable[[str], None]
) -> str | None:
    """Hand the study's trials to its executor (`execution.backend`) until the target is reached; returns
    why the search stopped early, if it did."""
    from icbench.search.executors import EXECUTORS

    return EXECUTORS.get(loaded.config.execution.backend)(loaded, checked, study, target, echo)


def _init_ray(loaded: LoadedStudy) -> bool:
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
        ray.init(num_cpus=ex.num_cpus or os.cpu_count(), num_gpus=ex.num_gpus, **kwargs)
    return True


class Progress:
    """One line per finished trial: its outcome, and the study's counts and best front so far."""

    def __init__(self, study: Any, target: int, echo: Callable[[str], None], every: int = 1) -> None:
        """`every`: one line per this many finished trials (a replay finishes hundreds a second)."""
        self.study = study
        self.target = target
        self.echo = echo
        self.every = every
        self.n_events = 0
        self.t0 = time.perf_counter()

    def __call__(self, status: str, trial: Any) -> None:
        self.n_events += 1
        if self.n_events % self.every:
            return
        n = counts(self.study)
        a = trial.user_attrs
        if status == "complete":
            what = f"val_acc {a.get('val_acc', float('nan')):.4f}, {a.get('macs', 0) / 1e6:.2f} MMac, {a.get('placement', '')}"
        else:
            what = a.get("reason", "")
        front = self._front()
        self.echo(
            f"[{time.perf_counter() - self.t0:6.0f} s] trial {trial.number:3d} {status.upper():9s} {what}\n"
            f"           done {n['complete'] + n['pruned']}/{self.target} (complete {n['complete']}, pruned "
            f"{n['pruned']}), running {n['running']}, failed {n['failed']}, rejected {n['rejected']}{front}"
        )

    def _front(self) -> str:
        try:
            best = self.study.best_trials
        except Exception:
            return ""
        pts = sorted((t.user_attrs.get("macs", 0), t.user_attrs.get("val_acc", 0)) for t in best)[:5]
        return ("; front: " + ", ".join(f"{acc:.3f}@{m / 1e6:.1f}M" for m, acc in pts)) if pts else ""
