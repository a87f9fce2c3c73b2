"""The one training loop every candidate, teacher and benchmark runs.

SGD with (Nesterov) momentum, a per-batch learning-rate schedule after a linear warm-up (`lr_at`),
weight decay on weights only, label smoothing, an optional moving average of the weights, optionally
`torch.compile`, and on CUDA bf16 autocast with channels_last tensors. The
loop is seeded (on the CPU two runs with the same seed give identical numbers), stops a run whose loss
is no longer finite (marked diverged; nothing is raised) or whose wall-clock budget is spent, and calls
a callback after every epoch.

Per-batch overhead is kept small: on CUDA the loss is accumulated on the device and checked for
finiteness every `_CHECK_EVERY` steps, so the host never waits for the GPU on an ordinary step; on the
CPU reading the loss costs nothing, so it is checked every step (with several data-parallel workers the
check is a collective, every `_CHECK_EVERY` steps on any device).

`fit` also resumes exactly from a checkpoint (`icbench.training.resume`) and trains data-parallel over a
`torch.distributed` process group; both are described in its docstring.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from icbench.data import Split, Splits, TensorSplit
from icbench.errors import ConfigError
from icbench.recipe import SCHEDULES
from icbench.training.config import TrainConfig
from icbench.training.resume import (
    CHECKPOINT_FORMAT,
    CheckpointFolder,
    Resume,
    get_rng_state,
    read_resume,
    set_rng_state,
    write_progress,
    write_state,
)
from icbench.training.resume import fingerprint as resume_fingerprint
from icbench.units import unit_parameters

__all__ = [
    "EpochCallback",
    "FitResult",
    "Objective",
    "SCHEDULES",
    "cosine_lr",
    "lr_at",
    "evaluate",
    "fit",
    "num_threads",
    "param_groups",
    "prepare_model",
    "resolve_device",
    "seed_everything",
]

#: loss(logits, images, labels, progress) with progress ∈ [0, 1) the fraction of training done.
Objective = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor]
#: Called after every epoch with {"epoch", "train_loss", "val_acc", "epoch_time_s"}.
EpochCallback = Callable[[dict[str, Any]], None]

_CHECK_EVERY = 32  # CUDA steps between finiteness checks (each one waits for the GPU)


def resolve_device(device: str | torch.device) -> torch.device:
    """ "auto" → CUDA if available, else CPU; anything else as torch reads it."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (model initialisation reads torch's)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def num_threads(n: int | None) -> Iterator[None]:
    """Run the block with `torch.set_num_threads(n)` (None: unchanged), then restore the old value.

    Concurrent trials on one machine must each use their CPU share, or they oversubscribe the cores
    and all run slower than one at a time (DESIGN.md §11).
    """
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _memory_format(device: torch.device) -> torch.memory_format:
    # channels_last lets cuDNN use its NHWC tensor-core kernels under bf16; on the CPU NCHW is faster.
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format


