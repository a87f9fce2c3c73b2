"""The function Ray Tune runs for each trial, in a worker process, and what each trial is told about the
test split (`trial_evaluation`: evaluate it itself, or save its final weights under `weights_dir`).

It never raises for a trial's own failure: an exception, an out-of-memory error, divergence or an exhausted
time budget becomes a final result with `status` and `reason`, so the driver can record *why* the trial
failed (a raised exception would reach the searcher only as `error=True`).
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from icbench.search.checkpoints import checkpoint_folder, checkpoint_root

if TYPE_CHECKING:
    from icbench.search.schema import LoadedStudy

FINAL_KEY = "icbench_final"
#: `evaluation.test` settings (see the study schema): which trials evaluate the test split, and when.
TEST_SETTINGS = ("chosen", "all", "none")


def weights_file(weights_dir: str | Path, trial_number: int) -> str:
    """Where trial `trial_number` saves its final weights under a study's weights folder (a local path,
    or a URI when the folder is in object storage)."""
    from icbench.objectstore import join

    return join(str(weights_dir), f"trial_{int(trial_number):05d}.pt")


def weights_dir(loaded: LoadedStudy) -> str | None:
    """Where the trials of a `chosen` study save their final weights (None for other settings).

    Locally: `<runs_dir>/<study>/weights/`. On a cluster (`execution.address`), or whenever
    `execution.storage_path` is an object-storage URI (`s3://bucket/prefix`): under it,
    `<storage_path>/<study>/weights/`, which every node and the driver reach.
    """
    from icbench.objectstore import is_uri, join

    c = loaded.config
    if c.evaluation.test != "chosen":
        return None
    ex = c.execution
    if ex.storage_path and is_uri(ex.storage_path):
        return join(ex.storage_path, c.name, "weights")
    root = Path(ex.storage_path).expanduser() if ex.address and ex.storage_path else Path(c.runs_dir)
    return str((root / c.name / "weights").resolve())


def trial_evaluation(loaded: LoadedStudy) -> dict[str, Any]:
    """The `evaluation` argument of `trainable.run_trial` for this study's trials: the test setting, the
    weights folder, and where and how often the trials write checkpoints."""
    folder = weights_dir(loaded)
    return {
        "test": loaded.config.evaluation.test,
        "weights_dir": str(folder) if folder else None,
        "checkpoint_root": checkpoint_root(loaded),
        "checkpoint_every": int(getattr(loaded.config.execution, "checkpoint_every", 0) or 0),
        "workers": trial_workers(loaded),
    }


def trial_workers(loaded: LoadedStudy) -> dict[str, Any] | None:
    """A data-parallel trial's Ray Train workers (`run_data_parallel`), or None for one-process trials:
    how many, each one's CPUs and GPUs (`cpus_per_trial`, `gpus_per_trial`), how often Ray Train restarts
    them (`trial_restarts`) and where it keeps its run folders (Ray Tune's storage path)."""
    c = loaded.config
    ex = c.execution
    n = int(getattr(ex, "workers_per_trial", 1) or 1)
    if n <= 1:
        return None
    storage = ex.storage_path or str((Path(c.runs_dir) / c.name / "ray").resolve())
    return {
        "n": n,
        "cpus": ex.cpus_per_trial,
        "gpus": ex.gpus_per_trial,
        "restarts": int(getattr(ex, "trial_restarts", 0) or 0),
        "storage_path": storage,
    }


#: The file a trial keeps beside its checkpoint: the epochs each attempt trained again (`_Faults`).
FAULTS_NAME = "faults.json"


class _Faults:
    """The epochs a trial trained again after faults, summed over its attempts (`faults.json` in its
    checkpoint folder).

    Each attempt records at its start the last epoch a run of the trial had started (`progress.json`)
    and, at its first epoch's end, the epoch it resumed from; an attempt killed before finishing an epoch
    resumed from the same checkpoint as the next one. Attempt i lost max(0, started_i - resumed_i) epochs.
    """

    def __init__(self, folder: Any) -> None:
        self.folder = folder
        try:
            raw = folder.read(FAULTS_NAME)
            self.attempts: list[dict[str, Any]] = json.loads(raw.decode())["attempts"] if raw else []
            progress = folder.read("progress.json")
            started = int(json.loads(progress.decode()).get("epoch_started", 0)) if progress else 0
        except Exception:  # unreadable: count from here on
            self.attempts, started = [], 0
        self.attempts.append({"started": started, "resumed": None})
        self._save()

    def _save(self) -> None:
        try:
            self.folder.write(FAULTS_NAME, json.dumps({"attempts": self.attempts}).encode())
        except Exception:  # the count is a record, never a reason to fail the trial
            pass

    def first_epoch(self, epoch: int) -> None:
        """This attempt finished `epoch`: it resumed from `epoch - 1`."""
        if self.attempts[-1]["resumed"] is None:
            self.attempts[-1]["resumed"] = epoch - 1
            self._save()

    def total(self, resumed_from: int | None) -> int:
        """Epochs trained again over every attempt; `resumed_from`: this attempt's, as training reported it."""
        if resumed_from is not None:
            self.attempts[-1]["resumed"] = int(resumed_from)
        total, later = 0, None
        for a in reversed(self.attempts):
            resumed = a["resumed"] if a["resumed"] is not None else later
            later = resumed
            total += max(0, int(a["started"]) - int(resumed or 0))
        return total

    def count(self) -> int:
        return len(self.attempts)


def _scalar_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool)) or v is None}


