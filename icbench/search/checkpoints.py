"""Where the trials of a study keep their checkpoints, and the driver's view of them.

A trial's checkpoint folder is `<root>/<study>/checkpoints/trial_<Optuna trial number:05d>/`: the root
is the study's runs folder locally, or `execution.storage_path` (a shared folder or an `s3://`-style URI)
on a cluster. What is in it (`state.pt`, `progress.json`) is `icbench.training.resume`'s; the trainable
adds `faults.json` (`trainable._Faults`).

Why a folder of icbench's own, keyed by the Optuna trial number, and not Ray Tune's checkpoints
(`tune.report(checkpoint=...)`, restored by `Tuner.restore`): the Optuna study is the source of truth, and
a new driver starts a new Tune experiment (its ask/tell searcher, checked against the study's fingerprint,
cannot be restored from the pickled searcher state Tune keeps). A folder named by the trial number is
found both by Ray Tune restarting the trial after a worker fault and by a new driver continuing it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from icbench.search.schema import LoadedStudy

#: The checkpoint a trial continues from (`icbench.training.resume.STATE_NAME`).
STATE_NAME = "state.pt"


def checkpoint_root(loaded: LoadedStudy) -> str | None:
    """Where the trials of a study keep their checkpoints (None with `execution.checkpoint_every: 0`).

    Locally: `<runs_dir>/<study>/checkpoints/`. On a cluster (`execution.address`), or whenever
    `execution.storage_path` is an `s3://`-style URI: under it, `<storage_path>/<study>/checkpoints/`.
    Each trial has its own folder under it, named by its Optuna trial number (`checkpoint_folder`).
    """
    from icbench.objectstore import join

    c = loaded.config
    ex = c.execution
    if not int(getattr(ex, "checkpoint_every", 0) or 0):
        return None
    if ex.storage_path and (ex.address or "://" in str(ex.storage_path)):  # a cluster, or object storage
        root = str(ex.storage_path)
        root = root if "://" in root else str(Path(root).expanduser().resolve())
    else:
        root = str(Path(c.runs_dir).resolve())
    return join(root, c.name, "checkpoints")


def checkpoint_folder(root: str, trial_number: int) -> Any:
    """Trial `trial_number`'s checkpoint folder under `root` (an `icbench.objectstore.Folder`).

    Keyed by the Optuna trial number, not by Ray Tune's trial id: Ray Tune retrying the trial and a new
    driver continuing it after a crash (a new Tune experiment) both find it at the same place.
    """
    from icbench.objectstore import Folder, join

    return Folder(join(root, f"trial_{int(trial_number):05d}"))


def has_checkpoint(root: str | None, trial_number: int) -> bool:
    """True when trial `trial_number` left a checkpoint to continue from (never raises)."""
    if root is None:
        return False
    try:
        return bool(checkpoint_folder(root, trial_number).exists(STATE_NAME))
    except Exception:  # an unreachable store: the trial cannot be continued from it
        return False


def remove_checkpoint(root: str | None, trial_number: int) -> None:
    """Delete trial `trial_number`'s checkpoint folder (after its outcome is recorded); never raises."""
    if root is None:
        return
    try:
        folder = checkpoint_folder(root, trial_number)
        for name in folder.names():
            folder.delete(name)
        local = folder.local_path
        if local is not None and Path(local).is_dir():
            Path(local).rmdir()
    except Exception:  # a folder left behind costs space only: it is never read for another trial
        pass
