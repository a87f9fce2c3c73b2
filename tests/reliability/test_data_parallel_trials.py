"""Trials across several workers (`execution.workers_per_trial: 2`): each trial a Ray Train
`TorchTrainer` of 2 gloo workers of 1 thread inside its Ray Tune trial, on this 2-CPU machine.

- The same candidate trained by a 2-worker trial and a 1-worker trial (same global batch, seed and data
  order) ends with the same loss curve within `LOSS_RTOL` and validation accuracy within `VAL_POINTS`.
  Why not bit for bit: BatchNorm normalises each worker's half of the batch (tests/training/
  test_data_parallel.py measures the gap and states these tolerances).
- A 2-worker trial whose rank-0 worker is SIGKILLed in the middle of epoch 2 is restarted by Ray Train
  and resumes from its checkpoint: COMPLETE, one epoch trained again.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
from optuna.trial import TrialState
from reliability_helpers import HERE, load_trials, ray_sandbox, run_cli, start, wait_for_marker, write_study

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]

#: Per-epoch training loss: |2 workers - 1 worker| <= LOSS_RTOL x loss (tests/training/test_data_parallel.py).
LOSS_RTOL = 0.03
#: Validation accuracy of one seed on 450 validation images (2.0 points is 9 images). The training tests
#: bound the mean over 3 seeds by 0.3 points on 1,500 validation images; one seed of a smaller set moves
#: more: measured here 79.33 % (1 worker) against 80.22 % (2 workers), train_loss within 0.8 %.
VAL_POINTS = 2.0
POINT = "{unit: ic, strategy: all, lr: 0.1}"


def _study(folder: Path, workers: int) -> Path:
    body = f"""
dataset: {{name: synthetic, kwargs: {{n: 3000, image_size: 16, in_chans: 1, signal: 0.45}}}}
family: {{name: resnet_cifar, size: resnet8, width: 0.25}}
training: {{batch_size: 64}}
execution: {{max_concurrent: 1, cpus_per_trial: 1, num_cpus: 2, workers_per_trial: {workers}}}
budget: {{epochs: 3}}
n_trials: 1
sampler: {{name: tpe, seed: 0}}
enqueue:
  - {POINT}
"""
    return write_study(folder, f"dp{workers}", body)


def _losses(trial: object) -> list[float]:
    return [float(e["train_loss"]) for e in trial.user_attrs["curve"]]  # type: ignore[attr-defined]


def test_two_worker_trial_matches_one_worker_trial(tmp_path: Path) -> None:
    trials = {}
    with ray_sandbox() as box:
        for workers in (1, 2):
            study = _study(tmp_path / str(workers), workers)
            done = run_cli(["run", str(study), "--no-report"], box.env(), timeout=420)
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
            (trial,) = load_trials(study)
            assert trial.state == TrialState.COMPLETE, trial.user_attrs.get("reason")
            trials[workers] = trial
    one, two = trials[1], trials[2]
    for a, b in zip(_losses(one), _losses(two), strict=True):
        assert abs(a - b) <= LOSS_RTOL * a, (_losses(one), _losses(two))
    assert abs(one.values[0] - two.values[0]) * 100 <= VAL_POINTS, (one.values, two.values)


def test_two_worker_trial_resumes_after_a_worker_is_killed(tmp_path: Path) -> None:
    study = _study(tmp_path, 2)
    markers = tmp_path / "markers"
    markers.mkdir()
    log = tmp_path / "run.log"
    with ray_sandbox() as box:
        env = box.env(ICBENCH_FAULT_DIR=str(markers), ICBENCH_FAULT_TRIALS="0")
        proc = start([sys.executable, str(HERE / "fault_hooks.py"), "run", str(study), "--no-report"], env, log)
        info = wait_for_marker(markers / "mid_epoch_0", proc, log)
        os.kill(info["pid"], signal.SIGKILL)  # rank 0's Ray Train worker, mid-epoch
        assert proc.wait(timeout=420) == 0, log.read_text()[-4000:]
        box.kill_leftovers()
    (trial,) = load_trials(study)
    assert trial.state == TrialState.COMPLETE, trial.user_attrs.get("reason")
    a = trial.user_attrs
    assert a["attempts"] == 2 and a["resumed_from_epoch"] == 1 and a["epochs_retrained"] == 1, a
    assert [e["epoch"] for e in a["curve"]] == [1, 2, 3]
