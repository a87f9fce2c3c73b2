"""Forward+backward time and MACs of every registered unit against a plain convolution.

Usage:
    .venv/bin/python benchmarks/units.py [--device cpu|cuda|cpu,cuda] [--repeats 25] [--compile]
                                         [--reference] [--inference] [--threads N] [--clock wall|cpu] [--batch N]
                                         [--shapes resnet20_3x3,resnet50_1x1,resnet50_3x3,mbv2_dw3x3]
                                         [--smoke]  (the ResNet-20 shape, batch 8, 4 rounds, with --reference
                                                     and --inference; compile only if asked)

Each layer shape is timed with all candidates side by side in one run: the candidates take turns
(round-robin, the starting candidate rotating every round), so a slow spell of this shared, noisy
machine hits all of them alike. Each timing is one forward plus one backward with a fixed random upstream
gradient, the input requiring a gradient (an inner layer of a network). The ratio reported is the
median over rounds of (unit time / conv time) in the same round, with its quartiles; "best/best" is the
unit's fastest round over the conv's fastest round (noise only adds time, so on a busy machine this is
the steadier figure).
MACs come from ptflops' aten backend (the one icbench.cost uses), per image, relative to the conv.

Targets checked at the end (issues 2 and 7): on CPU at the ResNet-20 shape, `ic` ≤ 1.15× and
`ic_dual` ≤ 2.2× a plain convolution; on CUDA under torch.compile, `ic` ≤ 1.05×.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import add_smoke_options, interleaved  # noqa: E402

from icbench.units import UNITS, make_unit  # noqa: E402
from icbench.units.ic import ICConv2d, collision_reference  # noqa: E402
from icbench.units.ic_dual import ICDualConv2d  # noqa: E402


@dataclass(frozen=True)
class LayerShape:
    """One convolution layer of a known network, with the batch used on CPU and on CUDA."""

    description: str
    in_channels: int
    out_channels: int
    kernel_size: int
    size: int  # input height = width
    groups: int
    batch_cpu: int
    batch_cuda: int

    def conv(self) -> nn.Conv2d:
        return nn.Conv2d(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            padding=self.kernel_size // 2,
            groups=self.groups,
            bias=False,  # every one of these convolutions is followed by batch norm
        )


# Batches on CPU keep the default run within a few minutes on 2 cores; on CUDA they are large enough
# that kernels, not launches, dominate.
SHAPES: dict[str, LayerShape] = {
    "resnet20_3x3": LayerShape("ResNet-20 3x3 16->16 @32x32", 16, 16, 3, 32, 1, 128, 512),
    "resnet50_1x1": LayerShape("ResNet-50 bottleneck 1x1 256->64 @56x56", 256, 64, 1, 56, 1, 16, 128),
    "resnet50_3x3": LayerShape("ResNet-50 bottleneck 3x3 64->64 @56x56", 64, 64, 3, 56, 1, 16, 128),
    "mbv2_dw3x3": LayerShape("MobileNetV2 depthwise 3x3 144 @56x56", 144, 144, 3, 56, 144, 16, 128),
}

TARGETS = [  # (device, compiled, shape, unit, at most this many times the conv)
    ("cpu", False, "resnet20_3x3", "ic", 1.15),
    ("cpu", False, "resnet20_3x3", "ic_dual", 2.2),
    ("cuda", True, "resnet20_3x3", "ic", 1.05),
]


def _ic_composed(unit: ICConv2d, x: torch.Tensor) -> torch.Tensor:
    """`ic` written with plain ops: what CollisionTail replaces in eager mode."""
    return collision_reference(unit.conv(x), torch.tanh(0.5 * unit.ic_a), unit.ic_theta)


def _ic_dual_two_convs(unit: ICDualConv2d, x: torch.Tensor) -> torch.Tensor:
    """`ic_dual` as first written: the gate multiplies the second convolution's output."""
    u = unit.conv(x)
    v = unit._conv_forward(F.relu(x - unit.ic_theta_in.view(1, -1, 1, 1)), unit.weight, None)
    return torch.addcmul(u, torch.tanh(unit.ic_r).view(1, -1, 1, 1), v)


class _Reference(nn.Module):
    """A unit's parameters with another forward (for --reference)."""

    def __init__(self, unit: nn.Conv2d, forward: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.unit = unit
        self.fn = forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.unit, x)


REFERENCES: dict[str, tuple[str, Callable[..., torch.Tensor]]] = {
    "ic[composed]": ("ic", _ic_composed),
    "ic_dual[2conv]": ("ic_dual", _ic_dual_two_convs),
}


