"""A study on a real two-node Ray cluster (separate `ray start` processes, token authentication) with a
real PostgreSQL study database, and the faults a cluster has.

One cluster, one study, in order: trials spread over both nodes; the worker node's processes are
SIGKILLed while one of its trials trains (Ray Tune restarts that trial on the head, where it resumes from
its checkpoint under the shared storage path: COMPLETE, at most one epoch trained again); the driver is
SIGKILLed (its running trials continue from their checkpoints in the rerun); a new worker joins and the rerun driver resumes the study to its target. What must
hold at the end: the target number of COMPLETE trials, every trial that was COMPLETE at any point still
COMPLETE with the same values, no parameter set trained twice, COMPLETE trials from two nodes, and one WLD
teacher trained once for the whole cluster (under the shared storage path) and loaded on both nodes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from cluster_helpers import REPO, Cluster
from optuna.trial import TrialState

from icbench.search.schema import write_study_files
from icbench.search.storage import resolve_url

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]

N_TRIALS = 12
DEADLINE_S = 420
STUDY = """
dataset: {name: synthetic, kwargs: {n: 1500, image_size: 16, in_chans: 1}}
family: {name: resnet_cifar, size: resnet8, width: 0.25}
training: {batch_size: 64}
budget: {epochs: 4}
n_trials: %d
sampler: {name: tpe, seed: 0}
wld: {enabled: true, teacher_epochs: 2}
execution: {address: "%s", storage_path: %s, cpus_per_trial: 1, max_concurrent: 2}
storage: %s
"""
SPACE = """
params:
  unit: {type: categorical, choices: [ic, ic_dual, se]}
  strategy: {type: categorical, choices: [all, every_other, last_k]}
  k: {type: int, low: 1, high: 2, target: strategy_args.k, when: {strategy: [last_k]}}
  lr: {type: float, low: 0.03, high: 0.3, log: true}
