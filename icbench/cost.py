"""Cost model (DESIGN.md §6): MACs, parameters and measured inference latency.

MACs are counted by ptflops' `aten` backend, passed explicitly (ptflops 0.7.5 defaults to its `pytorch`
backend, which counts module hooks and misses functional calls). The aten backend counts every
`aten.convolution`, `aten.mm` / `addmm` / `bmm` call, so `ic_dual`'s second convolution and the SE
unit's linear layers are counted, and elementwise work (BN, ReLU, the `ic` gate) is not. It counts a
bias addition as one MAC per output element, which `torch.utils.flop_counter.FlopCounterMode` does not:
MACs = FlopCounterMode total / 2 + bias outputs. FLOPs = 2 × MACs where a table shows both.
"""

from __future__ import annotations

import contextlib
import copy
import io
import statistics
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch
from torch import nn

from icbench.errors import IcbenchError


class CostError(IcbenchError, RuntimeError):
    """Counting a model's cost failed (usually: the model cannot run on the given input shape)."""


@dataclass(frozen=True)
class Cost:
    """A model's cost per image (MACs) and in size (parameters), and its latency per batch."""

    macs: int
    params: int
    params_trainable: int
    latency_ms: float | None = None

    def as_dict(self) -> dict[str, int | float | None]:
        return asdict(self)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode, and restore each one's own mode afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


def _first_param(model: nn.Module) -> torch.Tensor | None:
    return next(model.parameters(), None)


@contextlib.contextmanager
def _drop_new_hooks(model: nn.Module) -> Iterator[None]:
    """Remove the forward hooks ptflops' aten counter adds to the model's children and never removes."""
    children = list(model.children())
    attrs = (
        "_forward_pre_hooks",
        "_forward_hooks",
        "_forward_hooks_with_kwargs",
        "_forward_hooks_always_called",
    )
    before = [{a: set(getattr(c, a, {})) for a in attrs} for c in children]
    try:
        yield
    finally:
        for child, keys in zip(children, before, strict=True):
            for attr in attrs:
                hooks = getattr(child, attr, None)
                if hooks is not None:
                    for key in set(hooks) - keys[attr]:
                        del hooks[key]


class _MetaForward(nn.Module):
    """Runs `model` with its parameters and buffers swapped for meta tensors (shapes only, no compute).

    The model is held outside the module tree, so ptflops' hooks land on nothing of the user's.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        object.__setattr__(self, "_model", model)
        tensors = dict(model.named_parameters())
        tensors.update(model.named_buffers())
        object.__setattr__(self, "_meta", {k: torch.empty_like(v, device="meta") for k, v in tensors.items()})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(self._model, self._meta, (x,))


def _ptflops_macs(model: nn.Module, shape: tuple[int, ...], factory: dict) -> tuple[int | None, str]:
    from ptflops import get_model_complexity_info  # heavy optional import, only when counting

    def make_input(res: tuple[int, ...]) -> torch.Tensor:
        # A defined input (ptflops' default is uninitialised memory, which can hold NaNs or denormals).
        return torch.zeros((1, *res), **factory)

    log = io.StringIO()
    with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        macs, _ = get_model_complexity_info(
            model,
            shape,
            print_per_layer_stat=False,
            as_strings=False,
            input_constructor=make_input,
            backend="aten",
        )
    return macs, log.getvalue()


def count_macs(model: nn.Module, input_shape: tuple[int, int, int], *, on_meta: bool = True) -> int:
    """Multiply-accumulates of one forward pass on one image of shape `input_shape` (C, H, W).

    Counted with `ptflops.get_model_complexity_info(..., backend="aten")`, without gradients and with
    the model in eval mode (each module's mode is restored afterwards). By default the forward pass
    runs on meta tensors (shapes only: resnet50 at 224×224 in well under a second, nothing
    allocated); a model whose forward needs real values (data-dependent control flow) is counted
    again on a zero input on its own device. Forward hooks on the model's modules see the pass.

    Args:
        model: the network.
        input_shape: (channels, height, width) of one input image.
        on_meta: try the meta-tensor pass first.

    Returns:
        MACs per image.

    Raises:
        CostError: ptflops could not count (it returns (None, None) instead of raising); the model's
            own exception is chained.
    """
    shape = tuple(int(s) for s in input_shape)
    param = _first_param(model)
    dtype = param.dtype if param is not None else torch.float32
    device = param.device if param is not None else torch.device("cpu")
    with eval_mode(model), torch.no_grad():
        if on_meta:
            macs, _ = _ptflops_macs(_MetaForward(model), shape, {"dtype": dtype, "device": "meta"})
            if macs is not None:
                return int(macs)
        with _drop_new_hooks(model):
            macs, log = _ptflops_macs(model, shape, {"dtype": dtype, "device": device})
        if macs is None:
            # Re-run the forward to surface the model's own exception (ptflops only prints it).
            try:
                model(torch.zeros((1, *shape), dtype=dtype, device=device))
            except Exception as exc:
                raise CostError(
                    f"cannot count MACs on input shape {shape}: {type(exc).__name__}: {exc}"
                ) from exc
            raise CostError(f"cannot count MACs on input shape {shape}: {log.strip()[-500:]}")
    return int(macs)


def count_params(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; shared parameters are counted once."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_latency(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    *,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    warmup: int = 3,
    reps: int = 10,
) -> float:
    """Median wall time in ms of one inference forward pass on a batch, after `warmup` passes.

    The model runs in eval mode under `torch.inference_mode`; each module's mode is restored. If the
    model's parameters are not on `device`, a copy is moved there (the model itself is not moved).

    Args:
        model: the network.
        input_shape: (channels, height, width) of one input image.
        batch_size: images per forward pass.
        device: where to run.
        warmup: untimed passes first (allocator, kernel selection, caches).
        reps: timed passes; the median is returned.

    Returns:
        Median milliseconds per batch.
    """
    if reps < 1 or warmup < 0 or batch_size < 1:
        raise ValueError(f"need reps >= 1, warmup >= 0, batch_size >= 1 (got {reps}, {warmup}, {batch_size})")
    device = torch.device(device)
    param = _first_param(model)
    if param is not None and param.device != device:
        model = copy.deepcopy(model).to(device)
    dtype = param.dtype if param is not None else torch.float32
    x = torch.randn((batch_size, *input_shape), device=device, dtype=dtype)
    times = []
    with eval_mode(model), torch.inference_mode():
        for i in range(warmup + reps):
            _synchronize(device)
            start = time.perf_counter()
            model(x)
            _synchronize(device)
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1000.0)
    return float(statistics.median(times))


def measure_cost(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    *,
    latency: bool = True,
    device: str | torch.device = "cpu",
    batch_size: int = 32,
    warmup: int = 3,
    reps: int = 10,
) -> Cost:
    """MACs per image, parameters, and (if `latency`) the median latency per batch on `device`."""
    trainable, total = count_params(model)
    latency_ms = (
        measure_latency(model, input_shape, batch_size=batch_size, device=device, warmup=warmup, reps=reps)
        if latency
        else None
    )
    return Cost(
        macs=count_macs(model, input_shape), params=total, params_trainable=trainable, latency_ms=latency_ms
    )


__all__ = ["Cost", "CostError", "count_macs", "count_params", "eval_mode", "measure_cost", "measure_latency"]
