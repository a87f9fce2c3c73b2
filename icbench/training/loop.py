"""The one training loop every candidate, teacher and benchmark runs.

SGD with (Nesterov) momentum, a per-batch learning-rate schedule after a linear warm-up (`lr_at`),
weight decay on weights only, label smoothing, an optional moving average of the weights, optionally
`torch.compile`, and on CUDA bf16 autocast with channels_last tensors. The
loop is seeded (on the CPU two runs with the same seed give identical numbers), stops a run whose loss
is no longer finite (marked diverged; nothing is raised) or whose wall-clock budget is spent, and calls
a callback after every epoch.

Per-batch overhead is kept small: on CUDA the loss is accumulated on the device and checked for
finiteness every `_CHECK_EVERY` steps, so the host never waits for the GPU on an ordinary step; on the
CPU reading the loss costs nothing, so it is checked every step.
"""

from __future__ import annotations

import contextlib
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
from icbench.recipe import SCHEDULES
from icbench.training.config import TrainConfig
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


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, *, batch_size: int = 512) -> float:
    """Top-1 accuracy of `model` on `split`, in eval mode (one host-device sync at the end)."""
    was_training = model.training
    model.eval()
    device = split.device
    correct = torch.zeros((), dtype=torch.long, device=device)
    total = 0
    with _autocast(device):
        for x, y in split.batches(batch_size, memory_format=_memory_format(device)):
            correct += (model(x).argmax(dim=1) == y).sum()
            total += y.shape[0]
    model.train(was_training)
    return float(correct.item()) / max(1, total)


def _cross_entropy(label_smoothing: float) -> Objective:
    def loss(logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor, progress: float) -> torch.Tensor:
        return F.cross_entropy(logits, y, label_smoothing=label_smoothing)

    return loss


@dataclass
class FitResult:
    """What `fit` reports.

    Attributes:
        val_acc: validation accuracy of the final model (NaN when diverged).
        epochs_done: completed epochs.
        curve: one record per completed epoch: epoch (1-based), train_loss (mean over the epoch's
            batches), val_acc, epoch_time_s (training and the validation pass).
        diverged: the loss became non-finite.
        stop_reason: None (full budget), "diverged" or "time_budget" (checked after every step; a
            run stopped inside an epoch is validated once more, but that epoch is not recorded).
        train_time_s: wall time of the loop, evaluations included.
    """

    val_acc: float
    epochs_done: int
    curve: list[dict[str, Any]] = field(default_factory=list)
    diverged: bool = False
    stop_reason: str | None = None
    train_time_s: float = 0.0


def _generator(split: Split, seed: int) -> torch.Generator:
    # Tensor splits draw order and augmentation on their own device; DataLoaders need a CPU generator.
    device = split.device if isinstance(split, TensorSplit) else torch.device("cpu")
    return torch.Generator(device=device).manual_seed(seed)


def fit(
    model: nn.Module,
    splits: Splits,
    config: TrainConfig,
    *,
    objective: Objective | None = None,
    callback: EpochCallback | None = None,
    eval_batch_size: int | None = None,
) -> FitResult:
    """Train `model` on `splits.train`, validating on `splits.val` after every epoch.

    The model is moved to the splits' device (channels_last on CUDA) and left there, trained.

    Args:
        model: the network (its initialisation is the caller's: seed before building it).
        splits: data from `icbench.data.load_dataset`, held on the training device.
        config: the recipe.
        objective: the loss (default: cross-entropy with the recipe's label smoothing).
        callback: called after every epoch with the epoch's record; may raise to abort the run.
        eval_batch_size: batch size of the validation passes (default 2 × batch_size).

    Returns:
        A `FitResult`. Divergence and a spent time budget end the run early without raising.
    """
    device = splits.train.device
    fmt = _memory_format(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    with num_threads(config.num_threads):
        seed_everything(config.seed)
        prepare_model(model, device)
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
        # Compiled once per run: drop_last keeps every training batch one shape, so nothing recompiles.
        # Validation runs the eager module (its last batch is ragged).
        forward = torch.compile(model) if config.compile else model
        ema = _EMA(model, config.ema_decay) if config.ema_decay > 0 else None
        evaluated = ema.model if ema is not None else model
        eval_bs = eval_batch_size or 2 * config.batch_size
        on_cpu = device.type == "cpu"

        result = FitResult(val_acc=float("nan"), epochs_done=0)
        start = time.perf_counter()
        deadline = start + config.time_budget_s if config.time_budget_s else math.inf
        step = 0
        partial = False  # stopped inside an epoch: the model trained past the last record
        for epoch in range(config.epochs):
            epoch_start = time.perf_counter()
            model.train()
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
                checking = on_cpu or n_steps % _CHECK_EVERY == 0
                if checking and not math.isfinite(float(loss.item() if on_cpu else loss_sum.item())):
                    result.diverged, result.stop_reason = True, "diverged"
                    break
                if time.perf_counter() > deadline:
                    result.stop_reason, partial = "time_budget", True
                    break
            if result.stop_reason is None and not math.isfinite(float(loss_sum.item())):
                result.diverged, result.stop_reason = True, "diverged"
            if result.stop_reason is not None:
                break
            val_acc = evaluate(evaluated, splits.val, batch_size=eval_bs)
            record = {
                "epoch": epoch + 1,
                "train_loss": float(loss_sum.item()) / max(1, n_steps),
                "val_acc": val_acc,
                "epoch_time_s": time.perf_counter() - epoch_start,
            }
            result.curve.append(record)
            result.epochs_done = epoch + 1
            result.val_acc = val_acc
            if callback is not None:
                callback(dict(record))
            if time.perf_counter() > deadline and epoch + 1 < config.epochs:
                result.stop_reason = "time_budget"
                break
        if ema is not None and not result.diverged:
            model.load_state_dict(ema.model.state_dict())  # the trained model is the averaged one
        if partial:
            result.val_acc = evaluate(model, splits.val, batch_size=eval_bs)
        if result.diverged:
            result.val_acc = float("nan")
        result.train_time_s = time.perf_counter() - start
    return result
