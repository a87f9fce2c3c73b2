"""The WLD teacher: the basic network, trained once per configuration and cached, or read from a file.

Cache layout (`cache_dir`): `<key>.pt` (the state dict, CPU tensors), `<key>.json` (the spec the key
hashes, the teacher's metrics and versions), `<key>.lock`, and `<key>.uses.jsonl` (one line per trial that
trained or loaded the teacher: host, process, Ray node; a log for people, never read back). The key is a hash of everything that
determines the teacher's weights: family, size, width, family options, dataset (root and options),
recipe and teacher seed; not the device or thread count.

Concurrent trials are safe: the first one to need a teacher takes the key's file lock and trains it,
the others wait on the lock and then load it. Files are written under a temporary name and renamed
into place (`os.replace` is atomic), so a half-written checkpoint is never visible, and a reader that
finds both files needs no lock at all.

On a Ray cluster the search puts the cache under the shared `storage_path` (every node mounts it, or it is
an object-storage URI such as `s3://bucket/prefix`, read and written through `icbench.objectstore`), so the
cluster trains one teacher, not one per node. In object storage the lock stays a local file lock
(`_cached_teacher_in_store`): two nodes may then train the same teacher twice, never load half of one. The lock is `filelock`'s `flock(2)` lock, which a shared
filesystem coordinates across machines (NFS turns it into a lock held by the server, released when the
holder's lease lapses if its machine dies); a filesystem without cross-client locks (Lustre without
`-o flock`) would let two nodes train the same teacher at once, both to the same result, one rename last.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import torch
from torch import nn

import icbench
from icbench.checkpoints import check_state_dict, read_state_dict
from icbench.data import Splits
from icbench.errors import CheckpointError, IcbenchError
from icbench.files import publish
from icbench.objectstore import Folder, is_uri, join, local_copy, shown
from icbench.training.config import TEACHER_RECIPE_KEYS, CandidateConfig, TrainConfig
from icbench.training.loop import evaluate, fit, seed_everything

__all__ = [
    "TEACHER_FORMAT",
    "Teacher",
    "TeacherError",
    "cached_teacher",
    "check_state_dict",
    "checkpoint_teacher",
    "read_state_dict",
    "teacher_key",
    "teacher_spec",
    "train_teacher",
]

#: Bumped when the way teachers are trained or stored changes, so old cache entries are not reused.
TEACHER_FORMAT = 1


class TeacherError(IcbenchError):
    """The teacher could not be trained (its loss diverged)."""


@dataclass
class Teacher:
    """A basic network ready to distil from.

    Attributes:
        model: the network with the teacher's weights, on the CPU, in eval mode.
        state_dict: its weights (CPU tensors), for warm-starting a student.
        key: cache key, or "checkpoint:<sha256 prefix>" for a file.
        val_acc: its validation accuracy (from the cache metrics, or measured for a checkpoint).
        source: "trained" (trained by this call), "cache" (read from the cache) or "checkpoint".
        metrics: the cache entry's metrics (empty for a checkpoint).
    """

    model: nn.Module
    state_dict: dict[str, torch.Tensor]
    key: str
    val_acc: float | None
    source: str
    metrics: dict[str, Any] = field(default_factory=dict)


def teacher_spec(config: CandidateConfig, *, size: str | None, recipe: TrainConfig) -> dict[str, Any]:
    """What determines a cached teacher's weights (the input of `teacher_key`).

    Args:
        config: the candidate (its family, size, width, dataset).
        size: the resolved size (the family's default when `config.size` is None).
        recipe: the teacher's recipe (`CandidateConfig.teacher_train_config`); its seed is the
            teacher seed.
    """
    root = config.dataset_root
    return {
        "format": TEACHER_FORMAT,
        "family": config.family,
        "size": size,
        "width": float(config.width),
        "family_kwargs": dict(config.family_kwargs),
        "dataset": config.dataset,
        "dataset_root": str(Path(root).expanduser().resolve()) if root is not None else None,
        "dataset_kwargs": dict(config.dataset_kwargs),
        "recipe": {key: getattr(recipe, key) for key in TEACHER_RECIPE_KEYS},
        "seed": int(recipe.seed),
    }


def teacher_key(spec: Mapping[str, Any]) -> str:
    """A short stable hash of a teacher spec (sorted-key JSON, SHA-256, 16 hex digits)."""
    text = json.dumps(spec, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def train_teacher(
    build_basic: Callable[[], nn.Module], splits: Splits, recipe: TrainConfig
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Train the basic network with `recipe` and return (CPU state dict, metrics).

    Raises:
        TeacherError: the training diverged (nothing is cached then).
    """
    seed_everything(recipe.seed)
    model = build_basic()
    result = fit(model, splits, recipe)
    if result.diverged:
        raise TeacherError(
            f"the teacher (basic network) diverged after {result.epochs_done} epoch(s) at lr={recipe.lr}; "
            "lower the learning rate or give a teacher_checkpoint"
        )
    # No test accuracy: a teacher trains inside a search trial, and trials keep off the test split.
    metrics = {
        "val_acc": result.val_acc,
        "epochs_done": result.epochs_done,
        "train_time_s": result.train_time_s,
        "curve": result.curve,
        "device": str(splits.train.device),
    }
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    return state, metrics


def _atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        publish(tmp, path)  # the mode `open()` gives (mkstemp makes 0600)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _log_use(path: Path, event: str) -> None:
    """Append who trained or loaded a cached teacher: one short line, one `write` in append mode."""
    import socket
    import sys

    line: dict[str, Any] = {
        "event": event,
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }
    ray = sys.modules.get("ray")  # only inside a Ray worker; never imported here
    if ray is not None and ray.is_initialized():
        line["ray_node_id"] = ray.get_runtime_context().get_node_id()
    try:
        with path.open("a") as f:
            f.write(json.dumps(line) + "\n")
    except OSError:  # a read-only cache still serves its teacher
        pass


def cached_teacher(
    spec: Mapping[str, Any],
    cache_dir: str | os.PathLike[str],
    *,
    build_basic: Callable[[], nn.Module],
    splits: Splits,
    recipe: TrainConfig,
) -> Teacher:
    """The teacher for `spec`: read from `cache_dir`, or trained with `recipe` and stored there.

    Args:
        spec: the teacher's spec (`teacher_spec`); hashed into the cache key and stored beside it.
        cache_dir: the cache directory (created if missing).
        build_basic: builds a fresh basic network (every site a plain convolution).
        splits: the training data.
        recipe: how to train it (its seed is the teacher seed).

    Raises:
        TeacherError: training diverged.
        CheckpointError: a cache entry exists but cannot be read or does not match the network.
    """
    from filelock import FileLock

    if is_uri(str(cache_dir)):
        return _cached_teacher_in_store(
            spec, str(cache_dir), build_basic=build_basic, splits=splits, recipe=recipe
        )
    key = teacher_key(spec)
    cache = Path(cache_dir)
    weights, meta = cache / f"{key}.pt", cache / f"{key}.json"
    if not (weights.is_file() and meta.is_file()):
        cache.mkdir(parents=True, exist_ok=True)
        with FileLock(str(cache / f"{key}.lock")):
            if not (weights.is_file() and meta.is_file()):  # another process may have trained it meanwhile
                state, metrics = train_teacher(build_basic, splits, recipe)
                record = {
                    "key": key,
                    "spec": dict(spec),
                    **metrics,
                    "versions": {"icbench": icbench.__version__, "torch": torch.__version__},
                    "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                }
                # Metadata first, weights last: the weights file is what marks the entry complete.
                _atomic_write(meta, lambda f: f.write(json.dumps(record, indent=2, default=str).encode()))
                _atomic_write(weights, lambda f: torch.save(state, f))
                _log_use(cache / f"{key}.uses.jsonl", "trained")
                model = build_basic()
                model.load_state_dict(state)
                return Teacher(model.eval(), state, key, metrics["val_acc"], "trained", record)
    try:
        record = json.loads(meta.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(
            f"cached teacher metadata {meta} is unreadable ({e}); delete it to retrain"
        ) from None
    state = read_state_dict(weights, what="cached teacher")
    model = build_basic()
    check_state_dict(model, state, source=str(weights))
    model.load_state_dict(state)
    _log_use(cache / f"{key}.uses.jsonl", "loaded")
    return Teacher(model.eval(), state, key, record.get("val_acc"), "cache", record)


def _store_lock_path(cache_uri: str, key: str) -> Path:
    """The local lock file for a teacher cached in object storage (one per store folder and key)."""
    folder = hashlib.sha256(cache_uri.encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / "icbench-teacher-locks" / folder / f"{key}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _cached_teacher_in_store(
    spec: Mapping[str, Any],
    cache_uri: str,
    *,
    build_basic: Callable[[], nn.Module],
    splits: Splits,
    recipe: TrainConfig,
) -> Teacher:
    """`cached_teacher` for a cache in object storage (`s3://bucket/prefix/.teachers`).

    The same entries as a local cache (`<key>.json`, then `<key>.pt`, whose presence marks the entry
    complete; each one upload, visible only once complete, so a half-written teacher is never loaded).
    Object storage has no locks: the lock is a local file lock, so the trials of one node train the teacher
    once, but two nodes that both find it missing may each train it (the same spec and seed, so the same
    teacher up to the device's nondeterminism; the last upload wins). Uses go to `<key>.uses/`, one object
    per use (objects cannot be appended to).
    """
    from filelock import FileLock

    key = teacher_key(spec)
    store = Folder(cache_uri)
    weights_name, meta_name = f"{key}.pt", f"{key}.json"
    if not (store.exists(weights_name) and store.exists(meta_name)):
        with FileLock(str(_store_lock_path(cache_uri, key))):
            if not (store.exists(weights_name) and store.exists(meta_name)):
                state, metrics = train_teacher(build_basic, splits, recipe)
                record = {
                    "key": key,
                    "spec": dict(spec),
                    **metrics,
                    "versions": {"icbench": icbench.__version__, "torch": torch.__version__},
                    "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                }
                buffer = io.BytesIO()
                torch.save(state, buffer)
                store.write(meta_name, json.dumps(record, indent=2, default=str).encode())
                store.write(weights_name, buffer.getvalue())
                _log_use_in_store(store, key, "trained")
                model = build_basic()
                model.load_state_dict(state)
                return Teacher(model.eval(), state, key, metrics["val_acc"], "trained", record)
    where = f"{shown(cache_uri)}/{meta_name}"
    try:
        record = json.loads((store.read(meta_name) or b"").decode())
    except (OSError, ValueError) as e:
        raise CheckpointError(
            f"cached teacher metadata {where} is unreadable ({e}); delete it to retrain"
        ) from None
    state = read_weights(
        join(cache_uri, weights_name), what="cached teacher", missing="disappeared while reading"
    )
    model = build_basic()
    check_state_dict(model, state, source=shown(join(cache_uri, weights_name)))
    model.load_state_dict(state)
    _log_use_in_store(store, key, "loaded")
    return Teacher(model.eval(), state, key, record.get("val_acc"), "cache", record)


def read_weights(location: str, *, what: str, missing: str = "does not exist") -> dict[str, torch.Tensor]:
    """The state dict at `location`, a local path or an object-storage URI (downloaded to a temporary copy
    first), read by `read_state_dict`. Errors name `location` as given, never the temporary copy.

    Raises:
        CheckpointError: "<what> <location> <missing>" when there is no file; unreadable or not a state dict.
    """
    with local_copy(location) as local:
        if local is None:
            raise CheckpointError(f"{what} {shown(location)} {missing}")
        try:
            return read_state_dict(local, what=what)
        except CheckpointError as e:
            raise CheckpointError(str(e).replace(str(local), shown(location))) from None


def _log_use_in_store(store: Folder, key: str, event: str) -> None:
    """`_log_use` for a cache in object storage: one small object per use under `<key>.uses/`."""
    import socket

    now = datetime.datetime.now(datetime.timezone.utc)
    line = {
        "event": event,
        "time": now.isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }
    name = f"{key}.uses/{now.strftime('%Y%m%dT%H%M%S%f')}-{socket.gethostname()}-{os.getpid()}.json"
    try:
        store.write(name, json.dumps(line).encode())
    except OSError:  # a read-only store still serves its teacher
        pass


def checkpoint_teacher(
    path: str | os.PathLike[str], *, build_basic: Callable[[], nn.Module], splits: Splits | None = None
) -> Teacher:
    """A teacher read from a state-dict file of the basic network.

    Args:
        path: the checkpoint (read with `weights_only=True`).
        build_basic: builds the basic network the checkpoint must match exactly.
        splits: if given, the teacher's validation accuracy is measured on `splits.val`.

    Raises:
        CheckpointError: unreadable, unsafe, not a state dict, or keys/shapes that do not match.
    """
    with local_copy(str(path)) as local:  # a checkpoint in object storage (s3://...) is downloaded first
        if local is None:
            raise CheckpointError(f"teacher checkpoint {shown(str(path))} does not exist")
        try:
            state = read_state_dict(local, what="teacher checkpoint")
        except CheckpointError as e:  # name the file or object, not a temporary copy
            raise CheckpointError(str(e).replace(str(local), shown(str(path)))) from None
        digest = hashlib.sha256(local.read_bytes()).hexdigest()[:16]
    model = build_basic()
    check_state_dict(model, state, source=f"teacher checkpoint {shown(str(path))}")
    model.load_state_dict(state)
    val_acc = None
    if splits is not None:
        device = splits.val.device
        val_acc = evaluate(model.to(device), splits.val)
        model.to("cpu")
    return Teacher(model.eval(), state, f"checkpoint:{digest}", val_acc, "checkpoint")