def _autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Move `model` to `device` (channels_last on CUDA), in place; returns it."""
    return model.to(device=device, memory_format=_memory_format(device))


def param_groups(model: nn.Module, weight_decay: float, unit_lr_mult: float = 1.0) -> list[dict[str, Any]]:
    """Optimizer groups: weight decay on weights (≥ 2-D), none on 1-D parameters; the units' own
    parameters apart, at `unit_lr_mult` times the learning rate (each group's `lr_mult`).

    1-D parameters are BatchNorm scales and shifts, biases, and the units' per-channel parameters
    (IC's a and θ): decaying them only pulls the network towards a different function, not a simpler one.
    The units' groups follow the same decay rule (SE's two small FC weights are decayed), so at
    `unit_lr_mult` 1 every parameter gets exactly the update it got when all shared one learning rate.
    """
    own = {id(p) for p in unit_parameters(model)}
    buckets: dict[tuple[bool, bool], list[nn.Parameter]] = {
        (u, d): [] for u in (False, True) for d in (True, False)
    }
    for p in model.parameters():
        if p.requires_grad:
            buckets[(id(p) in own, p.ndim > 1)].append(p)
    groups = [{"params": buckets[(False, True)], "weight_decay": weight_decay, "lr_mult": 1.0}]
    for (is_unit, decayed), params in buckets.items():
        if params and (is_unit, decayed) != (False, True):
            groups.append(
                {"params": params, "weight_decay": weight_decay if decayed else 0.0,
                 "lr_mult": unit_lr_mult if is_unit else 1.0}
            )  # fmt: skip
    return groups


def cosine_lr(step: int, total_steps: int, warmup_steps: int, base_lr: float) -> float:
    """Learning rate of (0-based) `step`: linear warm-up to `base_lr`, then cosine decay towards 0."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * t))


def lr_at(step: int, total_steps: int, warmup_steps: int, base_lr: float, schedule: str) -> float:
    """Learning rate of (0-based) `step` of `total_steps`.

    - "linear": linear warm-up over the first `warmup_steps` steps (step k has base_lr·(k+1)/warmup),
      then straight down, so that the step after the last would have 0 (the fast CIFAR-10 recipes'
      triangle);
    - "cosine": the same warm-up, then half a cosine towards 0;
    - "onecycle": PyTorch's `OneCycleLR` (cosine annealing, div_factor 25, final_div_factor 1e4) with
      pct_start = warmup_steps / total_steps: half a cosine from base_lr/25 up to base_lr at step
      warmup_steps − 1, then half a cosine down to base_lr/25e4 at the last step.
    """
    if schedule == "onecycle":
        start, end, peak = base_lr / 25.0, base_lr / 25e4, warmup_steps - 1
        if peak <= 0:
            return _cos_between(base_lr, end, step / max(1, total_steps - 1))
        if step <= peak:
            return _cos_between(start, base_lr, step / peak)
        return _cos_between(base_lr, end, (step - peak) / max(1, total_steps - 1 - peak))
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if schedule == "linear":
        return base_lr * (total_steps - step) / max(1, total_steps - warmup_steps)
    if schedule == "cosine":
        return cosine_lr(step, total_steps, warmup_steps, base_lr)
    raise ValueError(f"unknown schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")


def _cos_between(start: float, end: float, t: float) -> float:
    """Half a cosine from `start` (t = 0) to `end` (t = 1)."""
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * t))


