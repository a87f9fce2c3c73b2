"""Faults that cost at most one epoch: a trial's worker or the whole driver killed in the middle of an
epoch, and what a resumed study does with the trials that were running.

The kills are exact, not left to timing: `fault_hooks.py` (the CLI with a pause wrapped around training)
stops a trial at the first optimizer step of its second epoch (after epoch 1's checkpoint, after epoch 2's
start was recorded) and writes a marker with the worker's pid; the test then kills there.

What must hold: the killed trial ends COMPLETE as the same Optuna trial, having trained again at most one
epoch (`epochs_retrained`, exactly 1 for a kill in the middle of epoch 2); nothing COMPLETE is lost or
repeated; every enqueued point (the study's basic network) ends COMPLETE once; an interrupted run says so
and exits 130 (SIGINT) or 143 (SIGTERM), never "done".
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest
from optuna.trial import TrialState
from reliability_helpers import (
    HERE,
    TINY_STUDY,
    db_path,
    kill_group,
    load_trials,
    ray_sandbox,
    run_cli,
    start,
    wait_for_marker,
    write_study,
)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]

HOOKS = [sys.executable, str(HERE / "fault_hooks.py"), "run"]
#: Three epochs, so a trial killed in epoch 2 has a checkpoint behind it and an epoch after it.
STUDY = TINY_STUDY + "budget: {epochs: 3}\nsampler: {name: tpe, seed: 0}\n"
BASIC = "enqueue:\n  - {unit: conv, strategy: all, lr: 0.1}\n"


def _by_number(trials: list) -> dict[int, object]:
    return {t.number: t for t in trials}


def _complete(trials: list) -> dict[int, tuple[dict, list[float]]]:
    return {t.number: (t.params, t.values) for t in trials if t.state == TrialState.COMPLETE}


def _basic(trials: list) -> list:
    return [t for t in trials if t.params.get("unit") == "conv"]


def _checkpoints(study: Path) -> Path:
    return study.parent / "runs" / study.stem / "checkpoints"


def test_worker_sigkill_mid_epoch_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    study = write_study(tmp_path, "worker", STUDY + "n_trials: 3\n")
    markers = tmp_path / "markers"
    markers.mkdir()
    log = tmp_path / "run.log"
    with ray_sandbox() as box:
        env = box.env(ICBENCH_FAULT_DIR=str(markers), ICBENCH_FAULT_TRIALS="1")
        proc = start([*HOOKS, str(study)], env, log)
        info = wait_for_marker(markers / "mid_epoch_1", proc, log)
        assert info["pid"] != proc.pid
        os.kill(info["pid"], signal.SIGKILL)  # the trial's Ray worker, mid-epoch; the driver lives on
        assert proc.wait(timeout=180) == 0, log.read_text()[-4000:]
        box.kill_leftovers()
    trials = _by_number(load_trials(study))
    assert [t.state for t in trials.values()] == [TrialState.COMPLETE] * 3, log.read_text()[-3000:]
    killed = trials[1].user_attrs
    assert killed["attempts"] == 2 and killed["resumed_from_epoch"] == 1, killed
    assert killed["epochs_retrained"] == 1  # epoch 2 was under way; epoch 1 was not trained again
    assert [p["epoch"] for p in killed["curve"]] == [1, 2, 3]
    for n in (0, 2):
        assert trials[n].user_attrs["epochs_retrained"] == 0 and trials[n].user_attrs["attempts"] == 1
    # Each trial's checkpoint folder is removed once its outcome is recorded.
    assert not list(_checkpoints(study).glob("trial_*/state.pt"))


def test_driver_sigkill_mid_trial_continues_the_same_trial(tmp_path: Path) -> None:
    study = write_study(tmp_path, "driver", STUDY + "n_trials: 4\n" + BASIC)
    markers = tmp_path / "markers"
    markers.mkdir()
    log = tmp_path / "run.log"
    with ray_sandbox() as box:
        # Trial 0 is the enqueued basic network, trial 1 a sampled one: both are paused in epoch 2.
        env = box.env(ICBENCH_FAULT_DIR=str(markers), ICBENCH_FAULT_TRIALS="0,1")
        proc = start([*HOOKS, str(study)], env, log)
        wait_for_marker(markers / "mid_epoch_0", proc, log)
        wait_for_marker(markers / "mid_epoch_1", proc, log)
        kill_group(proc)
        box.kill_leftovers()
        before = load_trials(study)
        assert [t.state for t in before[:2]] == [TrialState.RUNNING] * 2
        assert (_checkpoints(study) / "trial_00000" / "state.pt").exists()

        done = run_cli(["run", str(study)], box.env(), timeout=240)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert "2 trial(s) left running by an earlier driver continue from their checkpoints" in done.stdout
        assert box.kill_leftovers() == []
    trials = load_trials(study)
    complete = _complete(trials)
    assert len(complete) == 4 and not [t for t in trials if t.state != TrialState.COMPLETE], [
        (t.number, t.state, t.user_attrs.get("reason")) for t in trials
    ]
    for n in (0, 1):  # continued as the same Optuna trials, from the checkpoint of epoch 1
        a = trials[n].user_attrs
        assert a["driver_resumes"] == 1 and a["resumed_from_epoch"] == 1 and a["epochs_retrained"] == 1, a
        assert trials[n].params == before[n].params
    assert len(_basic(trials)) == 1  # the basic network once, not queued again beside its continuation
    trained = [json.dumps(t.params, sort_keys=True) for t in trials]
    assert len(trained) == len(set(trained))


def test_enqueued_basic_network_is_queued_again_without_a_checkpoint(tmp_path: Path) -> None:
    """SIGKILL of the driver while the basic network trains, checkpoints off: the resumed study queues it
    again (`retry_of`) and it ends COMPLETE once."""
    body = STUDY + "n_trials: 3\n" + BASIC
    body = body.replace("execution: {", "execution: {checkpoint_every: 0, ")
    study = write_study(tmp_path, "requeue", body)
    markers = tmp_path / "markers"
    markers.mkdir()
    log = tmp_path / "run.log"
    with ray_sandbox() as box:
        env = box.env(ICBENCH_FAULT_DIR=str(markers), ICBENCH_FAULT_TRIALS="0")
        proc = start([*HOOKS, str(study)], env, log)
        wait_for_marker(markers / "mid_epoch_0", proc, log)
        kill_group(proc)
        box.kill_leftovers()
        done = run_cli(["run", str(study)], box.env(), timeout=240)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert "1 enqueued or grid point(s) queued again" in done.stdout
    trials = load_trials(study)
    assert trials[0].state == TrialState.FAIL and trials[0].user_attrs["status"] == "interrupted"
    basic = [t for t in _basic(trials) if t.state == TrialState.COMPLETE]
    assert len(basic) == 1 and basic[0].user_attrs["retry_of"] == 0
    assert len(_complete(trials)) == 3


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_says_interrupted_then_resume_completes_the_basic_network(
    tmp_path: Path, sig: signal.Signals, status: int
) -> None:
    study = write_study(tmp_path, "interrupt", STUDY + "n_trials: 2\n" + BASIC)
    markers = tmp_path / "markers"
    markers.mkdir()
    log = tmp_path / "run.log"
    with ray_sandbox() as box:
        env = box.env(ICBENCH_FAULT_DIR=str(markers), ICBENCH_FAULT_TRIALS="0")
        proc = start([*HOOKS, str(study)], env, log)
        wait_for_marker(markers / "mid_epoch_0", proc, log)
        os.kill(proc.pid, sig)  # the driver only, as a terminal's Ctrl-C or a scheduler's SIGTERM would
        assert proc.wait(timeout=120) == status, log.read_text()[-3000:]
        text = log.read_text()
        assert f"interrupted by {sig.name}" in text
        assert "done in" not in text and "report written" not in text
        box.kill_leftovers()
        assert load_trials(study)[0].state == TrialState.RUNNING  # left for the next run to continue

        done = run_cli(["run", str(study)], box.env(), timeout=240)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert "done in" in done.stdout
    trials = load_trials(study)
    basic = _basic(trials)
    assert len(basic) == 1 and basic[0].state == TrialState.COMPLETE and basic[0].number == 0
    assert basic[0].user_attrs["epochs_retrained"] <= 1
    assert len(_complete(trials)) == 2
    assert db_path(study).exists()
