"""Every GPU-relevant check in one run: unit correctness, unit timings, training throughput, a fractional-GPU study.

Usage:
    python benchmarks/gpu_check.py [--sections correctness,timing,throughput,study] [--quick]
        [--budget-s 450] [--compile] [--smoke]

Sections (each runs on its own: an error prints FAIL with the message and the next section runs):
- correctness: every registered unit on the device against a float64 CPU reference, forward and backward
  (input gradient and every parameter gradient), float32 (TF32 off) and bf16 autocast with channels_last
  (the training loop's CUDA setting); relative error ‖a − ref‖ / ‖ref‖ against a tolerance per dtype.
- timing: forward+backward of every unit at the ResNet-20 3x3 shape (16→16 @32x32), eager and under
  torch.compile, the units taking turns with the plain convolution; the ratio is the median over rounds
  of unit / conv in the same round. On CUDA: batch 512, bf16 autocast, channels_last; target: `ic`
  compiled ≤ 1.05x the compiled conv (its elementwise tail fused into the convolution's epilogue).
- throughput: images per second of a CIFAR-style ResNet-20 (batch 512, bf16 autocast, channels_last on
  CUDA) through icbench's training loop (`icbench.training.loop.fit`) against a bare hand-written loop on
  the same tensors (synthetic 3x32x32 data held on the device), and the IC network (ic at every site).
  Both sides time whole epochs with their validation pass; epochs after the first, alternating runs.
- study: a 4-trial study through `icbench.search.run_study` with 0.5 GPU per trial, two trials sharing
  the GPU at once; checks that all complete on CUDA and that two ran at the same time.

Without CUDA the script runs in a reduced, fast mode (`--quick` is implied): the correctness check
compares the CPU against the float64 reference, timings are eager-only at batch 16, throughput uses a
ResNet-8 at width 0.5, and the study is a 2-trial CPU stand-in. The summary table, printed last, has one row
per part: `<section>/cpu` for what ran on the CPU and `<section>/cuda` for the CUDA part, which without CUDA
is SKIP with the reason (a part that did not run is never OK). The exit status is 1 if any part FAILed, else 0.
On a GPU the default run takes under 8 minutes; `--budget-s` skips the sections left once it is spent.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from _common import add_smoke_options, header, interleaved, quiet_ray_env, table, write_study  # noqa: E402

SECTIONS = ("correctness", "timing", "throughput", "study")
TOLERANCE = {"fp32": 1e-4, "bf16": 5e-2}  # relative error vs float64 (bf16 keeps 8 mantissa bits;
# the units' own parameter gradients are sums over a whole batch and lose most: about 3e-2 on the CPU)
IC_COMPILED_TARGET = 1.05


@dataclass
class Outcome:
    """What a section reports to the summary: the status of the part that ran, and the parts that did not.

    Attributes:
        status: OK, FAIL (error or wrong numbers), MISS (a performance target missed) or SKIP (nothing ran).
        figure: the headline number of the part that ran.
        notes: remarks printed under the section.
        skipped: (part, why) of optional parts that did not run; each is a SKIP row of the summary.
        seconds: wall time of the section.
        started: False when the section was not started at all (its time budget was spent).
    """

    status: str = "OK"
    figure: str = ""
    notes: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    started: bool = True


@dataclass
class Context:
    device: torch.device
    cuda: bool
    quick: bool
    compile: bool
    repeats: int


def _autocast(device: torch.device, enabled: bool = True) -> Any:
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def _sync(device: torch.device) -> Callable[[], None]:
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def _randomise_unit(unit: nn.Module, seed: int) -> None:
    """Random values for the unit's own parameters, so its tail computes something, not an identity."""
    gen = torch.Generator().manual_seed(seed)
    params = dict(unit.named_parameters())
    with torch.no_grad():
        for name in getattr(unit, "unit_param_names", ()):
            p = params[name]
            p.copy_(0.5 * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def _rel(a: torch.Tensor | None, ref: torch.Tensor | None) -> float:
    if a is None or ref is None:
        return float("inf") if (a is None) != (ref is None) else 0.0
    a64, r64 = a.detach().double().cpu(), ref.detach().double().cpu()
    return float((a64 - r64).norm() / r64.norm().clamp_min(1e-30))


# ------------------------------------------------------------------------------------------ correctness

CORRECTNESS_SHAPES = {
    "3x3 16->16": lambda: nn.Conv2d(16, 16, 3, padding=1, bias=False),
    "1x1 32->64 s2": lambda: nn.Conv2d(32, 64, 1, stride=2, bias=False),
    "dw3x3 32": lambda: nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False),
}


