"""Grid studies after a crash: every grid point ends COMPLETE exactly once.

Optuna's grid sampler counts a FAIL trial as a visited point, so a point whose trial was marked FAIL
`interrupted` after a driver crash would never be asked again. The resume queues such points again; the
grid counts as exhausted only when every point has a trial that settled it.

The fast tests drive the sampler and `mark_interrupted` directly; the slow one SIGKILLs a real grid study
in the middle of a trial (`crash_hooks.py`) and resumes it with the plain command.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from reliability_helpers import (
    HERE,
    TINY_STUDY,
    db_path,
    integrity,
    kill_group,
    load_trials,
    ray_sandbox,
    run_cli,
    start,
    wait_for_marker,
    write_study,
)

from icbench.search import space as sp
from icbench.search.samplers import make_sampler
from icbench.search.samplers.grid import GridPoints
from icbench.search.schema import SearchSpace, load_study
from icbench.search.storage import make_storage
from icbench.search.trials import mark_interrupted

GRID_SPACE = """
params:
  unit: {type: categorical, choices: [ic, conv, se]}
  lr: {type: categorical, choices: [0.05, 0.1]}
"""
N_POINTS = 6
#: Three distinct parameter sets: `k` only matters, and is only suggested, for `last_k`.
CONDITIONAL_SPACE = """
params:
  strategy: {type: categorical, choices: [all, last_k]}
  k: {type: int, low: 1, high: 2, target: strategy_args.k, when: {strategy: [last_k]}}
"""


def _open(tmp_path: Path, space: str) -> tuple[Any, Any, Any]:
    """(loaded study, its storage, an Optuna study with icbench's grid sampler) in a fresh SQLite file."""
    path = write_study(tmp_path, "g", TINY_STUDY + "sampler: {name: grid, seed: 0}\n", space)
    loaded = load_study(path)
    storage = make_storage(f"sqlite:///{tmp_path / 'g.db'}")
    sampler = make_sampler(loaded.config.sampler, 0, loaded)
    study = optuna.create_study(study_name="g", storage=storage, directions=["maximize"], sampler=sampler)
    return loaded, storage, study


def _ask(study: Any, loaded: Any) -> Any:
    trial = study.ask()
    sp.sample(trial, loaded.space, None)
    return trial


def _key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


def test_interrupted_grid_points_are_queued_again_once(tmp_path: Path) -> None:
    loaded, storage, study = _open(tmp_path, GRID_SPACE)
    done, left_running = _ask(study, loaded), [_ask(study, loaded), _ask(study, loaded)]
    study.tell(done, [0.5])
    grid = GridPoints(loaded.space)

    assert mark_interrupted(study, storage, grid=grid) == (2, 2)

    trials = study.get_trials()
    for t in left_running:
        frozen = trials[t.number]
        assert frozen.state == TrialState.FAIL and frozen.user_attrs["status"] == "interrupted"
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    assert sorted(t.user_attrs["retry_of"] for t in waiting) == [t.number for t in left_running]
    assert mark_interrupted(study, storage, grid=grid) == (0, 0)
    # The queued retries are asked next, with the interrupted trials' parameters.
    retried = [_ask(study, loaded) for _ in waiting]
    assert sorted(_key(t.params) for t in retried) == sorted(_key(t.params) for t in left_running)
    # A second crash interrupts the retries: they are queued again, each once.
    assert mark_interrupted(study, storage, grid=grid) == (2, 2)
    again = [t for t in study.get_trials() if t.state == TrialState.WAITING]
    assert sorted(t.user_attrs["retry_of"] for t in again) == [t.number for t in retried]


def test_a_kill_between_queueing_and_marking_queues_nothing_twice(tmp_path: Path) -> None:
    loaded, storage, study = _open(tmp_path, GRID_SPACE)
    running = _ask(study, loaded)
    study.enqueue_trial(dict(running.params), user_attrs={"retry_of": running.number})  # then killed
    assert mark_interrupted(study, storage, grid=GridPoints(loaded.space)) == (1, 0)
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL, TrialState.WAITING]


def test_other_samplers_do_not_queue_interrupted_trials(tmp_path: Path) -> None:
    loaded, storage, study = _open(tmp_path, GRID_SPACE)
    _ask(study, loaded)
    assert mark_interrupted(study, storage) == (1, 0)
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL]


def test_a_trial_killed_while_sampling_is_not_queued_with_half_its_parameters(tmp_path: Path) -> None:
    loaded, storage, study = _open(tmp_path, GRID_SPACE)
    trial = study.ask()
    trial.suggest_categorical("unit", ["ic", "conv", "se"])  # killed before `lr` was sampled
    assert mark_interrupted(study, storage, grid=GridPoints(loaded.space)) == (1, 0)


def test_grid_points_are_the_distinct_parameter_sets() -> None:
    space = SearchSpace.model_validate(yaml.safe_load(CONDITIONAL_SPACE))
    points = GridPoints(space)
    assert len(points.keys) == 3
    assert points.key({"strategy": "all", "k": 2}) == points.key({"strategy": "all"})
    assert points.is_whole({"strategy": "last_k", "k": 1}) and points.is_whole({"strategy": "all"})
    assert not points.is_whole({"strategy": "last_k"})


