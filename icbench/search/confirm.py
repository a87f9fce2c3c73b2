"""Confirm a study's answer on fresh seeds: a linked confirmation study of ordinary trials.

A search trains each candidate once, with one seed, and keeps the best of many noisy runs, so the front it
reports is optimistic. `confirm_study` retrains exactly the trials the source study's report shows (its
Pareto front and the basic reference networks, chosen on validation accuracy) with K fresh seeds each, and
reports every candidate's confirmed accuracy with a 95 % interval next to its search-time value.

The confirmation is an Optuna study of its own, `<study>.confirm`, in the source study's storage setting
(by default its own SQLite file under `runs/<study>.confirm/`). Its configuration is the source study's
with these changes, so it has its own experiment fingerprint:

- the search space gains an integer `seed` parameter (it replaces any `seed` parameter of the source);
- every trial is enqueued with the source trial's parameters and one seed: nothing is sampled;
- ASHA is off (a confirmation trains every candidate to the full budget);
- `evaluation.test` is `all` (unless the source says `none`): every confirmation trial is a chosen trial
  (chosen by the source search, on validation), nothing is selected within the confirmation, and the
  paired comparisons need a test accuracy for every seed. The test split still cannot steer any choice.

Trials run through the study's executor (`executors.execute`) like any study's, so resume works as it does there: a run that
was killed leaves finished seeds COMPLETE, and the next run marks the interrupted ones FAIL and queues
their points again. The study attribute `confirmation_of` links it to the source study and its trials.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from icbench.errors import ConfigError, IcbenchError
from icbench.redact import mask_url
from icbench.report.confirm import LINK_ATTR, SEED_ATTR, SOURCE_ATTR, build_confirm_report, write_no_front
from icbench.report.evaluation import shown_trials
from icbench.report.load import StorageError, StudyNotFoundError, open_storage, with_retries
from icbench.report.load import load_study as read_stored_study
from icbench.search import fingerprint as fpr
from icbench.search.checkpoints import checkpoint_root
from icbench.search.checks import check_run, check_study
from icbench.search.evaluation import evaluate_chosen
from icbench.search.executors import execute
from icbench.search.interrupts import handled
from icbench.search.lock import study_lock
from icbench.search.records import StudyRun
from icbench.search.samplers.queue import queue_sampler
from icbench.search.schema import (
    ASHASection,
    EvaluationSection,
    IntParam,
    LoadedStudy,
    SamplerSection,
    SearchSpace,
)
from icbench.search.space import target_of
from icbench.search.storage import make_storage, storage_url
from icbench.search.study import load_study, open_study
from icbench.search.trials import counts, mark_interrupted, queue_missing, settled_keys

#: Appended to the source study's name to name its confirmation study.
SUFFIX = ".confirm"
#: Fresh seeds are the first K integers from here that no trial of the source study used.
SEED_BASE = 1000
_SEED_PARAM = IntParam(type="int", low=0, high=2**31 - 1)


def confirmation_name(name: str) -> str:
    return f"{name}{SUFFIX}"


@dataclass(frozen=True)
class Point:
    """One confirmation trial: a source trial's parameters with one fresh seed."""

    source_trial: int
    seed: int
    params: dict[str, Any]

    @property
    def key(self) -> tuple[int, int]:
        return (self.source_trial, self.seed)


def fresh_seeds(used: set[int], k: int, base: int = SEED_BASE) -> list[int]:
    """The first `k` integers from `base` that are not in `used` (seeds the source study trained with)."""
    return list(itertools.islice((s for s in itertools.count(base) if s not in used), k))