def machine_header(devices: list[str]) -> str:
    """Machine, date, torch version and devices: the first lines of every benchmark's output."""
    lines = [
        f"machine: {platform.platform()} | {platform.machine()} | {platform.processor() or 'cpu'} | "
        f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}",
        f"date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"python {platform.python_version()} | torch {torch.__version__}",
    ]
    if hasattr(os, "getloadavg"):  # other work on the machine skews every figure: say how much there was
        load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
        lines.append(f"load average (1, 5, 15 min) at start: {load}")
    # Allocator settings change CPU timings a lot (fresh pages for every large tensor): record them.
    alloc_env = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_") or k == "LD_PRELOAD"}
    if alloc_env:
        lines.append("allocator env: " + " ".join(f"{k}={v}" for k, v in sorted(alloc_env.items())))
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        lines.append(f"CUDA: {names} (CUDA {torch.version.cuda})")
    else:
        lines.append("CUDA: not available -- CPU-only run; CUDA figures need a machine with a GPU")
    lines.append(f"devices timed: {', '.join(devices)}")
    return "\n".join(lines)


def _move_off_init(unit: nn.Module, gen: torch.Generator) -> None:
    """Random values for the unit's own parameters, so its tail does real work, not an identity."""
    params = dict(unit.named_parameters())
    with torch.no_grad():
        for name in getattr(unit, "unit_param_names", ()):
            p = params[name]
            p.copy_(0.5 * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def _macs(module: nn.Module, shape: LayerShape) -> int:
    from ptflops import get_model_complexity_info  # heavy optional import: only when benchmarking

    macs, _ = get_model_complexity_info(
        module,
        (shape.in_channels, shape.size, shape.size),
        backend="aten",
        as_strings=False,
        print_per_layer_stat=False,
        verbose=False,
    )
    return int(macs)


def _candidates(shape: LayerShape, reference: bool) -> dict[str, nn.Module]:
    torch.manual_seed(0)
    conv = shape.conv()
    mods: dict[str, nn.Module] = {key: make_unit(key, conv) for key in UNITS}
    if reference:
        for name, (key, forward) in REFERENCES.items():
            mods[name] = _Reference(make_unit(key, conv), forward)
    for m in mods.values():
        # Seeded per module: a unit and its reference get the same values.
        _move_off_init(getattr(m, "unit", m), torch.Generator().manual_seed(0))
    return mods


def _sync(device: torch.device) -> Callable[[], None]:
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def bench_shape(
    shape_key: str,
    device: str,
    *,
    repeats: int,
    compile: bool,
    reference: bool,
    batch: int | None,
    inference: bool = False,
    cpu_clock: bool = False,
) -> list[dict[str, object]]:
    """Rows (one per candidate) for one layer shape on one device."""
    shape = SHAPES[shape_key]
    dev = torch.device(device)
    n = batch or (shape.batch_cuda if dev.type == "cuda" else shape.batch_cpu)
    mods = _candidates(shape, reference)
    macs = {name: _macs(m, shape) for name, m in mods.items()}
    mods = {name: m.to(dev) for name, m in mods.items()}
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n, shape.in_channels, shape.size, shape.size, generator=gen).to(dev).requires_grad_()
    with torch.no_grad():
        out_shape = mods["conv"](x).shape
    upstream = torch.randn(out_shape, generator=gen).to(dev)

    def train_step(module: nn.Module) -> Callable[[], None]:
        params = list(module.parameters())

        def run() -> None:
            for p in params:
                p.grad = None
            x.grad = None
            module(x).backward(upstream)

        return run

    def inference_step(module: nn.Module) -> Callable[[], None]:
        def run() -> None:
            with torch.inference_mode():
                module(x)

        return run

    steps = {name: train_step(m) for name, m in mods.items()}
    if compile:
        steps |= {f"{name} [compiled]": train_step(torch.compile(m)) for name, m in mods.items()}
    if inference:
        # The same modules (no dropout or batch norm inside a unit, so eval() would change nothing).
        steps |= {f"{name} [inference]": inference_step(m) for name, m in mods.items()}
    # The process's CPU time leaves out the time this process waits while others run (CPU only).
    clock = time.process_time if cpu_clock and dev.type == "cpu" else time.perf_counter
    times = interleaved(steps, repeats=repeats, warmup=3 if compile else 2, sync=_sync(dev), clock=clock)

    rows = []
    for name, ts in times.items():
        unit, _, mode = name.partition(" ")  # mode: "", "[compiled]" or "[inference]"
        base_name = f"conv {mode}".strip()
        ratios = sorted(t / b for t, b in zip(ts, times[base_name], strict=True))
        q1, q3 = statistics.quantiles(ratios, n=4)[0], statistics.quantiles(ratios, n=4)[2]
        rows.append(
            dict(
                device=device,
                shape=shape_key,
                description=shape.description,
                batch=n,
                candidate=name,
                compiled=mode == "[compiled]",
                inference=mode == "[inference]",
                unit=unit,
                ms=1e3 * statistics.median(ts),
                ratio=statistics.median(ratios),
                ratio_q1=q1,
                ratio_q3=q3,
                # Noise only ever adds time: the fastest rounds are the least disturbed ones.
                ratio_best=min(ts) / min(times[base_name]),
                macs=macs[unit],
                macs_ratio=macs[unit] / macs["conv"],
            )
        )
    return rows