def test_an_interrupted_point_keeps_the_grid_open(tmp_path: Path) -> None:
    loaded, storage, study = _open(tmp_path, GRID_SPACE)
    trials = [_ask(study, loaded) for _ in range(N_POINTS)]
    for t in trials[:-1]:
        study.tell(t, [0.5])
    # Every point has had a trial; the last one never finished.
    mark_interrupted(study, storage, grid=GridPoints(loaded.space))
    assert not study.sampler.exhausted(study)
    retry = _ask(study, loaded)
    assert retry.params == trials[-1].params
    study.tell(retry, [0.5])
    assert study.sampler.exhausted(study)


def test_the_grid_is_exhausted_only_when_every_point_is_settled(tmp_path: Path) -> None:
    """A resumed grid, driven as the searcher drives it: ask, evaluate, tell, until the sampler says the
    grid is exhausted. It ends with each point COMPLETE exactly once, although one trial was interrupted."""
    loaded, storage, study = _open(tmp_path, GRID_SPACE)
    grid = GridPoints(loaded.space)
    first = [_ask(study, loaded) for _ in range(3)]
    for t in first[:2]:
        study.tell(t, [0.5])
    # The driver dies with first[2] running; the next run marks it and queues its point again.
    mark_interrupted(study, storage, grid=grid)
    study.sampler = make_sampler(loaded.config.sampler, 3, loaded)
    assert not study.sampler.exhausted(study), "an interrupted point is not settled"
    completed: Counter[str] = Counter(_key(t.params) for t in first[:2])
    for _ in range(20):  # the searcher's loop; duplicates are told FAIL without training
        if study.sampler.exhausted(study):
            break
        trial = _ask(study, loaded)
        if completed[_key(trial.params)]:
            trial.set_user_attr("status", "duplicate")
            study.tell(trial, state=TrialState.FAIL)
            continue
        completed[_key(trial.params)] += 1
        study.tell(trial, [0.5])
    assert study.sampler.exhausted(study)
    assert len(completed) == 6 and set(completed.values()) == {1}
    complete = Counter(_key(t.params) for t in study.get_trials() if t.state == TrialState.COMPLETE)
    assert len(complete) == 6 and set(complete.values()) == {1}


# ---------------------------------------------------------------- a real SIGKILL in the middle of a grid

#: Two epochs: a trial has a middle to be killed in (after its first epoch). No n_trials: the grid's size.
GRID_STUDY = TINY_STUDY + "budget: {epochs: 2}\nsampler: {name: grid, seed: 0}\n"
#: The whole test stays well inside this (its two runs take about a minute here).
RESUME_TIMEOUT_S = 400


@pytest.mark.slow
@pytest.mark.xdist_group("ray")
@pytest.mark.parametrize("checkpoint_every", [0, 1])
def test_a_grid_study_killed_mid_trial_ends_with_every_point_complete_once(
    tmp_path: Path, checkpoint_every: int
) -> None:
    """Without checkpoints the interrupted points are queued again (`retry_of`); with them the interrupted
    trials continue from their checkpoints as the same trials. Either way every point is COMPLETE once."""
    body = GRID_STUDY.replace("execution: {", f"execution: {{checkpoint_every: {checkpoint_every}, ")
    study = write_study(tmp_path, "grid", body, GRID_SPACE)
    markers = tmp_path / "markers"
    markers.mkdir()
    log = tmp_path / "runs.log"
    with ray_sandbox() as box:
        proc = start(
            [sys.executable, str(HERE / "crash_hooks.py"), "run", str(study)],
            box.env(ICBENCH_CRASH_AT="mid_trial", ICBENCH_CRASH_DIR=str(markers)),
            log,
        )
        wait_for_marker(markers / "mid_trial", proc, log)
        kill_group(proc)
        box.kill_leftovers()
        killed = load_trials(study)
        interrupted = [t.number for t in killed if t.state == TrialState.RUNNING]
        assert interrupted, "no trial was running at the kill"
        assert sum(t.state == TrialState.COMPLETE for t in killed) < N_POINTS

        done = run_cli(["run", str(study), "--no-report"], box.env(), timeout=RESUME_TIMEOUT_S)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        if checkpoint_every:
            assert f"{len(interrupted)} trial(s) left running by an earlier driver continue" in done.stdout
        else:
            assert "grid point(s) queued again" in done.stdout

    trials = load_trials(study)
    complete = Counter(_key(t.params) for t in trials if t.state == TrialState.COMPLETE)
    points = {_key({"unit": u, "lr": lr}) for u in ("ic", "conv", "se") for lr in (0.05, 0.1)}
    assert set(complete) == points and set(complete.values()) == {1}, complete
    for number in interrupted:
        if checkpoint_every:  # the same trial, resumed from the checkpoint of its first epoch
            a = trials[number].user_attrs
            assert trials[number].state == TrialState.COMPLETE and a["epochs_retrained"] <= 1, a
            assert not [t for t in trials if t.user_attrs.get("retry_of") == number]
            continue
        assert (
            trials[number].state == TrialState.FAIL and trials[number].user_attrs["status"] == "interrupted"
        )
        retry = [t for t in trials if t.user_attrs.get("retry_of") == number]
        assert len(retry) == 1 and retry[0].params == trials[number].params
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert integrity(db_path(study)) == "ok"
