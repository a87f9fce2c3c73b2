"""Per-trial resources are checked against what exists, and a trial Ray cannot place is reported.

A local run is refused before Ray starts and before anything is written; a run on an already started Ray
(a cluster, or a local Ray) is refused right after connecting, before the first trial.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import icbench.search.resources as res
from icbench.errors import ConfigError
from icbench.search.checks import check_environment
from icbench.search.schema import load_study, write_study_files

REPO = Path(__file__).resolve().parents[2]
RUN_STUDY = REPO / "run_study.py"

STUDY = """
dataset: {name: synthetic, kwargs: {n: 200, image_size: 16, in_chans: 1}}
family: {name: resnet_cifar, size: resnet8, width: 0.25}
budget: {epochs: 1}
"""
SPACE = """
params:
  unit: {type: categorical, choices: [ic, conv]}
  lr: {type: float, low: 0.03, high: 0.3, log: true}
"""


def _study(tmp_path: Path, execution: str) -> Path:
    return write_study_files(tmp_path, "res", STUDY + f"execution: {execution}\n", SPACE)


def _machine(monkeypatch: pytest.MonkeyPatch, cpus: int, gpus: int) -> None:
    monkeypatch.setattr(res, "machine_cpus", lambda: cpus)
    monkeypatch.setattr(res, "machine_gpus", lambda: gpus)


def _refused(study: Path) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        check_environment(load_study(study))
    return err.value


# ------------------------------------------------------------------------------------------ end to end


def _cli_without_cuda(
    study: Path, cwd: Path
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any], float]:
    """`run_study.py run` in a fresh interpreter that sees no CUDA device; also reports Ray's imports."""
    # An exit handler reports: the command may end with `os._exit`, which runs exit handlers only.
    probe = (
        "import atexit, json, runpy, sys\n"
        f"sys.argv = ['run_study.py', 'run', {str(study)!r}]\n"
        "atexit.register(lambda: print(json.dumps({'ray': 'ray' in sys.modules}), flush=True))\n"
        f"runpy.run_path({str(RUN_STUDY)!r}, run_name='__main__')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""}
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    probe_out = json.loads(done.stdout.strip().splitlines()[-1])
    return done, {"code": done.returncode, **probe_out}, time.perf_counter() - t0


@pytest.mark.parametrize(
    ("execution", "field", "text"),
    [
        ("{gpus_per_trial: 1}", "execution.gpus_per_trial", "1 GPU(s) per trial are asked for"),
        ("{device: cuda}", "execution.device", "device 'cuda' is asked for"),
    ],
    ids=["gpus_per_trial", "device_cuda"],
)
def test_gpu_study_on_a_machine_without_one_is_refused_in_seconds(
    execution: str, field: str, text: str, tmp_path: Path
) -> None:
    """No CUDA device (CUDA_VISIBLE_DEVICES empty): exit 2 with one line, before Ray is even imported,
    and nothing written (no runs/<study>/)."""
    study = _study(tmp_path, execution)
    done, probe, elapsed = _cli_without_cuda(study, tmp_path)
    assert probe["code"] == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: file {study}, field '{field}': "), done.stderr
    assert text in lines[0] and "0 CUDA GPU(s)" in lines[0]
    assert probe["ray"] is False, "Ray was imported before the study was refused"
    assert not (tmp_path / "runs").exists()
    assert elapsed < 60, f"refused only after {elapsed:.0f} s"


# ------------------------------------------------------------------------------------- local checks


def test_cpus_per_trial_above_the_machine_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _machine(monkeypatch, cpus=2, gpus=0)
    e = _refused(_study(tmp_path, "{cpus_per_trial: 3}"))
    assert e.field == "execution.cpus_per_trial" and e.source == str(tmp_path / "res.yaml")
    assert "3 CPU(s) per trial are asked for" in e.detail and "this machine has 2 CPU(s)" in e.detail


def test_cpus_per_trial_above_rays_pool_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _machine(monkeypatch, cpus=8, gpus=0)
    e = _refused(_study(tmp_path, "{cpus_per_trial: 2, num_cpus: 1}"))
    assert e.field == "execution.cpus_per_trial" and "Ray is given execution.num_cpus = 1" in e.detail


def test_gpus_per_trial_above_the_machine_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _machine(monkeypatch, cpus=8, gpus=1)
    e = _refused(_study(tmp_path, "{gpus_per_trial: 2, device: cuda}"))
    assert e.field == "execution.gpus_per_trial" and "1 CUDA GPU(s)" in e.detail
    # num_gpus larger than the machine does not make GPUs appear
    _machine(monkeypatch, cpus=8, gpus=0)
    e = _refused(_study(tmp_path, "{gpus_per_trial: 1, num_gpus: 4}"))
    assert e.field == "execution.gpus_per_trial"


def test_device_cuda_without_cuda_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _machine(monkeypatch, cpus=8, gpus=0)
    e = _refused(_study(tmp_path, "{device: cuda}"))
    assert e.field == "execution.device" and "every trial would fail" in e.detail


def test_requests_that_fit_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _machine(monkeypatch, cpus=4, gpus=1)
    for execution in ("{cpus_per_trial: 4}", "{cpus_per_trial: 0.5, gpus_per_trial: 0.5, device: cuda}"):
        check_environment(load_study(_study(tmp_path, execution)))


def test_a_cluster_run_is_not_checked_against_the_driver_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _machine(monkeypatch, cpus=1, gpus=0)
    execution = (
        f"{{address: auto, storage_path: {tmp_path / 'shared'}, cpus_per_trial: 8, gpus_per_trial: 1}}"
    )
    check_environment(load_study(_study(tmp_path, execution)))


# ----------------------------------------------------------------------------------- cluster checks

NODES = [
    {"Alive": True, "Resources": {"CPU": 4.0, "GPU": 1.0, "memory": 1e9}},
    {"Alive": True, "Resources": {"CPU": 4.0}},
    {"Alive": False, "Resources": {"CPU": 64.0, "GPU": 8.0}},
]


def test_cluster_capacity_is_its_largest_live_node() -> None:
    cap = res.cluster_capacity(NODES, "the Ray cluster at auto")
    assert (cap.cpus, cap.gpus, cap.cuda) == (4.0, 1.0, True)
    assert (
        "2 node(s) with 8 CPU(s) and 1 GPU(s) in all, at most 4 CPU(s) and 1 GPU(s) on one node" in cap.source
    )


def test_a_trial_no_node_can_hold_is_refused(tmp_path: Path) -> None:
    cap = res.cluster_capacity(NODES, "the Ray cluster at auto")
    loaded = load_study(_study(tmp_path, "{cpus_per_trial: 6}"))  # 8 CPUs in all, but 4 per node
    with pytest.raises(ConfigError) as err:
        res.check_capacity(loaded, cap)
    assert err.value.field == "execution.cpus_per_trial" and "the Ray cluster at auto" in err.value.detail
    res.check_capacity(load_study(_study(tmp_path, "{cpus_per_trial: 4, gpus_per_trial: 1}")), cap)


def test_cuda_on_a_cluster_without_gpus_is_refused(tmp_path: Path) -> None:
    cap = res.cluster_capacity(NODES[1:2], "the Ray cluster at auto")
    with pytest.raises(ConfigError) as err:
        res.check_capacity(load_study(_study(tmp_path, "{device: cuda}")), cap)
    assert err.value.field == "execution.device"


# ----------------------------------------------------------------------------------- pending trials


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_a_pending_trial_is_reported_and_reported_again_as_its_wait_doubles() -> None:
    clock, seen = Clock(), []
    watch = res.PendingWatch(seen.append, warn_after_s=60, free=lambda: "0 of 2 CPU free", clock=clock)
    pending = res.TrialView("a", "3 (a)", "PENDING", {"CPU": 4.0, "GPU": 0.0})
    running = res.TrialView("b", "4 (b)", "RUNNING", {"CPU": 1.0})
    for t, expected in ((0, 0), (59, 0), (60, 1), (90, 1), (119, 1), (120, 2), (240, 3)):
        clock.t = t
        watch.update([pending, running])
        assert len(seen) == expected, (t, seen)
    assert seen[0].startswith("warning: trial 3 (a) has been PENDING for 60 s, waiting for 4 CPU")
    assert "Ray has 0 of 2 CPU free" in seen[0]
    assert all("4 (b)" not in line for line in seen)


def test_a_trial_that_starts_is_forgotten() -> None:
    clock, seen = Clock(), []
    watch = res.PendingWatch(seen.append, warn_after_s=10, clock=clock)
    watch.update([res.TrialView("a", "a", "PENDING", {})])
    clock.t = 5
    watch.update([res.TrialView("a", "a", "RUNNING", {})])
    clock.t = 12
    watch.update([res.TrialView("a", "a", "PENDING", {})])  # pending again: its wait starts over
    assert seen == []


@pytest.mark.slow
def test_tune_shows_its_trials_to_the_watch_and_a_connected_ray_is_checked(
    ray_local: None, tmp_path: Path
) -> None:
    """On the session's 2-CPU Ray: a trial asking for 3 CPUs is reported as PENDING by the executor's Tune scheduler, and
    the runner's check after connecting refuses such a study."""
    from ray import tune

    with pytest.raises(ConfigError) as err:
        res.check_connected(load_study(_study(tmp_path, "{cpus_per_trial: 3}")))
    assert err.value.field == "execution.cpus_per_trial" and "the local Ray has 1 node(s)" in err.value.detail

    from icbench.search.executors.ray_tune import _tune_scheduler
    from icbench.search.schedulers.fifo import FIFO

    seen: list[str] = []
    watch = res.PendingWatch(seen.append, warn_after_s=1.0, free=res.ray_free)
    tuner = tune.Tuner(
        tune.with_resources(lambda config: None, {"cpu": 3}),
        tune_config=tune.TuneConfig(
            num_samples=1, time_budget_s=8, scheduler=_tune_scheduler(FIFO(max_t=1, objectives=[]), watch)
        ),
        run_config=tune.RunConfig(storage_path=str(tmp_path / "ray"), verbose=0),
    )
    tuner.fit()
    assert seen, "the pending trial was never reported"
    assert "PENDING" in seen[0] and "3 CPU" in seen[0] and "of 2 CPU free" in seen[0], seen[0]


@pytest.mark.slow
def test_the_runner_checks_the_connected_ray_before_the_first_trial(
    ray_local: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request that passes the machine check but not Ray's pool is refused before any trial."""
    import optuna

    from icbench.search.runner import run_study
    from icbench.search.storage import storage_url

    _machine(monkeypatch, cpus=8, gpus=0)  # the machine check passes; the session's Ray has 2 CPUs
    study = _study(tmp_path, "{cpus_per_trial: 3}")
    with pytest.raises(ConfigError) as err:
        run_study(study, report=False, echo=lambda line: None)
    assert err.value.field == "execution.cpus_per_trial"
    stored = optuna.load_study(study_name="res", storage=storage_url(load_study(study)))
    assert stored.trials == []


@pytest.mark.slow
@pytest.mark.xdist_group("ray")
def test_a_cluster_that_cannot_place_a_trial_is_refused_before_storage_is_written(
    ray_local: None, tmp_path: Path
) -> None:
    """With `execution.address` the runner connects first (here: the session's Ray, 2 CPUs, already
    connected) and checks its nodes before the driver lock and the study database exist."""
    from icbench.search.runner import run_study

    study = _study(tmp_path, f"{{address: auto, storage_path: {tmp_path / 'shared'}, cpus_per_trial: 3}}")
    with pytest.raises(ConfigError) as err:
        run_study(study, report=False, echo=lambda line: None)
    assert err.value.field == "execution.cpus_per_trial"
    assert not (tmp_path / "runs").exists()


def test_workers_of_one_trial_may_span_nodes_but_not_exceed_them(tmp_path: Path) -> None:
    """`workers_per_trial` x per-worker resources: the workers of one trial may sit on different nodes, so
    what counts is how many fit over all live nodes (here 3 CPUs per worker: 1 + 1 on the two 4-CPU nodes)."""
    cap = res.cluster_capacity(NODES, "the Ray cluster at auto")
    res.check_capacity(load_study(_study(tmp_path, "{workers_per_trial: 8, cpus_per_trial: 1}")), cap)
    res.check_capacity(load_study(_study(tmp_path, "{workers_per_trial: 2, cpus_per_trial: 3}")), cap)
    for execution, fit in (("{workers_per_trial: 3, cpus_per_trial: 3}", 2), ("{workers_per_trial: 2, cpus_per_trial: 1, gpus_per_trial: 1}", 1)):  # fmt: skip
        with pytest.raises(ConfigError) as err:
            res.check_capacity(load_study(_study(tmp_path, execution)), cap)
        assert err.value.field == "execution.workers_per_trial", err.value
        assert f"at most {fit} such worker(s) fit at once" in err.value.detail, err.value.detail