def format_rows(rows: list[dict[str, object]]) -> str:
    """One block per (device, shape): candidate, median ms, time ratio vs conv with quartiles, MACs."""
    out: list[str] = []
    cols = (
        f"{'fwd+bwd ms':>11}  {'time x conv (q1-q3)':>22}  {'best/best':>9}  "
        f"{'MACs/img':>10}  {'MACs x conv':>11}"
    )
    header = f"  {'unit':<26}{cols}"
    seen: set[tuple[object, object]] = set()
    for row in rows:
        key = (row["device"], row["shape"])
        if key not in seen:
            seen.add(key)
            out.append(f"\n[{row['device']}] {row['shape']}: {row['description']}, batch {row['batch']}")
            out.append(header)
        spread = f"{row['ratio']:.2f} ({row['ratio_q1']:.2f}-{row['ratio_q3']:.2f})"
        out.append(
            f"  {row['candidate']:<26}{row['ms']:>11.2f}  {spread:>22}  {row['ratio_best']:>9.2f}  "
            f"{row['macs'] / 1e6:>9.2f}M  {row['macs_ratio']:>11.2f}"
        )
    return "\n".join(out)


def check_targets(rows: list[dict[str, object]]) -> list[str]:
    """One line per target whose measurement is in `rows`."""
    lines = []
    for device, compiled, shape, unit, limit in TARGETS:
        for row in rows:
            measured = (row["device"], row["compiled"], row["shape"], row["unit"], row["inference"])
            if measured == (device, compiled, shape, unit, False):
                ok = "met" if row["ratio"] <= limit else "MISSED"
                how = "compiled" if compiled else "eager"
                lines.append(
                    f"target {unit} <= {limit:.2f}x conv ({device}, {how}, {shape}): "
                    f"{row['ratio']:.2f}x -> {ok}"
                )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_devices = "cpu,cuda" if torch.cuda.is_available() else "cpu"
    parser.add_argument(
        "--device", default=default_devices, help=f"comma-separated (default {default_devices})"
    )
    parser.add_argument("--repeats", type=int, default=25, help="timed rounds per shape (default 25)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd versions")
    parser.add_argument(
        "--reference", action="store_true", help="also time the plain-op formulations the fast paths replace"
    )
    parser.add_argument(
        "--inference", action="store_true", help="also time the forward alone under torch.inference_mode"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice, one per core)"
    )
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall: elapsed time (default); cpu: this process's CPU time, steadier on a busy machine "
        "(best with --threads 1; CUDA is always timed by the wall clock)",
    )
    parser.add_argument("--batch", type=int, default=None, help="one batch size for every shape")
    parser.add_argument(
        "--shapes", default=",".join(SHAPES), help=f"comma-separated subset of {list(SHAPES)}"
    )
    add_smoke_options(parser, "one shape, batch 8, 4 rounds, reference and inference timings too")
    args = parser.parse_args(argv)
    if args.smoke:
        args.shapes, args.batch, args.repeats, args.reference, args.inference = (
            "resnet20_3x3",
            8,
            4,
            True,
            True,
        )

    devices = [d.strip() for d in args.device.split(",") if d.strip()]
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    for s in shapes:
        if s not in SHAPES:
            parser.error(f"unknown shape {s!r}; known: {', '.join(SHAPES)}")
    for d in devices:
        if d.startswith("cuda") and not torch.cuda.is_available():
            parser.error("--device cuda: no CUDA device on this machine")
    if args.repeats < 4:
        parser.error("--repeats must be at least 4 (quartiles)")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if any(d.startswith("cuda") for d in devices):
        torch.backends.cudnn.benchmark = True  # let cuDNN pick its fastest algorithm, as training does

    print(machine_header(devices))
    print(
        f"repeats {args.repeats}, compile {args.compile}, inference {args.inference}, clock {args.clock}, "
        f"torch threads {torch.get_num_threads()}; fwd+bwd = one forward and one backward, "
        "input requiring grad; ratio = median over rounds of unit/conv in the same round"
    )
    rows: list[dict[str, object]] = []
    start = time.perf_counter()
    for device in devices:
        for shape in shapes:
            new = bench_shape(
                shape,
                device,
                repeats=args.repeats,
                compile=args.compile,
                reference=args.reference,
                batch=args.batch,
                inference=args.inference,
                cpu_clock=args.clock == "cpu",
            )
            print(format_rows(new), flush=True)
            rows.extend(new)
    print()
    for line in check_targets(rows):
        print(line)
    print(f"total benchmark time {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
