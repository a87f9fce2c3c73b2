"""A node lost while one of its trials trains: the trial continues on another node from its checkpoint.

A real two-node Ray cluster on this host (`cluster_helpers.Cluster`: `ray start --head` and `ray start
--address`, one CPU each, Ray 2.60 token authentication). Two trials start, one per node, and both pause
in the middle of their second epoch (`reliability/fault_hooks.py`: after epoch 1's checkpoint). Every
process of the worker node is then SIGKILLed (the machine is lost) and the head's trial let go on. Ray
Tune restarts the lost trial (`execution.trial_restarts`) on the head once it is free, and the trial
resumes from the checkpoint it wrote under `execution.storage_path`.

The storage path here is a local folder: both "nodes" run on this host and see it at the same path, as a
shared filesystem would be seen by real machines (an `s3://` storage path needs no shared mount at all).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cluster_helpers import REPO, Cluster
from optuna.trial import TrialState

from icbench.search.schema import write_study_files

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]

HOOKS = REPO / "tests" / "reliability" / "fault_hooks.py"
STUDY = """
dataset: {name: synthetic, kwargs: {n: 400, image_size: 16, in_chans: 1}}
family: {name: resnet_cifar, size: resnet8, width: 0.25}
training: {batch_size: 64}
budget: {epochs: 3}
n_trials: 2
sampler: {name: tpe, seed: 0}
execution: {address: "%s", storage_path: %s, cpus_per_trial: 1, max_concurrent: 2}
"""
SPACE = """
params:
  unit: {type: categorical, choices: [ic, ic_dual, se]}
  lr: {type: float, low: 0.03, high: 0.3, log: true}
"""
DEADLINE_S = 300


def _wait(path: Path, proc: subprocess.Popen[bytes], log: Path, deadline: float) -> dict:
    while not path.exists():
        assert proc.poll() is None, f"the driver ended early:\n{log.read_text()[-4000:]}"
        assert time.monotonic() < deadline, f"{path.name} not reached:\n{log.read_text()[-4000:]}"
        time.sleep(0.1)
    return json.loads(path.read_text())


def test_worker_node_lost_mid_epoch_trial_continues_on_the_head(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import optuna

    cluster = Cluster(cpus_per_node=1)
    shared = tmp_path / "shared"
    study = write_study_files(tmp_path, "nodeloss", STUDY % (cluster.address, shared), SPACE)
    markers = tmp_path / "markers"
    markers.mkdir()
    # Trials run in processes each node's raylet starts, with the node's environment: the pause is set there.
    monkeypatch.setenv("ICBENCH_FAULT_DIR", str(markers))
    monkeypatch.setenv("ICBENCH_FAULT_TRIALS", "all")
    log = tmp_path / "driver.log"
    deadline = time.monotonic() + DEADLINE_S
    try:
        cluster.start_node("head")
        cluster.start_node("worker1")
        cluster.wait_for_nodes(2)
        env = cluster.env("driver")
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, str(HOOKS), "run", str(study), "--no-report"],
                env=env, cwd=REPO, start_new_session=True, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        paused = [_wait(markers / f"mid_epoch_{n}", proc, log, deadline) for n in (0, 1)]
        on_worker = [p for p in paused if p.get("ray_node") == "worker1"]
        assert len(on_worker) == 1, paused  # one trial per node: each has one CPU
        lost = on_worker[0]["trial"]
        assert (shared / "nodeloss" / "checkpoints" / f"trial_{lost:05d}" / "state.pt").exists()
        assert cluster.kill_node("worker1")  # the machine is gone, mid-epoch
        (markers / "release").write_text("")  # the head's trial goes on
        assert proc.wait(timeout=max(1.0, deadline - time.monotonic())) == 0, log.read_text()[-4000:]
    finally:
        leftovers = cluster.close()
    print(f"killed at the end (nodes, driver): {len(leftovers)} processes")

    trials = optuna.load_study(
        study_name="nodeloss", storage=f"sqlite:///{tmp_path / 'runs' / 'nodeloss' / 'study.db'}"
    ).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2, log.read_text()[-4000:]
    a = trials[lost].user_attrs
    assert a["attempts"] == 2 and a["resumed_from_epoch"] == 1 and a["epochs_retrained"] == 1, a
    assert json.loads(a["machine"])["ray_node"] == "head"  # finished on the node that was left
    assert [e["epoch"] for e in a["curve"]] == [1, 2, 3]
    print(f"node lost: trial {lost} resumed on the head from epoch 1, epochs_retrained {a['epochs_retrained']}")