def ray_node() -> dict[str, str]:
    """The Ray node this process runs on, by name (`ray start --node-name`, by default its IP address);
    empty outside Ray. Only the name goes into the machine record: a node's id changes every time Ray
    starts, so a resumed local study would otherwise count one machine twice."""
    try:
        import ray

        if not ray.is_initialized():  # not in a Ray worker: asking would start a local Ray (seconds)
            return {}
        node_id = ray.get_runtime_context().get_node_id()
        names = {n["NodeID"]: n.get("NodeName") for n in ray.nodes()}
    except Exception:  # not in a Ray worker, or the GCS is unreachable: the trial goes on without it
        return {}
    return {"ray_node": names.get(node_id) or node_id}


def run_trial(config: dict[str, Any], evaluation: dict[str, Any] | None = None) -> None:
    """The Tune trial: train one candidate (`train_and_report`) in this process, or, with
    `evaluation["workers"]["n"] > 1` (`execution.workers_per_trial`), data-parallel across that many Ray
    Train workers (`run_data_parallel`)."""
    from ray import tune

    evaluation = evaluation or {"test": "all"}
    if int((evaluation.get("workers") or {}).get("n", 1)) > 1:
        run_data_parallel(config, evaluation)
    else:
        train_and_report(config, evaluation, tune.report)


def run_data_parallel(config: dict[str, Any], evaluation: dict[str, Any]) -> None:
    """One Tune trial trained by a Ray Train `TorchTrainer` of `workers["n"]` workers (DDP: gloo on the
    CPU, NCCL on CUDA; `torch.distributed` is initialised by Ray Train before `train_and_report` runs in
    each worker). Every worker reports each epoch; Ray Tune hears rank 0's results (`TuneReportCallback`),
    so rank 0's final metrics are the trial's. A worker that dies makes Ray Train restart the worker group
    (`FailureConfig(max_failures=trial_restarts)`), which resumes from the trial's checkpoint; past that,
    `fit` raises and Ray Tune restarts the whole trial, which resumes from it too.

    The Tune trial itself reserves almost nothing (`executors.ray_tune.trial_resources`): the workers
    hold the trial's CPUs and GPUs, so they are not booked twice.
    """
    import time

    import ray.train
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    workers = evaluation["workers"]
    per_worker = {"CPU": float(workers.get("cpus", 1))}
    if float(workers.get("gpus", 0)):
        per_worker["GPU"] = float(workers["gpus"])
    per_worker.update({k: float(v) for k, v in (workers.get("custom") or {}).items()})
    number = config.get("trial_number")
    trainer = TorchTrainer(
        _data_parallel_worker,
        train_loop_config={"config": config, "evaluation": evaluation},
        scaling_config=ray.train.ScalingConfig(
            num_workers=int(workers["n"]), use_gpu="GPU" in per_worker, resources_per_worker=per_worker
        ),
        run_config=ray.train.RunConfig(
            storage_path=workers.get("storage_path"),
            name=f"trial_{int(number or 0):05d}-{time.strftime('%Y%m%d-%H%M%S')}",
            failure_config=ray.train.FailureConfig(max_failures=int(workers.get("restarts", 0))),
            callbacks=[TuneReportCallback()],
        ),
    )
    trainer.fit()


def _data_parallel_worker(loop_config: dict[str, Any]) -> None:
    """One Ray Train worker of a data-parallel trial."""
    import ray.train

    rank = ray.train.get_context().get_world_rank()
    train_and_report(loop_config["config"], loop_config["evaluation"], ray.train.report, rank=rank)


