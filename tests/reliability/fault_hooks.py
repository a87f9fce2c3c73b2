"""A pause point in the middle of an epoch, for the fault tests: `run_study.py run` whose trials stop there.

Run as `python fault_hooks.py run STUDY` (the same arguments as `run_study.py`). With ICBENCH_FAULT_DIR
set, the trials whose numbers are in ICBENCH_FAULT_TRIALS (comma-separated, or `all`) pause at the first
optimizer step of epoch 2, that is after epoch 1's checkpoint and after epoch 2's start was recorded:
the worker writes the marker file `$ICBENCH_FAULT_DIR/mid_epoch_<trial number>` ({"pid": the worker's
pid, "trial": its number, "ray_node": its node}) and waits, so the test can kill the worker, the driver
or the node exactly there (or write `$ICBENCH_FAULT_DIR/release` to let every paused trial go on).
Each trial pauses once (a marker already written means it was paused before): run again after the kill,
it trains on. Without ICBENCH_FAULT_DIR this is `run_study.py` unchanged.

The hooks live here, in the tests, not in icbench: they wrap library functions from the outside.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def _selected(number: Any) -> bool:
    chosen = os.environ.get("ICBENCH_FAULT_TRIALS", "all")
    return chosen == "all" or str(number) in chosen.split(",")


def _marker(number: Any) -> Path:
    return Path(os.environ["ICBENCH_FAULT_DIR"]) / f"mid_epoch_{number}"


def _pause(number: Any) -> None:
    """Write the marker (atomically), then wait to be killed, or until the test writes the file
    `$ICBENCH_FAULT_DIR/release` (then training goes on)."""
    from icbench.search.trainable import ray_node

    marker = _marker(number)
    tmp = marker.with_name(f".{marker.name}.{os.getpid()}")
    tmp.write_text(json.dumps({"pid": os.getpid(), "trial": number, **ray_node()}))
    tmp.replace(marker)
    release = marker.parent / "release"
    deadline = time.monotonic() + 3600
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.2)


def wrap_train_candidate(number: Any) -> None:
    """Make `icbench.training.train_candidate` pause at epoch 2's first step in this process (once)."""
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    import icbench.training as training

    real = getattr(training.train_candidate, "__wrapped__", training.train_candidate)
    if not os.environ.get("ICBENCH_FAULT_DIR") or not _selected(number) or _marker(number).exists():
        training.train_candidate = real
        return

    def train_candidate(candidate: Any, *, callback: Any = None, **kwargs: Any) -> dict[str, Any]:
        handles: list[Any] = []

        def pre_step(optimizer: Any, args: Any, kw: Any) -> None:
            _pause(number)

        def on_epoch(record: dict[str, Any]) -> None:
            if callback is not None:
                callback(record)
            if record["epoch"] == 1 and not handles:
                handles.append(register_optimizer_step_pre_hook(pre_step))

        try:
            return real(candidate, callback=on_epoch, **kwargs)
        finally:
            for h in handles:
                h.remove()

    train_candidate.__wrapped__ = real  # type: ignore[attr-defined]
    training.train_candidate = train_candidate  # run_trial imports it from icbench.training


def run_trial(config: dict[str, Any], evaluation: dict[str, Any] | None = None) -> None:
    """The Ray worker function: icbench's own, with the pause wrapped around its training (in this
    process, or in rank 0 of a data-parallel trial's Ray Train workers)."""
    from icbench.search import trainable

    if not hasattr(trainable, "_real_data_parallel_worker"):
        trainable._real_data_parallel_worker = trainable._data_parallel_worker  # type: ignore[attr-defined]
        trainable._data_parallel_worker = data_parallel_worker  # type: ignore[assignment]
    wrap_train_candidate(config.get("trial_number"))
    trainable.run_trial(config, evaluation)


def data_parallel_worker(loop_config: dict[str, Any]) -> None:
    """A Ray Train worker of a data-parallel trial: rank 0 pauses, the others wait for it in DDP."""
    import ray.train

    from icbench.search import trainable

    if ray.train.get_context().get_world_rank() == 0:
        wrap_train_candidate(loop_config["config"].get("trial_number"))
    real = getattr(trainable, "_real_data_parallel_worker", trainable._data_parallel_worker)
    real(loop_config)


def install() -> None:
    """In the driver: the ray executor reads `trainable.run_trial` when it starts Tune."""
    from icbench.search import trainable

    trainable.run_trial = run_trial  # type: ignore[assignment]


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import fault_hooks  # this file as a module, so Ray workers find `fault_hooks.run_trial` by name

    if os.environ.get("ICBENCH_FAULT_DIR"):
        fault_hooks.install()
    sys.argv = [str(REPO / "run_study.py"), *sys.argv[1:]]
    runpy.run_path(str(REPO / "run_study.py"), run_name="__main__")