def _run_unit(
    module: nn.Module, x: torch.Tensor, g: torch.Tensor, bf16: bool, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    x = x.clone().requires_grad_()
    module.zero_grad(set_to_none=True)
    with _autocast(device, enabled=bf16):
        y = module(x)
    y.float().backward(g)
    grads = {n: p.grad for n, p in module.named_parameters()}
    return y.detach(), x.grad, grads


def correctness(ctx: Context) -> Outcome:
    from icbench.units import UNITS, make_unit

    out = Outcome()
    where = "CUDA" if ctx.cuda else "CPU (CUDA part skipped: no CUDA device)"
    rows, worst = [], {"fp32": 0.0, "bf16": 0.0}
    old_tf32 = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # exact fp32
    try:
        for shape, make_conv in CORRECTNESS_SHAPES.items():
            torch.manual_seed(0)
            conv = make_conv()
            x64 = torch.randn(4, conv.in_channels, 16, 16, dtype=torch.float64)
            for unit_name in UNITS:
                unit = make_unit(unit_name, conv)
                _randomise_unit(unit, seed=1)
                ref_mod = copy.deepcopy(unit).double()
                with torch.no_grad():
                    y_shape = ref_mod(x64).shape
                g64 = torch.randn(y_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
                ref = _run_unit(ref_mod, x64, g64, bf16=False, device=torch.device("cpu"))
                for dtype in ("fp32", "bf16"):
                    bf16 = dtype == "bf16"
                    fmt = torch.channels_last if bf16 else torch.contiguous_format
                    mod = copy.deepcopy(unit).to(ctx.device, memory_format=fmt)
                    x = x64.float().to(ctx.device).contiguous(memory_format=fmt)
                    y, gx, gp = _run_unit(mod, x, g64.float().to(ctx.device), bf16=bf16, device=ctx.device)
                    errs = {
                        "fwd": _rel(y, ref[0]),
                        "grad x": _rel(gx, ref[1]),
                        "grad params": max(_rel(gp[n], ref[2][n]) for n in ref[2]),
                    }
                    bad = max(errs.values())
                    worst[dtype] = max(worst[dtype], bad)
                    ok = bad <= TOLERANCE[dtype]
                    if not ok:
                        out.status = "FAIL"
                        out.notes.append(f"{unit_name} {shape} {dtype}: relative error {bad:.2e}")
                    layout = "channels_last, autocast" if bf16 else "contiguous"
                    rows.append([unit_name, shape, f"{dtype} ({layout})", *(f"{v:.1e}" for v in errs.values()),
                                 "ok" if ok else "FAIL"])  # fmt: skip
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old_tf32
    print(f"units on {where} vs a float64 CPU reference; tolerance fp32 {TOLERANCE['fp32']:.0e}, "
          f"bf16 {TOLERANCE['bf16']:.0e} (relative error, 2-norm)")  # fmt: skip
    print(table(rows, ["unit", "conv", "dtype", "fwd", "grad x", "grad params", "result"]))
    out.figure = (
        f"max rel err fp32 {worst['fp32']:.1e}, bf16 {worst['bf16']:.1e} ({'cuda' if ctx.cuda else 'cpu'})"
    )
    return out


# ------------------------------------------------------------------------------------------ timing


def timing(ctx: Context) -> Outcome:
    from icbench.units import UNITS, make_unit

    out = Outcome()
    dev = ctx.device
    batch = 512 if ctx.cuda and not ctx.quick else (128 if ctx.cuda else 32)
    inner = 10 if ctx.cuda else 1  # calls per timed sample: a single small CUDA step is launch-bound noise
    fmt = torch.channels_last if ctx.cuda else torch.contiguous_format
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 16, 3, padding=1, bias=False)
    mods: dict[str, nn.Module] = {}
    for name in UNITS:
        m = make_unit(name, conv)
        _randomise_unit(m, seed=1)
        mods[name] = m.to(dev, memory_format=fmt)
    x = torch.randn(batch, 16, 32, 32, device=dev).contiguous(memory_format=fmt).requires_grad_()
    g = torch.randn(batch, 16, 32, 32, device=dev).contiguous(memory_format=fmt)
    if ctx.cuda:
        g = g.bfloat16()
    compile_wanted = ctx.cuda or ctx.compile
    runners: dict[str, nn.Module] = {f"{k} eager": m for k, m in mods.items()}
    if compile_wanted:
        torch.backends.cudnn.benchmark = True
        for k, m in mods.items():
            runners[f"{k} compiled"] = torch.compile(m)
    else:
        out.notes.append("torch.compile timings skipped (CPU quick mode; --compile to include them)")
        out.skipped.append(("cpu-compiled", "torch.compile timings not requested on the CPU (--compile)"))

    def step(module: nn.Module) -> Callable[[], None]:
        params = list(module.parameters())

        def run() -> None:
            for _ in range(inner):
                for p in params:
                    p.grad = None
                x.grad = None
                with _autocast(dev, enabled=ctx.cuda):
                    y = module(x)
                y.backward(g.to(y.dtype))

        return run

    t0 = time.perf_counter()
    steps = {k: step(m) for k, m in runners.items()}
    for s in steps.values():  # compile (and cuDNN's algorithm search) outside the timed rounds
        s()
    warm_s = time.perf_counter() - t0
    times = interleaved(steps, repeats=ctx.repeats, warmup=1, sync=_sync(dev))
    rows = []
    ratios: dict[str, float] = {}
    for k, ts in times.items():
        unit, mode = k.rsplit(" ", 1)
        base = times[f"conv {mode}"]
        rs = sorted(a / b for a, b in zip(ts, base, strict=True))
        q = statistics.quantiles(rs, n=4) if len(rs) >= 2 else [rs[0]] * 3
        ratios[k] = statistics.median(rs)
        rows.append([unit, mode, f"{1e3 * statistics.median(ts) / inner:.3f}",
                     f"{ratios[k]:.3f} ({q[0]:.2f}-{q[2]:.2f})"])  # fmt: skip
    setting = "bf16 autocast, channels_last" if ctx.cuda else "float32"
    print(
        f"fwd+bwd of one 3x3 16->16 layer @32x32, batch {batch}, {setting}, on {dev}; {ctx.repeats} rounds "
        f"of {inner} call(s); first calls (compile, cuDNN search) took {warm_s:.1f} s"
    )
    print(table(rows, ["unit", "mode", "ms per call", "x conv, same mode (q1-q3)"]))
    if "ic compiled" in ratios:
        r = ratios["ic compiled"]
        met = r <= IC_COMPILED_TARGET
        if ctx.cuda:
            out.status = "OK" if met else "MISS"
            out.figure = (
                f"ic compiled {r:.3f}x conv (target <= {IC_COMPILED_TARGET}); eager {ratios['ic eager']:.3f}x"
            )
        else:
            out.figure = (
                f"ic compiled {r:.3f}x conv on CPU (target is for CUDA); eager {ratios['ic eager']:.3f}x"
            )
    else:
        out.figure = f"ic eager {ratios['ic eager']:.3f}x conv on {dev.type}"
        out.notes.append("CUDA compiled target (ic <= 1.05x conv) not checked: no CUDA device")
    return out


# ------------------------------------------------------------------------------------------ throughput


def _bare_epochs(model: nn.Module, splits: Any, batch: int, epochs: int, device: torch.device) -> list[float]:
    """Seconds of each epoch (training steps and a validation pass) of a hand-written loop."""
    cuda = device.type == "cuda"
    fmt = torch.channels_last if cuda else torch.contiguous_format
    model.to(device, memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    x, y = splits.train.x, splits.train.y
    xv, yv = splits.val.x, splits.val.y
    gen = torch.Generator(device=device).manual_seed(0)
    sync = _sync(device)
    times = []
    for _ in range(epochs):
        sync()
        start = time.perf_counter()
        model.train()
        perm = torch.randperm(len(x), device=device, generator=gen)
        for i in range(len(x) // batch):
            idx = perm[i * batch : (i + 1) * batch]
            with _autocast(device, enabled=cuda):
                loss = F.cross_entropy(model(x[idx].contiguous(memory_format=fmt)).float(), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        correct = torch.zeros((), dtype=torch.long, device=device)
        with torch.no_grad(), _autocast(device, enabled=cuda):
            for i in range(0, len(xv), 2 * batch):
                xb = xv[i : i + 2 * batch].contiguous(memory_format=fmt)
                correct += (model(xb).argmax(1) == yv[i : i + 2 * batch]).sum()
        correct.item()  # waits for the device, as fit's validation does
        times.append(time.perf_counter() - start)
    return times


def _icbench_epochs(model: nn.Module, splits: Any, batch: int, epochs: int) -> list[float]:
    from icbench.training.config import TrainConfig
    from icbench.training.loop import fit

    records: list[dict[str, Any]] = []
    fit(model, splits, TrainConfig(epochs=epochs, batch_size=batch, lr=0.05), callback=records.append)
    return [r["epoch_time_s"] for r in records]


def throughput(ctx: Context) -> Outcome:
    from icbench.data import load_dataset
    from icbench.families import build_model
    from icbench.training.loop import seed_everything

    out = Outcome()
    dev = ctx.device
    if ctx.cuda and not ctx.quick:
        size, width, batch, n, epochs, reps = "resnet20", 1.0, 512, 20000, 3, 2
    elif ctx.cuda:
        size, width, batch, n, epochs, reps = "resnet20", 1.0, 512, 8000, 2, 1
    else:
        size, width, batch, n, epochs, reps = "resnet8", 0.5, 64, 1200, 3, 2
        out.notes.append(
            "CPU quick mode: resnet8 width 0.5, batch 64, float32 (bf16/channels_last are CUDA-only)"
        )
    splits = load_dataset("synthetic", device=dev, n=n, in_chans=3, image_size=32)
    n_train = (len(splits.train) // batch) * batch

    def model(unit: str) -> nn.Module:
        seed_everything(0)
        m = build_model("resnet_cifar", size, width=width)
        if unit != "conv":
            from icbench.placement import apply, make_placement, sites

            site_list = sites(m, (3, 32, 32), "resnet_cifar")
            apply(m, make_placement(site_list, "all", unit), site_list)
        return m

    runs: dict[str, Callable[[], list[float]]] = {
        "bare loop, basic network": lambda: _bare_epochs(model("conv"), splits, batch, epochs, dev),
        "icbench fit, basic network": lambda: _icbench_epochs(model("conv"), splits, batch, epochs),
    }
    try:
        model("ic")
        runs["bare loop, ic at every site"] = lambda: _bare_epochs(model("ic"), splits, batch, epochs, dev)
        runs["icbench fit, ic at every site"] = lambda: _icbench_epochs(model("ic"), splits, batch, epochs)
    except ImportError as e:  # placement counts MACs with ptflops to find the sites
        out.notes.append(f"IC network skipped: {e} (install ptflops)")
    times: dict[str, list[float]] = {k: [] for k in runs}
    for rep in range(reps):
        order = list(runs) if rep % 2 == 0 else list(runs)[::-1]
        for k in order:
            ts = runs[k]()
            times[k].extend(ts[1:] if len(ts) > 1 else ts)  # the first epoch warms up cuDNN and the allocator
    ips = {k: n_train / statistics.median(v) for k, v in times.items()}
    setting = "bf16 autocast + channels_last" if ctx.cuda else "float32"
    print(
        f"resnet_cifar {size} width {width}, batch {batch}, {setting}, synthetic 3x32x32 on {dev} "
        f"({n_train} training images/epoch + validation pass); median epoch after the first, {reps} run(s) each"
    )
    rows = []
    for k, v in ips.items():
        bare = ips.get(k.replace("icbench fit", "bare loop"))
        ratio = f"{v / bare:.3f}" if bare and k.startswith("icbench") else ""
        rows.append([k, f"{v:,.0f}", f"{statistics.median(times[k]):.3f}", ratio])
    print(table(rows, ["loop", "images/s", "s/epoch", "icbench / bare"]))
    basic = ips["icbench fit, basic network"] / ips["bare loop, basic network"]
    out.figure = (
        f"{size} b{batch}: icbench {ips['icbench fit, basic network']:,.0f} img/s = {basic:.2f}x bare"
    )
    if "icbench fit, ic at every site" in ips:
        out.figure += f"; ic everywhere {ips['icbench fit, ic at every site']:,.0f} img/s"
    if not ctx.cuda:
        out.notes.append("the CUDA figure (resnet20, batch 512, bf16 + channels_last) needs a GPU")
    return out


# ------------------------------------------------------------------------------------------ study

STUDY_SPACE = """
params:
  unit: {type: categorical, choices: [ic, conv, ic_dual, se]}
  lr: {type: float, low: 0.03, high: 0.3, log: true}
"""


def study(ctx: Context) -> Outcome:
    missing = [
        m for m in ("ray", "optuna", "pydantic", "yaml", "ptflops") if importlib.util.find_spec(m) is None
    ]
    if missing:
        return Outcome("SKIP", f"not installed: {', '.join(missing)}", [
            "the study needs icbench's search dependencies (pip install -e .)"])  # fmt: skip
    import optuna

    from icbench.search import run_study
    from icbench.search.runner import storage_url
    from icbench.search.schema import load_study

    out = Outcome()
    quiet_ray_env()
    folder = Path(tempfile.mkdtemp(prefix="icbench-gpu-check-"))
    if ctx.cuda:
        n_trials, exec_ = 4, "{cpus_per_trial: 2, gpus_per_trial: 0.5, max_concurrent: 2, device: cuda}"
        data, fam, epochs = "{name: synthetic, kwargs: {n: 6000}}", "{name: resnet_cifar, size: resnet8}", 2
    else:
        n_trials, exec_ = 2, "{cpus_per_trial: 1, max_concurrent: 2, device: cpu}"
        data, fam, epochs = (
            "{name: synthetic, kwargs: {n: 1200}}",
            "{name: resnet_cifar, size: resnet8, width: 0.25}",
            1,
        )
        out.notes.append("fractional-GPU study skipped (no CUDA device); ran a 2-trial CPU stand-in instead")
    text = (
        f"dataset: {data}\nfamily: {fam}\nn_trials: {n_trials}\nsampler: {{name: random, seed: 0}}\n"
        f"budget: {{epochs: {epochs}}}\ntraining: {{batch_size: 256}}\nexecution: {exec_}\n"
    )
    path = write_study(folder, "gpu_check", text, STUDY_SPACE)
    start = time.perf_counter()
    run = run_study(path, report=False, echo=lambda s: None)
    wall = time.perf_counter() - start
    loaded = load_study(path)
    st = optuna.load_study(study_name=loaded.config.name, storage=storage_url(loaded))
    trials = st.get_trials()
    done = [t for t in trials if t.state.name == "COMPLETE"]
    spans = sorted((t.datetime_start, t.datetime_complete) for t in done)
    overlap = max((sum(1 for a, b in spans if a <= s < b) for s, _ in spans), default=0)
    device = st.user_attrs.get("device", "?")
    rows = [[t.number, t.state.name, t.user_attrs.get("placement", "")[:24], f"{t.user_attrs.get('val_acc', float('nan')):.3f}",
             f"{t.user_attrs.get('train_time_s', float('nan')):.1f}", t.user_attrs.get("reason", "")[:60]]
            for t in trials]  # fmt: skip
    print(
        f"{n_trials}-trial study, execution {exec_}, study device {device!r}: {wall:.1f} s wall (Ray start-up included)"
    )
    print(table(rows, ["trial", "state", "placement", "val_acc", "train s", "reason"]))
    problems = []
    if len(done) != n_trials:
        problems.append(f"{len(done)}/{n_trials} trials COMPLETE (failed {run.n_failed})")
    if ctx.cuda and not device.startswith("cuda"):
        problems.append(f"the study recorded device {device!r}, not cuda")
    if ctx.cuda and overlap < 2:
        problems.append("no two trials ran at the same time: 0.5 GPU per trial did not share the GPU")
    if problems:
        out.status = "FAIL"
        out.notes.extend(problems)
    out.figure = f"{len(done)}/{n_trials} complete, up to {overlap} at once, {wall:.0f} s"
    return out


# ------------------------------------------------------------------------------------------ main

CHECKS: dict[str, Callable[[Context], Outcome]] = {
    "correctness": correctness,
    "timing": timing,
    "throughput": throughput,
    "study": study,
}

#: What each section checks on CUDA only: without a CUDA device that part cannot run and is a SKIP row.
CUDA_PARTS: dict[str, str] = {
    "correctness": "units on CUDA in fp32 (TF32 off) and bf16 autocast + channels_last not checked",
    "timing": "CUDA timings (batch 512, bf16, channels_last) and the compiled target ic <= 1.05x conv not checked",
    "throughput": "resnet20 at batch 512 with bf16 autocast + channels_last on CUDA not measured",
    "study": "4-trial study with 0.5 GPU per trial sharing one GPU not run",
}


def summary_rows(outcomes: dict[str, Outcome], cuda: bool) -> list[list[str]]:
    """One row per part: `<section>/<device>` for what ran, then a SKIP row for every part that did not
    (the CUDA part without CUDA, optional parts not requested). A section skipped whole is one SKIP row."""
    here = "cuda" if cuda else "cpu"
    rows = []
    for name, o in outcomes.items():
        rows.append([f"{name}/{here}" if o.started else name, o.status, f"{o.seconds:.0f}", o.figure])
        rows += [[f"{name}/{part}", "SKIP", "0", why] for part, why in o.skipped]
        if not cuda and name in CUDA_PARTS:
            rows.append([f"{name}/cuda", "SKIP", "0", f"no CUDA device: {CUDA_PARTS[name]}"])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}"
    )
    parser.add_argument("--quick", action="store_true", help="reduced sizes (implied without CUDA)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile on the CPU")
    parser.add_argument("--repeats", type=int, default=None, help="timing rounds (default 30 CUDA, 15 CPU)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default 1 without CUDA: spinning OpenMP threads on a shared machine make "
        "single epochs 10x slower at random)",
    )
    parser.add_argument(
        "--budget-s", type=float, default=450.0, help="skip sections once this much time is spent"
    )
    add_smoke_options(parser, "the reduced (--quick) mode, which writes nothing")
    args = parser.parse_args(argv)
    args.quick = args.quick or args.smoke
    wanted = [s.strip() for s in args.sections.split(",") if s.strip()]
    for s in wanted:
        if s not in CHECKS:
            parser.error(f"unknown section {s!r}; known: {', '.join(CHECKS)}")

    cuda = torch.cuda.is_available()
    if args.threads or not cuda:
        torch.set_num_threads(args.threads or 1)
    # The device name comes first: it is what the figures below belong to.
    if cuda:
        print(
            f"device: {torch.cuda.get_device_name(0)} (cuda:0 of {torch.cuda.device_count()}, CUDA {torch.version.cuda})"
        )
    else:
        print(
            "device: cpu -- no CUDA device visible to torch: CUDA parts are skipped, reduced (--quick) mode"
        )
    print(header("GPU check: unit correctness and timings, training throughput, fractional-GPU study",
                 device=f"cuda: {torch.cuda.get_device_name(0)}" if cuda else "device: cpu (no CUDA)"))  # fmt: skip
    quick = args.quick or not cuda
    ctx = Context(
        device=torch.device("cuda" if cuda else "cpu"),
        cuda=cuda,
        quick=quick,
        compile=args.compile,
        repeats=args.repeats or (30 if cuda and not quick else 15),
    )
    print(
        f"mode: {'quick' if quick else 'full'}; sections: {', '.join(wanted)}; budget {args.budget_s:.0f} s"
    )
    start = time.perf_counter()
    outcomes: dict[str, Outcome] = {}
    for name in wanted:
        print(f"\n## {name}", flush=True)
        if time.perf_counter() - start > args.budget_s:
            outcomes[name] = Outcome("SKIP", f"time budget of {args.budget_s:.0f} s spent", started=False)
            print(f"SKIP {name}: time budget spent")
            continue
        t0 = time.perf_counter()
        try:
            outcome = CHECKS[name](ctx)
        except Exception as e:  # one broken section must not hide the others' results
            traceback.print_exc()
            outcome = Outcome("FAIL", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:120])
        outcome.seconds = time.perf_counter() - t0
        for note in outcome.notes:
            print(f"{'SKIP' if 'skipped' in note else 'note'}: {note}")
        print(f"{outcome.status} {name} ({outcome.seconds:.1f} s): {outcome.figure}", flush=True)
        outcomes[name] = outcome

    print("\n## summary" + ("" if cuda else " (CPU quick mode: no CUDA device; CUDA parts skipped)"))
    print(table(summary_rows(outcomes, cuda), ["part", "status", "s", "result"]))
    print(f"total {time.perf_counter() - start:.0f} s on {torch.cuda.get_device_name(0) if cuda else 'cpu'}")
    return 1 if any(o.status == "FAIL" for o in outcomes.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