def train_and_report(
    config: dict[str, Any],
    evaluation: dict[str, Any] | None,
    report: Callable[[dict[str, Any]], Any],
    *,
    rank: int = 0,
) -> None:
    """Train one candidate and `report` each epoch; the last report carries the final metrics.

    The last epoch is not reported on its own: it is merged into the final report, so a scheduler that
    stops trials at `max_t` cannot cut off the final metrics (a trial that stops early ends on a result
    without `icbench_final`, which the searcher records as PRUNED).

    Args:
        config: {"candidate", "cost", "sites", "num_threads", "trial_number"} from the searcher ("sites":
            the basic network's, as `icbench.training.candidate.known_sites` gives them, or None).
        evaluation: {"test": one of `TEST_SETTINGS`, "weights_dir": folder or None, "checkpoint_root":
            folder or URI or None, "checkpoint_every": epochs} (`trial_evaluation`). With "all" the
            trial evaluates the test split after training; otherwise it never reads it, and with a
            weights folder it saves its final weights there for a later test evaluation. None: "all".
            With a checkpoint root the trial checkpoints into `checkpoint_folder(root, trial_number)`
            and, run again (Tune retrying it, or a new driver continuing it), resumes from there.
    """
    import torch

    from icbench.machine import describe_machine
    from icbench.training import train_candidate
    from icbench.training.candidate import remember_sites
    from icbench.training.loop import resolve_device

    candidate: dict[str, Any] = config["candidate"]
    evaluation = evaluation or {"test": "all"}
    weights_dir = evaluation.get("weights_dir")
    number = config.get("trial_number")
    weights = weights_file(weights_dir, number) if weights_dir and number is not None else None
    if config.get("num_threads"):
        torch.set_num_threads(int(config["num_threads"]))
    epochs = int(candidate["epochs"])
    last: dict[str, Any] = {}
    machine: dict[str, Any] | None = None
    resume: dict[str, Any] = {}
    faults: _Faults | None = None
    if evaluation.get("checkpoint_root") and int(evaluation.get("checkpoint_every") or 0) and number is not None:
        folder = checkpoint_folder(evaluation["checkpoint_root"], number)
        resume = {"checkpoint": folder, "checkpoint_every": int(evaluation["checkpoint_every"])}
        faults = _Faults(folder) if rank == 0 else None  # rank 0 alone writes into the folder

    def on_epoch(record: dict[str, Any]) -> None:
        if faults is not None:
            faults.first_epoch(int(record["epoch"]))
        scalar = {k: v for k, v in record.items() if isinstance(v, (int, float))}
        if record["epoch"] < epochs:
            report({**scalar, FINAL_KEY: False})
        else:
            last.update(scalar)

    try:
        if config.get("sites"):  # found by the driver (`Proposer`): this worker does not count them again
            remember_sites(candidate, config["sites"])
        metrics = train_candidate(
            candidate,
            callback=on_epoch,
            cost=config.get("cost"),
            evaluate_test=evaluation.get("test") == "all",
            weights_path=weights,
            **resume,
        )
    except torch.OutOfMemoryError as e:
        final = {"status": "failed", "reason": f"out of memory: {str(e).splitlines()[0] if str(e) else e!r}"}
    except Exception as e:  # any error in user code or training is this trial's failure, not the study's
        tb = traceback.extract_tb(e.__traceback__)
        where = f" at {tb[-1].filename}:{tb[-1].lineno}" if tb else ""
        final = {"status": "failed", "reason": f"{type(e).__name__}: {e}{where}"}
    else:
        machine = metrics.get("machine")
        final = _scalar_metrics(metrics)
        if faults is not None:  # summed over every attempt of this trial, not only this one's
            final["epochs_retrained"] = faults.total(metrics.get("resumed_from_epoch"))
            final["attempts"] = faults.count()
        final["curve"] = metrics.get("curve", [])
        done, target = metrics.get("epochs_done", 0), metrics.get("epochs_target", epochs)
        if metrics.get("diverged"):
            final.update(status="diverged", reason=f"non-finite training loss in epoch {done + 1}")
        elif metrics.get("stop_reason") == "time_budget" or done < target:
            final.update(
                status="failed",
                reason=f"time budget of {candidate.get('time_budget_s')} s exhausted after {done}/{target} epochs",
            )
        else:
            final["status"] = "complete"
    final.setdefault("val_acc", last.get("val_acc", 0.0))
    final.setdefault("epoch", last.get("epoch", 0))
    if machine is None:  # the trial failed before train_candidate returned
        try:
            machine = describe_machine(resolve_device(candidate.get("device", "auto")))
        except Exception:  # an invalid device is this trial's failure, already recorded
            machine = describe_machine("cpu")
    # Tune flattens nested dicts in results: the machine travels as JSON text.
    final["machine"] = json.dumps({**machine, **ray_node()}, sort_keys=True)
    report({**last, **final, FINAL_KEY: True})