"""


class Reader:
    """The study read from its own long-lived storage (opening a storage checks the schema: slow)."""

    def __init__(self, url: str) -> None:
        self.storage = optuna.storages.RDBStorage(resolve_url(url))

    def trials(self) -> list[optuna.trial.FrozenTrial]:
        try:
            return optuna.load_study(study_name="cluster", storage=self.storage).get_trials()
        except KeyError:  # not created yet
            return []

    def close(self) -> None:
        self.storage.engine.dispose()


def _complete(trials: list[optuna.trial.FrozenTrial]) -> dict[int, tuple[dict, list[float] | None]]:
    return {t.number: (t.params, t.values) for t in trials if t.state == TrialState.COMPLETE}


def _training_on(cluster: Cluster, node: str) -> list[int]:
    """Pids of the node's processes that run a Tune trial (the function trainable's actor)."""
    pids = []
    for pid in cluster.node_processes(node):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"ImplicitFunc" in title:
            pids.append(pid)
    return pids


def _node(t: optuna.trial.FrozenTrial) -> str:
    return json.loads(t.user_attrs.get("machine", "{}")).get("ray_node", "")


def test_two_nodes_worker_killed_driver_killed_one_teacher(tmp_path: Path, postgres_url: str) -> None:
    cluster = Cluster(cpus_per_node=1)
    shared = tmp_path / "shared"  # the storage_path every node mounts
    study = write_study_files(
        tmp_path, "cluster", STUDY % (N_TRIALS, cluster.address, shared, postgres_url), SPACE
    )
    log = tmp_path / "driver.log"
    deadline = time.monotonic() + DEADLINE_S
    seen: dict[int, tuple[dict, list[float] | None]] = {}

    def driver() -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            return subprocess.Popen(
                [sys.executable, str(REPO / "run_study.py"), "run", str(study), "--no-report"],
                env=cluster.env("driver"),
                cwd=REPO,
                start_new_session=True,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    reader = Reader(postgres_url)
    trials: list[optuna.trial.FrozenTrial] = []

    def watch(proc: subprocess.Popen[bytes], until: Callable[[], bool]) -> None:
        while not until():
            assert proc.poll() is None, f"the driver ended early:\n{log.read_text()[-4000:]}"
            assert time.monotonic() < deadline, f"over {DEADLINE_S} s:\n{log.read_text()[-4000:]}"
            trials[:] = reader.trials()
            for number, record in seen.items():
                assert _complete(trials).get(number) == record, f"COMPLETE trial {number} lost or changed"
            seen.update(_complete(trials))
            time.sleep(0.1)

    try:
        cluster.start_node("head")
        cluster.start_node("worker1")
        cluster.wait_for_nodes(2)

        # 1. A trial trains on the worker node after one has completed: lose the worker node.
        first = driver()
        busy_since: list[float] = []

        def worker_mid_trial() -> bool:
            if not seen or not _training_on(cluster, "worker1"):
                busy_since.clear()
                return False
            busy_since.append(time.monotonic())
            return busy_since[-1] - busy_since[0] > 2.0  # past its start-up, into training

        watch(first, worker_mid_trial)
        killed_worker = cluster.kill_node("worker1")
        assert killed_worker
        # The lost trial is restarted on the head and resumes from its checkpoint.
        watch(first, lambda: any(t.user_attrs.get("attempts", 1) >= 2 for t in trials))
        # 2. The study goes on on the head alone; the driver is lost too while a trial runs there, past
        # its first checkpoint (trials of a few seconds: waiting for more than that races the study's end).
        checkpoints = shared / "cluster" / "checkpoints"

        def head_mid_trial() -> bool:
            return any(
                t.state == TrialState.RUNNING
                and (checkpoints / f"trial_{t.number:05d}" / "state.pt").exists()
                for t in trials
            )

        watch(first, head_mid_trial)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)

        # 3. A worker machine joins again and the driver is rerun against the same cluster and database.
        cluster.start_node("worker2")
        cluster.wait_for_nodes(2)
        second = driver()
        watch(second, lambda: second.poll() is not None or len(seen) >= N_TRIALS)
        assert second.wait(timeout=120) == 0, log.read_text()[-4000:]
    finally:
        leftovers = cluster.close()
    print(f"killed at the end (nodes, driver): {len(leftovers)} processes")

    output = log.read_text()
    trials = reader.trials()
    reader.close()
    complete = _complete(trials)
    assert len(complete) == N_TRIALS, output[-4000:]
    assert all(complete[n] == record for n, record in seen.items()), "a COMPLETE trial was lost or changed"
    restarted = [t for t in trials if t.user_attrs.get("attempts", 1) >= 2]
    interrupted = [t for t in trials if t.user_attrs.get("status") == "interrupted"]
    assert len(restarted) >= 1 and all(t.state == TrialState.COMPLETE for t in restarted)
    # At most one epoch trained again per fault (each restart is one fault).
    assert all(t.user_attrs["epochs_retrained"] <= t.user_attrs["attempts"] - 1 for t in restarted)
    trained = [json.dumps(t.params, sort_keys=True) for t in trials if "curve" in t.user_attrs]
    assert len(trained) == len(set(trained)), "a parameter set was trained twice"
    nodes = {_node(t) for t in trials if t.state == TrialState.COMPLETE}
    assert len(nodes - {""}) >= 2, f"COMPLETE trials ran on {nodes}"
    assert "resume:" in output, output[-6000:]  # the rerun marked the killed driver's running trials

    # One teacher for the cluster: trained once, under the shared storage path, loaded on both nodes.
    keys = {t.user_attrs.get("teacher_key") for t in trials if t.state == TrialState.COMPLETE}
    assert len(keys) == 1 and None not in keys
    (key,) = keys
    uses = [
        json.loads(line) for line in (shared / ".teachers" / f"{key}.uses.jsonl").read_text().splitlines()
    ]
    assert [u["event"] for u in uses].count("trained") == 1
    assert len({u.get("ray_node_id") for u in uses}) >= 2
    assert not (tmp_path / "runs" / ".teachers").exists()
    print(
        f"cluster faults: {len(trials)} trials, {len(complete)} complete, restarted {len(restarted)} "
        f"(epochs retrained {[t.user_attrs['epochs_retrained'] for t in restarted]}), "
        f"interrupted {len(interrupted)}, COMPLETE lost 0, repeated 0; nodes {sorted(nodes)}; "
        f"teacher trained 1x, used {len(uses)}x on {len({u.get('ray_node_id') for u in uses})} nodes"
    )