def confirmation_study(loaded: LoadedStudy, n_points: int) -> LoadedStudy:
    """The confirmation study's configuration, derived from the source study (see the module docstring).

    Raises:
        ConfigError: the source space has a `seed` parameter that sets something other than the seed.
    """
    c = loaded.config
    params = dict(loaded.space.params)
    if "seed" in params and target_of("seed", params["seed"]) != "seed":
        raise ConfigError(
            "the search space's `seed` parameter does not set the training seed; a confirmation study needs "
            "that name for its fresh seeds",
            source=str(loaded.space_path),
            field="params.seed",
        )
    params.pop("seed", None)
    params["seed"] = _SEED_PARAM
    space = SearchSpace(
        description=f"confirmation of {c.name}: the source space with fresh seeds", params=params
    )
    test = "none" if c.evaluation.test == "none" else "all"
    config = c.model_copy(
        update={
            "name": confirmation_name(c.name),
            "description": f"{c.name}'s chosen trials retrained with fresh seeds",
            "n_trials": max(1, n_points),
            "sampler": SamplerSection(name="random", seed=c.sampler.seed),
            "enqueue": [],
            "evaluation": EvaluationSection(test=test),  # type: ignore[arg-type]
            "execution": c.execution.model_copy(update={"asha": ASHASection()}),
        }
    )
    return LoadedStudy(
        config=config,
        space=space,
        study_path=loaded.study_path,
        space_path=loaded.space_path,
        study_text=yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False),
        space_text=yaml.safe_dump(space.model_dump(mode="json"), sort_keys=False),
    )


def _point_of(trial: Any) -> tuple[int, int] | None:
    a = trial.user_attrs
    if a.get(SOURCE_ATTR) is None or a.get(SEED_ATTR) is None:
        return None
    return (int(a[SOURCE_ATTR]), int(a[SEED_ATTR]))


def queue_points(study: Any, points: list[Point]) -> tuple[int, int]:
    """Enqueue every point without a trial that settles it; returns (points to run now, points settled)
    (`trials.queue_missing`: a diverged seed is an outcome, reported as such, and not retrained)."""
    queued = [(p.key, p.params, {SOURCE_ATTR: p.source_trial, SEED_ATTR: p.seed}) for p in points]
    return queue_missing(study, queued, _point_of)


def _source_params(url: str, name: str, numbers: list[int]) -> dict[int, dict[str, Any]]:
    """The exact parameters of the source trials (read-only, as the report reads)."""
    storage, close = open_storage(url)
    try:
        study_id = with_retries(lambda: storage.get_study_id_from_name(name))
        trials = with_retries(lambda: storage.get_all_trials(study_id, deepcopy=False))
        return {t.number: dict(t.params) for t in trials if t.number in numbers}
    finally:
        close()


