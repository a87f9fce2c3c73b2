"""Exact-resume checkpoints of the training loop: what `fit` writes at the end of an epoch and reads back.

A trial's checkpoint folder (`CheckpointFolder`: a local folder or an object-store prefix) holds two
objects, each written whole or not at all:

- `state.pt` (`STATE_NAME`): the latest checkpoint, `torch.save` of a dict that `torch.load(...,
  weights_only=True)` reads back (only tensors, numbers, strings, lists, tuples and dicts):
  format, fingerprint, epoch (completed epochs), step (optimizer steps taken), model (state dict: weights,
  the units' parameters and calibration, BatchNorm buffers), optimizer (SGD state: momentum buffers),
  ema and ema_updates (the averaged model and its update count; None without EMA), generator (the state
  of the data-order and augmentation generator, and its device), rng (Python's, NumPy's, torch's CPU
  and CUDA global generators), result (the curve so far, epochs_done, val_acc), train_time_s (training
  time spent so far, for the time budget) and checkpoint_time_s (time spent writing checkpoints).
  The WLD λ schedule and the learning-rate schedule are functions of step / total_steps, so the step
  restores them. Only the latest checkpoint is kept: each write replaces the last.
- `progress.json` (`PROGRESS_NAME`): {"epoch_started": e, "fingerprint": ...}, written at the start of
  every epoch e (1-based), so a resumed run knows how many epochs beyond its checkpoint had been started
  before the fault: `epochs_retrained`.

A checkpoint is loaded only when its fingerprint (`fingerprint`) equals the run's: a hash of everything
that decides what is trained (the candidate and its recipe, not the device or thread count). Another
candidate's or recipe's checkpoint, or one that cannot be read, is never loaded: the run starts from
epoch 0 and says why (`Resume.note`); nothing is raised.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from icbench.errors import IcbenchError

__all__ = [
    "CHECKPOINT_FORMAT",
    "PROGRESS_NAME",
    "STATE_NAME",
    "UNTRAINED_FIELDS",
    "CheckpointFolder",
    "Resume",
    "fingerprint",
    "get_rng_state",
    "read_resume",
    "set_rng_state",
    "write_progress",
    "write_state",
]

#: Bumped when the checkpoint's contents change, so an older checkpoint is not loaded.
CHECKPOINT_FORMAT = 1
STATE_NAME = "state.pt"
PROGRESS_NAME = "progress.json"

#: Candidate fields that do not change what is trained (where, how fast, what else is measured),
#: left out of the fingerprint so a trial restarted on another node or device count resumes.
UNTRAINED_FIELDS = ("device", "num_threads", "teacher_threads", "cache_dir", "latency", "time_budget_s")


@runtime_checkable
class CheckpointFolder(Protocol):
    """Where one trial's checkpoint lives: a local folder or an object-store prefix.

    `write` must be atomic (a reader sees the whole object or none); `read` returns None when the object
    is absent.
    """

    uri: str

    def read(self, name: str) -> bytes | None: ...

    def write(self, name: str, data: bytes) -> None: ...

    def delete(self, name: str) -> None: ...


def fingerprint(config: Mapping[str, Any], *, drop: Iterable[str] = UNTRAINED_FIELDS) -> str:
    """A short stable hash (SHA-256 of sorted-key JSON, 16 hex digits) of `config` less `drop`."""
    dropped = set(drop)
    kept = {k: v for k, v in config.items() if k not in dropped}
    text = json.dumps(kept, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def get_rng_state() -> dict[str, Any]:
    """The global generators' states (Python, NumPy, torch CPU and CUDA), weights-only loadable."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    state: dict[str, Any] = {
        "python": [int(version), torch.tensor(internal, dtype=torch.int64), gauss],
        "numpy": [str(kind), torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss),
                  float(cached)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
    }  # fmt: skip
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what `get_rng_state` returned."""
    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(int(v) for v in internal.tolist()), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class Resume:
    """What a checkpoint folder held when a run started.

    Attributes:
        state: the checkpoint to continue from (the `state.pt` dict), or None to start from epoch 0.
        note: None, or why a checkpoint in the folder was not used.
        epoch_started: the last epoch (1-based) a run of the same fingerprint had started, or 0.
    """

    state: dict[str, Any] | None
    note: str | None
    epoch_started: int

    @property
    def epoch(self) -> int:
        """Completed epochs the run continues after (0 when it starts afresh)."""
        return int(self.state["epoch"]) if self.state is not None else 0

    @property
    def epochs_retrained(self) -> int:
        """Epochs a fault lost: started beyond the checkpoint the run continues from."""
        return max(0, self.epoch_started - self.epoch)


def _load(data: bytes) -> dict[str, Any]:
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"holds a {type(state).__name__}, not a dict")
    return state


def read_resume(folder: CheckpointFolder, expected: str) -> Resume:
    """Read `folder`'s checkpoint and progress for a run whose fingerprint is `expected`.

    Never raises for the folder's contents: an unreadable, foreign or older-format checkpoint gives
    `Resume(state=None, note=<why>)`.
    """
    epoch_started = 0
    try:
        raw = folder.read(PROGRESS_NAME)
        if raw is not None:
            progress = json.loads(raw.decode())
            if progress.get("fingerprint") == expected:
                epoch_started = int(progress["epoch_started"])
    except (OSError, IcbenchError, ValueError, KeyError, TypeError, AttributeError):
        pass  # progress only counts lost work; an unreadable one counts nothing
    where = f"{folder.uri}/{STATE_NAME}"
    try:
        data = folder.read(STATE_NAME)
    except (OSError, IcbenchError) as e:
        return Resume(
            None, f"checkpoint {where} could not be read ({e}); started from epoch 0", epoch_started
        )
    if data is None:
        return Resume(None, None, epoch_started)
    try:
        state = _load(data)
    except Exception as e:  # noqa: BLE001 - a corrupt file raises anything from pickle to zipfile
        reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        return Resume(
            None, f"checkpoint {where} is unreadable ({reason}); started from epoch 0", epoch_started
        )
    if state.get("format") != CHECKPOINT_FORMAT:
        note = f"checkpoint {where} has format {state.get('format')!r}, not {CHECKPOINT_FORMAT}; started from epoch 0"
        return Resume(None, note, epoch_started)
    if state.get("fingerprint") != expected:
        note = (
            f"checkpoint {where} belongs to another candidate or recipe (fingerprint "
            f"{state.get('fingerprint')!r}, this run {expected!r}); started from epoch 0"
        )
        return Resume(None, note, epoch_started)
    return Resume(state, None, epoch_started)


def write_state(folder: CheckpointFolder, state: Mapping[str, Any]) -> int:
    """Write the checkpoint `state` (replacing the last one); returns its size in bytes."""
    buffer = io.BytesIO()
    torch.save(dict(state), buffer)
    data = buffer.getvalue()
    folder.write(STATE_NAME, data)
    return len(data)


def write_progress(folder: CheckpointFolder, epoch_started: int, fingerprint: str) -> None:
    """Record that epoch `epoch_started` (1-based) has begun."""
    folder.write(
        PROGRESS_NAME, json.dumps({"epoch_started": epoch_started, "fingerprint": fingerprint}).encode()
    )