class _EMA:
    """Exponential moving average of a model's parameters and buffers, evaluated instead of the model.

    BatchNorm's running statistics are averaged like the weights (timm's ModelEmaV2 does the same), so
    the averaged network is consistent. `decay` per step; the first steps use min(decay, (1+k)/(10+k))
    so a short run is not dominated by the random initialisation.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        import copy

        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        ema = list(self.model.state_dict().values())
        live = list(model.state_dict().values())
        floats = [(e, v) for e, v in zip(ema, live, strict=True) if e.dtype.is_floating_point]
        torch._foreach_lerp_([e for e, _ in floats], [v for _, v in floats], 1.0 - d)
        for e, v in zip(ema, live, strict=True):
            if not e.dtype.is_floating_point:
                e.copy_(v)


def evaluate(model: nn.Module, split: Split, *, batch_size: int = 512) -> float:
    """Top-1 accuracy of `model` on `split`, in eval mode (one host-device sync at the end)."""
    return _accuracy(model, split, batch_size, _Workers())


def _cross_entropy(label_smoothing: float) -> Objective:
    def loss(logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor, progress: float) -> torch.Tensor:
        return F.cross_entropy(logits, y, label_smoothing=label_smoothing)

    return loss


@dataclass
class FitResult:
    """What `fit` reports.

    Attributes:
        val_acc: validation accuracy of the final model (NaN when diverged).
        epochs_done: completed epochs (those of a run it resumed included).
        curve: one record per completed epoch: epoch (1-based), train_loss (mean over the epoch's
            batches; with several workers, over every worker's batches), val_acc, epoch_time_s
            (training and the validation pass).
        diverged: the loss became non-finite.
        stop_reason: None (full budget), "diverged" or "time_budget" (checked after every step; a
            run stopped inside an epoch is validated once more, but that epoch is not recorded).
        train_time_s: wall time of the loop, evaluations included (with a resumed run's earlier time).
        resumed_from_epoch: the checkpoint's epoch the run continued after (0: started afresh).
        epochs_retrained: epochs started beyond that checkpoint before the run was stopped: the
            work a fault lost (`icbench.training.resume`).
        checkpoint_note: None, or why a checkpoint in the folder was not used.
        checkpoint_time_s: time spent writing checkpoints and progress records (a resumed run's
            earlier writes included); on workers other than rank 0, 0.
        checkpoint_bytes: size of the last checkpoint written by this call (0 if none).
    """

    val_acc: float
    epochs_done: int
    curve: list[dict[str, Any]] = field(default_factory=list)
    diverged: bool = False
    stop_reason: str | None = None
    train_time_s: float = 0.0
    resumed_from_epoch: int = 0
    epochs_retrained: int = 0
    checkpoint_note: str | None = None
    checkpoint_time_s: float = 0.0
    checkpoint_bytes: int = 0


def _generator(split: Split, seed: int) -> torch.Generator:
    # Tensor splits draw order and augmentation on their own device; DataLoaders need a CPU generator.
    device = split.device if isinstance(split, TensorSplit) else torch.device("cpu")
    return torch.Generator(device=device).manual_seed(seed)


def _to_cpu(obj: Any) -> Any:
    """`obj` with every tensor copied to the CPU (a checkpoint readable on any device)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


@dataclass
class _Workers:
    """The data-parallel group `fit` trains over (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world: int = 1

    def sum(self, values: list[float] | torch.Tensor, device: torch.device) -> list[float]:
        """Element-wise sum over the workers (the values themselves with one worker)."""
        t = values if isinstance(values, torch.Tensor) else torch.tensor(values, dtype=torch.float64)
        if self.world == 1:
            return [float(v) for v in t.reshape(-1).tolist()]
        import torch.distributed as dist

        t = t.detach().to(device=device, dtype=torch.float64).reshape(-1).clone()
        dist.all_reduce(t)
        return [float(v) for v in t.tolist()]

    def any(self, flag: bool, device: torch.device) -> bool:
        return self.sum([float(flag)], device)[0] > 0


def _workers(distributed: bool, config: TrainConfig, device: torch.device) -> _Workers:
    if config.sync_bn and not distributed:
        raise ConfigError(
            "sync_bn synchronises BatchNorm across workers: it needs several workers", field="sync_bn"
        )
    if not distributed:
        return _Workers()
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise ConfigError("data-parallel training needs an initialised torch.distributed process group")
    workers = _Workers(dist.get_rank(), dist.get_world_size())
    if config.batch_size % workers.world:
        raise ConfigError(
            f"batch_size {config.batch_size} (the global batch) must divide by the {workers.world} workers",
            field="batch_size",
        )
    if config.sync_bn and workers.world > 1 and device.type != "cuda":
        raise ConfigError(
            "sync_bn needs CUDA: torch's SyncBatchNorm does not run on the CPU (gloo); leave it off",
            field="sync_bn",
        )
    return workers


def _correct_total(model: nn.Module, split: Split, batch_size: int, workers: _Workers) -> list[float]:
    """(correct, total) over `split`, each worker taking every world-th batch, summed over the workers."""
    was_training = model.training
    model.eval()
    device = split.device
    correct = torch.zeros((), dtype=torch.long, device=device)
    total = 0
    with torch.no_grad(), _autocast(device):
        for i, (x, y) in enumerate(split.batches(batch_size, memory_format=_memory_format(device))):
            if i % workers.world == workers.rank:
                correct += (model(x).argmax(dim=1) == y).sum()
                total += y.shape[0]
    model.train(was_training)
    return workers.sum([float(correct.item()), float(total)], device)


def _accuracy(model: nn.Module, split: Split, batch_size: int, workers: _Workers) -> float:
    correct, total = _correct_total(model, split, batch_size, workers)
    return correct / max(1.0, total)


def fit(
    model: nn.Module,
    splits: Splits,
    config: TrainConfig,
    *,
    objective: Objective | None = None,
    callback: EpochCallback | None = None,
    eval_batch_size: int | None = None,
    checkpoint: CheckpointFolder | None = None,
    checkpoint_every: int = 1,
    fingerprint: str | None = None,
    on_fresh_start: Callable[[nn.Module], Any] | None = None,
    distributed: bool = False,
) -> FitResult:
    """Train `model` on `splits.train`, validating on `splits.val` after every epoch.

    The model is moved to the splits' device (channels_last on CUDA) and left there, trained.

    Checkpoints: with a `checkpoint` folder the run first looks there. A checkpoint of the same
    `fingerprint` is continued from exactly (weights, momentum, step, data-order and augmentation
    generator, global generators, EMA, curve, time spent; see `icbench.training.resume`): on the CPU
    with one thread the resumed run ends bit for bit where an uninterrupted one would. Otherwise the run
    starts from epoch 0 (a foreign or unreadable checkpoint is never loaded; `checkpoint_note` says why).
    Every `checkpoint_every`-th epoch and the last one then write a checkpoint (replacing the last one)
    before `callback` is called, and every epoch's start is recorded (`progress.json`), so a later run
    knows how many epochs a fault cost (`epochs_retrained`).

    Data-parallel (`distributed=True` in a process group of N > 1 workers, one `fit` per worker):
    `config.batch_size` is the global batch. Every worker draws the same global batch (one generator
    seeded alike, the same augmentation) and trains on its slice [r·B/N, (r+1)·B/N) under
    `DistributedDataParallel`, which averages the gradients: the gradient is the mean over the global
    batch, as with one worker, so the learning rate is the one-worker learning rate for the same global
    batch (no scaling). BatchNorm normalises each worker's slice (B/N samples) unless `sync_bn`
    (CUDA only) synchronises it; running statistics are rank 0's (DDP broadcasts buffers). train_loss
    and validation are over all workers, so every worker returns the same curve. Only rank 0 writes the
    checkpoint and progress; every worker reads the checkpoint to resume.

    Args:
        model: the network (its initialisation is the caller's: seed before building it).
        splits: data from `icbench.data.load_dataset`, held on the training device.
        config: the recipe.
        objective: the loss (default: cross-entropy with the recipe's label smoothing).
        callback: called after every epoch with the epoch's record; may raise to abort the run.
        eval_batch_size: batch size of the validation passes (default 2 × batch_size).
        checkpoint: where the run's checkpoint lives (None: no checkpoints).
        checkpoint_every: epochs between checkpoints (0: none written; the folder is still read).
        fingerprint: what identifies the run's checkpoints (default: a hash of `config` less the
            thread count and time budget); the number of workers is always added.
        on_fresh_start: called with the model (on its device) before training when the run starts from
            epoch 0, not when it resumes (e.g. calibrating the units: the checkpoint restores them).
        distributed: train data-parallel over the initialised default process group.

    Returns:
        A `FitResult`. Divergence and a spent time budget end the run early without raising.

    Raises:
        ConfigError: checkpoint_every < 0, a global batch that does not divide by the workers, sync_bn
            without several workers or on the CPU, `distributed` without a process group.
    """
    if int(checkpoint_every) < 0:
        raise ConfigError(f"checkpoint_every must be >= 0, got {checkpoint_every}", field="checkpoint_every")
    device = splits.train.device
    fmt = _memory_format(device)
    workers = _workers(distributed, config, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if fingerprint is None:
        fingerprint = resume_fingerprint(dataclasses.asdict(config), drop=("num_threads", "time_budget_s"))
    fingerprint = resume_fingerprint({"run": fingerprint, "workers": workers.world})
    writing = checkpoint is not None and checkpoint_every > 0 and workers.rank == 0
    with num_threads(config.num_threads):
        resume = _read_checkpoint(model, checkpoint, fingerprint, workers, device)
        state = resume.state
        if state is None and on_fresh_start is not None:
            prepare_model(model, device)
            on_fresh_start(model)
        seed_everything(config.seed)
        prepare_model(model, device)
        if config.sync_bn:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        loss_fn = objective or _cross_entropy(config.label_smoothing)
        optimizer = torch.optim.SGD(
            param_groups(model, config.weight_decay, config.unit_lr_mult),
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.nesterov,
        )
        gen = _generator(splits.train, config.seed)
        steps_per_epoch = splits.train.num_batches(config.batch_size, drop_last=True)
        total_steps = max(1, config.epochs * steps_per_epoch)
        if config.warmup_epochs is not None:
            warmup_steps = int(round(config.warmup_epochs * steps_per_epoch))
        else:
            warmup_steps = int(round(config.warmup_fraction * total_steps))
        warmup_steps = min(warmup_steps, total_steps)
        ema = _EMA(model, config.ema_decay) if config.ema_decay > 0 else None
        evaluated = ema.model if ema is not None else model
        eval_bs = eval_batch_size or 2 * config.batch_size
        on_cpu = device.type == "cpu"

        result = FitResult(
            val_acc=float("nan"),
            epochs_done=0,
            resumed_from_epoch=resume.epoch,
            epochs_retrained=resume.epochs_retrained,
            checkpoint_note=resume.note,
        )
        step, earlier_s, first_epoch = 0, 0.0, 0
        if state is not None:
            optimizer.load_state_dict(state["optimizer"])
            gen.set_state(state["generator"])
            if ema is not None:
                ema.model.load_state_dict(state["ema"])
                ema.updates = int(state["ema_updates"])
            step, first_epoch = int(state["step"]), int(state["epoch"])
            earlier_s = float(state["train_time_s"])
            result.curve = list(state["result"]["curve"])
            result.epochs_done = int(state["result"]["epochs_done"])
            result.val_acc = float(state["result"]["val_acc"])
            if workers.rank == 0:
                result.checkpoint_time_s = float(state["checkpoint_time_s"])
            set_rng_state(state["rng"])  # last: nothing above may draw from the global generators
        net: nn.Module = model
        if workers.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = None
            if device.type == "cuda":
                ids = [device.index if device.index is not None else torch.cuda.current_device()]
            net = DistributedDataParallel(model, device_ids=ids)
        # Compiled once per run: drop_last keeps every training batch one shape, so nothing recompiles.
        # Validation runs the eager module (its last batch is ragged).
        forward = torch.compile(net) if config.compile else net
        share = config.batch_size // workers.world
        lo, hi = workers.rank * share, (workers.rank + 1) * share

        start = time.perf_counter()
        deadline = start + config.time_budget_s - earlier_s if config.time_budget_s else math.inf
        partial = False  # stopped inside an epoch: the model trained past the last record
        for epoch in range(first_epoch, config.epochs):
            epoch_start = time.perf_counter()
            if writing:
                assert checkpoint is not None
                write_progress(checkpoint, epoch + 1, fingerprint)
                result.checkpoint_time_s += time.perf_counter() - epoch_start
            net.train()
            loss_sum = torch.zeros((), device=device)
            n_steps = 0
            batches = splits.train.batches(
                config.batch_size,
                shuffle=True,
                augment=config.augment,
                drop_last=True,
                generator=gen,
                memory_format=fmt,
            )
            for x, y in batches:
                if workers.world > 1:
                    x, y = x[lo:hi], y[lo:hi]
                lr = lr_at(step, total_steps, warmup_steps, config.lr, config.schedule)
                for group in optimizer.param_groups:
                    group["lr"] = lr * group["lr_mult"]
                with _autocast(device):
                    logits = forward(x)
                    loss = loss_fn(logits.float(), x, y, step / total_steps)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if ema is not None:
                    ema.update(model)
                step += 1
                n_steps += 1
                loss_sum += loss.detach()
                # One worker on the CPU: reading the loss is free, so every step. Several workers decide
                # together (a collective), every _CHECK_EVERY steps, from the loss summed since the start.
                checking = (on_cpu and workers.world == 1) or n_steps % _CHECK_EVERY == 0
                if workers.world == 1:
                    if checking and not math.isfinite(float(loss.item() if on_cpu else loss_sum.item())):
                        result.diverged, result.stop_reason = True, "diverged"
                        break
                    late = time.perf_counter() > deadline
                elif checking:  # every worker must stop at the same step: decide together
                    total_loss, n_late = workers.sum(
                        [float(loss_sum), float(time.perf_counter() > deadline)], device
                    )
                    if not math.isfinite(total_loss):
                        result.diverged, result.stop_reason = True, "diverged"
                        break
                    late = n_late > 0
                else:
                    late = False
                if late:
                    result.stop_reason, partial = "time_budget", True
                    break
            if result.stop_reason is None:
                epoch_loss = workers.sum([float(loss_sum.item())], device)[0] / workers.world
                if not math.isfinite(epoch_loss):
                    result.diverged, result.stop_reason = True, "diverged"
            if result.stop_reason is not None:
                break
            val_acc = _accuracy(evaluated, splits.val, eval_bs, workers)
            record = {
                "epoch": epoch + 1,
                "train_loss": epoch_loss / max(1, n_steps),
                "val_acc": val_acc,
                "epoch_time_s": time.perf_counter() - epoch_start,
            }
            result.curve.append(record)
            result.epochs_done = epoch + 1
            result.val_acc = val_acc
            if writing and ((epoch + 1) % checkpoint_every == 0 or epoch + 1 == config.epochs):
                assert checkpoint is not None
                t0 = time.perf_counter()
                result.checkpoint_bytes = write_state(
                    checkpoint,
                    _checkpoint_state(
                        fingerprint, epoch + 1, step, model, optimizer, ema, gen, result,
                        earlier_s + t0 - start, result.checkpoint_time_s,
                    ),
                )  # fmt: skip
                result.checkpoint_time_s += time.perf_counter() - t0
            if callback is not None:
                callback(dict(record))
            if epoch + 1 < config.epochs and workers.any(time.perf_counter() > deadline, device):
                result.stop_reason = "time_budget"
                break
        if ema is not None and not result.diverged:
            model.load_state_dict(ema.model.state_dict())  # the trained model is the averaged one
        if partial:
            result.val_acc = _accuracy(model, splits.val, eval_bs, workers)
        if result.diverged:
            result.val_acc = float("nan")
        result.train_time_s = earlier_s + time.perf_counter() - start
    return result


def _read_checkpoint(
    model: nn.Module,
    folder: CheckpointFolder | None,
    fingerprint: str,
    workers: _Workers,
    device: torch.device,
) -> Resume:
    """The checkpoint to continue from, its weights loaded into `model`; every worker the same one."""
    resume = read_resume(folder, fingerprint) if folder is not None else Resume(None, None, 0)
    if folder is not None and resume.state is not None:
        misfit = _misfit(model, resume.state.get("model"))
        if misfit is not None:  # checked first: a failed load_state_dict leaves the model half overwritten
            note = f"checkpoint {folder.uri} does not fit the network ({misfit}); started from epoch 0"
            resume = Resume(None, note, resume.epoch_started)
    if workers.world > 1:
        # Workers that read different checkpoints (one written between two reads, a flaky store) would
        # train different models: then every worker starts afresh (decided before any weights are loaded).
        epoch = float(resume.epoch if resume.state is not None else -1)
        total, squares = workers.sum([epoch, epoch * epoch], device)
        if squares * workers.world != total * total:  # all equal iff the variance is 0 (same on every worker)
            where = folder.uri if folder is not None else "their checkpoint folders"
            note = f"the workers read different checkpoints from {where}; started from epoch 0"
            resume = Resume(None, note, resume.epoch_started)
    if resume.state is not None:
        model.load_state_dict(resume.state["model"])
    return resume


def _misfit(model: nn.Module, state: Any) -> str | None:
    """None if `state` is a state dict of `model` (same keys and shapes), else what differs."""
    if not isinstance(state, dict):
        return "no model weights"
    own = model.state_dict()
    if set(own) != set(state):
        diff = sorted(set(own) ^ set(state))
        return f"{len(diff)} key(s) differ, e.g. {diff[0]!r}"
    for key, value in own.items():
        if not isinstance(state[key], torch.Tensor) or state[key].shape != value.shape:
            return f"{key!r} has another shape"
    return None


def _checkpoint_state(
    fingerprint: str,
    epoch: int,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    ema: _EMA | None,
    gen: torch.Generator,
    result: FitResult,
    train_time_s: float,
    checkpoint_time_s: float,
) -> dict[str, Any]:
    """Everything `fit` needs to continue after `epoch` as if never stopped (`icbench.training.resume`)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "fingerprint": fingerprint,
        "epoch": epoch,
        "step": step,
        "model": _to_cpu(model.state_dict()),
        "optimizer": _to_cpu(optimizer.state_dict()),
        "ema": _to_cpu(ema.model.state_dict()) if ema is not None else None,
        "ema_updates": ema.updates if ema is not None else 0,
        "generator": gen.get_state(),
        "generator_device": str(gen.device),
        "rng": get_rng_state(),
        "result": {"curve": list(result.curve), "epochs_done": result.epochs_done, "val_acc": result.val_acc},
        "train_time_s": train_time_s,
        "checkpoint_time_s": checkpoint_time_s,
    }