def confirm_study(
    path: str | Path,
    seeds: int | None = None,
    *,
    report: bool = True,
    overrides: dict[str, Any] | None = None,
    echo: Callable[[str], None] = print,
) -> StudyRun:
    """Retrain the source study's chosen trials (front + basic networks) with `seeds` fresh seeds each.

    Args:
        path: the source study file; the source study must have been run.
        seeds: seeds per candidate (default: the study's `confirm_seeds`).
        report: write the confirmation report (`reports/<study>.confirm/`).
        overrides: dotted-key overrides of the study file, as for `run`.
        echo: progress lines.

    Returns:
        What the run did; `stop_reason` is set when there was nothing to confirm or a point was not run.

    Raises:
        ConfigError: the study file no longer describes the stored source study (its fingerprint changed),
            or K < 2, before anything is written.
    """
    t0 = time.perf_counter()
    loaded = load_study(path, overrides)
    c = loaded.config
    k = c.confirm_seeds if seeds is None else seeds
    if k < 2:
        raise ConfigError(
            f"--seeds {k}: a confirmation needs at least 2 seeds for an interval", source=str(path)
        )
    src_url = storage_url(loaded)
    try:
        source = read_stored_study(src_url, c.name)
    except (StorageError, StudyNotFoundError) as e:
        raise ConfigError(
            f"nothing to confirm: the study has not been run here ({e}); run it first with "
            f"`run_study.py run {path}`",
            source=str(path),
        ) from None
    echo(f"confirm: read study {c.name!r} ({mask_url(src_url)}) to choose its front and basic networks")
    stored = source.user_attrs.get(fpr.FINGERPRINT_ATTR)
    if stored is not None:  # the file must still describe the stored experiment, or we would retrain another
        fpr.check_unchanged(
            stored, fpr.experiment_fingerprint(loaded), study=c.name, url=src_url, source=str(path)
        )
    trials = source.trials
    assert trials is not None
    name = confirmation_name(c.name)
    run = StudyRun(name=name, storage_url="")
    out = Path(c.reports_dir) / name
    numbers = shown_trials(trials, source.objectives)
    if not numbers:
        run.stop_reason = (
            f"study {c.name!r} has no Pareto front yet (no COMPLETE trial with a validation accuracy among "
            f"its {len(trials)} trials): nothing to confirm"
        )
        echo(f"confirm: {run.stop_reason}")
        if report:
            run.report_dir = write_no_front(out, c.name, run.stop_reason)
        return run

    used = {int(s) for s in trials["seed"].dropna()} if "seed" in trials else set()
    seed_list = fresh_seeds(used, k)
    params = _source_params(src_url, c.name, numbers)
    # Seed-major order: an interrupted confirmation has whole pairs (candidate and basic) for early seeds.
    points = [Point(n, s, {**params[n], "seed": s}) for s in seed_list for n in numbers]
    derived = confirmation_study(loaded, len(points))
    echo(f"confirm: checking the {len(points)} confirmation points (study, data, storage, resources)")
    checked = check_study(derived)
    check_run(derived)  # the run's own pre-training checks: data files, storage, resume, resources, tracking
    url = storage_url(derived)
    run.storage_url = url
    basic = [int(n) for n in trials.loc[trials["is_basic"].fillna(False).astype(bool), "number"]]
    link = {
        "study": c.name,
        "storage": mask_url(src_url),  # for a person to read: never a password
        "fingerprint_hash": source.user_attrs.get(fpr.HASH_ATTR),
        "trials": numbers,
        "basic_trials": [n for n in numbers if n in basic],
        "seeds": seed_list,
    }
    with handled(), study_lock(derived, url):
        storage = make_storage(url)
        study = open_study(derived, url, storage=storage, echo=echo)
        study.set_user_attr(LINK_ATTR, link)
        study.sampler = queue_sampler(points[0].params)
        # A row left running with a checkpoint continues as the same trial; any other is queued again.
        n_stale, _ = mark_interrupted(study, storage, checkpoints=checkpoint_root(derived))
        if n_stale:
            echo(f"resume: {n_stale} confirmation trial(s) left running by an earlier driver marked FAIL")
        todo, done = queue_points(study, points)
        before = counts(study)
        echo(
            f"confirm {c.name!r}: {len(numbers)} trial(s) (front and basic networks: "
            f"{', '.join(f'#{n}' for n in numbers)}) x {k} fresh seeds ({', '.join(map(str, seed_list))}) = "
            f"{len(points)} points; {done} already settled, {todo} to run; storage {mask_url(url)}"
        )
        if todo:
            target = before["complete"] + before["pruned"] + todo
            reason = execute(derived, checked, study, target, echo)
            # The searcher ends a confirmation as "exhausted" once the queue is empty; only points left
            # without a settling trial make the run incomplete.
            left = _unsettled(study, points)
            if left:
                run.stop_reason = f"{len(left)} point(s) not run ({reason or 'stopped'}); run confirm again"
        after = counts(study)
        run.n_complete, run.n_pruned = after["complete"], after["pruned"]
        run.n_failed, run.n_rejected = after["failed"], after["rejected"]
        run.n_duplicate = after["duplicate"]
        evaluate_chosen(derived, url, study, echo)  # records the setting; `all` trials evaluated themselves
    if report:
        try:
            build_confirm_report(src_url, c.name, url, name, out)
            run.report_dir = out
            echo(f"confirmation report written to {out}/ (confirm.md, confirm.tex, confirm.csv, paired.csv)")
        except IcbenchError as e:
            echo(f"report: {e}")
    run.wall_time_s = time.perf_counter() - t0
    echo(f"done in {run.wall_time_s:.1f} s")
    return run


def _unsettled(study: Any, points: list[Point]) -> list[tuple[int, int]]:
    settled, _ = settled_keys(study, _point_of)
    return [p.key for p in points if p.key not in settled]
