"""The training harness's tax, and WLD's claim: epochs to a target accuracy.

Usage:
    .venv/bin/python benchmarks/training.py [--threads 1] [--device auto] [--seeds 3] [--epochs 6]
        [--target 0.97] [--teacher-epochs 2] [--lr 0.1] [--wld-lr LR] [--variants abc] [--tax-reps 5]
        [--skip-tax] [--skip-wld] [--compile] [--compile-cache] [--smoke [--smoke-dir DIR]]

1. Harness tax. One epoch of the same candidate (same model, same seed, same in-memory data,
   augmentation off) trained (a) through `train_candidate` (build, sites, MACs count, the loop with
   its schedule, finiteness checks and per-epoch validation, then the test pass) and (b) by a bare
   hand-written PyTorch loop (randperm batches, SGD with Nesterov momentum, one validation pass).
   The two alternate, `--tax-reps` times each; medians and their ratio are printed, for the whole
   call and for the loop alone (`fit`'s own time). Target: at most 1.10x on the CPU.
2. WLD's claim (DESIGN.md §4). Epochs until the validation accuracy first reaches `--target` on
   mnist5k for (a) the basic network (every site a plain convolution), (b) the IC network (every
   eligible site `ic`) from scratch, (c) the IC network with WLD: warm-started from a *weak* teacher
   (the basic network trained for `--teacher-epochs` only, once, cached; its cost is printed
   separately) and distilled with the default λ schedule. Over `--seeds` seeds: mean ± std.

3. `training.compile` break-even (`--compile`). The same candidate (IC at every eligible site) trained
   `--compile-epochs` epochs eagerly and under `torch.compile`, alternating, `--compile-reps` times
   each. From the per-epoch times: the compiled run's first-epoch surplus (compilation) and its steady
   saving per epoch give the trial length from which compiling pays, compile time included.

The default run takes a few minutes on 2 CPU cores. Threads default to 1: on a shared machine two
spinning OpenMP threads per process can make each epoch many times slower.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import add_smoke_options, cpu_model, smoke_dir  # noqa: E402

from icbench.data import load_dataset  # noqa: E402
from icbench.families import tiny_size  # noqa: E402
from icbench.recipe import Recipe  # noqa: E402
from icbench.training import build_candidate, train_candidate  # noqa: E402
from icbench.training.loop import resolve_device  # noqa: E402

TAX_TARGET = 1.10


def machine() -> str:
    return f"{cpu_model()}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}"


def bare_epoch(config: dict[str, Any], device: torch.device) -> float:
    """One epoch by a hand-written loop on the same model and tensors; returns validation accuracy."""
    splits = load_dataset(config["dataset"], device=device)  # the same in-memory tensors
    model, _, _ = build_candidate(config)
    cuda = device.type == "cuda"
    fmt = torch.channels_last if cuda else torch.contiguous_format
    model = model.to(device, memory_format=fmt)
    opt = torch.optim.SGD(
        model.parameters(), lr=config["lr"], momentum=0.9, nesterov=True, weight_decay=config["weight_decay"]
    )
    x, y = splits.train.x, splits.train.y
    bs = config["batch_size"]
    gen = torch.Generator(device=device).manual_seed(config["seed"])
    perm = torch.randperm(len(x), device=device, generator=gen)
    model.train()
    for i in range(len(x) // bs):
        idx = perm[i * bs : (i + 1) * bs]
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            loss = F.cross_entropy(model(x[idx].contiguous(memory_format=fmt)), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    correct = 0
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
        xv, yv = splits.val.x, splits.val.y
        for i in range(0, len(xv), 2 * bs):
            correct += int((model(xv[i : i + 2 * bs]).argmax(1) == yv[i : i + 2 * bs]).sum())
    return correct / len(xv)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def harness_tax(args: argparse.Namespace, device: torch.device) -> None:
    config = {
        "dataset": "mnist5k",
        "family": "resnet_cifar",
        "size": args.size,
        "width": args.width,
        "epochs": 1,
        "batch_size": args.batch_size,
        "lr": 0.05,
        "weight_decay": 5e-4,
        "augment": False,
        "seed": 0,
        "device": str(device),
        "latency": False,
    }
    load_dataset("mnist5k", device=device)  # read once up front: both sides then use the cached tensors
    bare_epoch(config, device)  # warm-up (allocator, kernel choice) for both sides
    train_candidate(config)
    harness, loop_only, bare = [], [], []
    for rep in range(args.tax_reps):
        order = ("harness", "bare") if rep % 2 == 0 else ("bare", "harness")
        for side in order:
            if side == "harness":
                t, m = timed(lambda: train_candidate(config))
                harness.append(t)
                loop_only.append(m["train_time_s"])
            else:
                bare.append(timed(lambda: bare_epoch(config, device))[0])
    h, lo, b = statistics.median(harness), statistics.median(loop_only), statistics.median(bare)
    print(
        f"\n## 1. Harness tax: one epoch of resnet_cifar {args.size} (IC at every eligible site) on mnist5k, "
        f"batch {args.batch_size}, no augmentation, {args.tax_reps} alternating runs each, medians"
    )
    print(f"{'run':<52} {'median s':>9} {'min s':>7} {'max s':>7}")
    print(f"{'bare hand-written PyTorch loop':<52} {b:>9.3f} {min(bare):>7.3f} {max(bare):>7.3f}")
    print(f"{'train_candidate (whole call)':<52} {h:>9.3f} {min(harness):>7.3f} {max(harness):>7.3f}")
    label = "  of which fit() (loop + validation)"
    print(f"{label:<52} {lo:>9.3f} {min(loop_only):>7.3f} {max(loop_only):>7.3f}")
    verdict = "meets" if h / b <= TAX_TARGET else "MISSES"
    print(f"ratio train_candidate / bare: {h / b:.3f}x ({verdict} the {TAX_TARGET:.2f}x target)")
    print(f"ratio fit() / bare:           {lo / b:.3f}x")


def compile_break_even(args: argparse.Namespace, device: torch.device) -> None:
    config = {
        "dataset": "mnist5k", "family": "resnet_cifar", "size": args.size, "width": args.width,
        "unit": "ic", "strategy": "all", "epochs": args.compile_epochs, "batch_size": args.batch_size,
        "lr": 0.1, "augment": False, "seed": 0, "device": str(device), "latency": False,
    }  # fmt: skip
    runs: dict[bool, list[list[float]]] = {False: [], True: []}
    for rep in range(args.compile_reps):
        for compiled in (False, True) if rep % 2 == 0 else (True, False):
            torch._dynamo.reset()  # every compiled run pays its own compilation, as a fresh trial does
            curve = train_candidate({**config, "compile": compiled})["curve"]
            runs[compiled].append([float(e["epoch_time_s"]) for e in curve])
    eager = statistics.median(t for r in runs[False] for t in r)
    first = statistics.median(r[0] for r in runs[True])
    steady = statistics.median(t for r in runs[True] for t in r[1:])
    print(
        f"\n## 3. torch.compile break-even: resnet_cifar {args.size} x{args.width} (IC everywhere), mnist5k, "
        f"batch {args.batch_size}, {args.compile_epochs} epochs, {args.compile_reps} alternating runs each"
    )
    print(f"eager epoch {eager:.2f} s | compiled: first epoch {first:.2f} s, later epochs {steady:.2f} s")
    saving = eager - steady
    if saving <= 0:
        print(f"compiled epochs are not faster ({steady / eager:.2f}x eager): compiling never pays here")
        return
    epochs = (first - steady) / saving
    print(
        f"compiled later epochs {steady / eager:.2f}x eager; compilation costs {first - steady:.1f} s, "
        f"repaid after {epochs:.1f} epochs ({epochs * eager / 60:.1f} min of eager training)"
    )


# Run in a fresh interpreter (a trial's worker process): compile one candidate's training step `repeat`
# times, `torch._dynamo.reset()` before each, and time the first compiled step against later ones.
COMPILE_PROBE = r"""
import json, sys, time
import torch
import torch.nn.functional as F
torch.set_num_threads(1)
from icbench.training import build_candidate
cfg, repeat = json.loads(sys.argv[1]), int(sys.argv[2])
model, _, shape = build_candidate(cfg)
x = torch.randn(cfg["batch_size"], *shape)
y = torch.randint(0, 10, (cfg["batch_size"],))
def step(m):
    F.cross_entropy(m(x), y).backward()
def per_step(m, n=3):
    s = time.perf_counter()
    for _ in range(n):
        step(m)
    return (time.perf_counter() - s) / n
step(model)
out = {"eager_step": per_step(model), "compile": []}
for _ in range(repeat):
    torch._dynamo.reset()
    compiled = torch.compile(model)
    s = time.perf_counter(); step(compiled); first = time.perf_counter() - s
    out["compile"].append(first - per_step(compiled))
print("COMPILE " + json.dumps(out))
"""


def _compile_probe(cfg: dict[str, Any], repeat: int, cache_dir: Path) -> dict[str, Any]:
    import subprocess

    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache_dir)}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-c", COMPILE_PROBE, json.dumps(cfg), str(repeat)],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("COMPILE ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"compile probe failed:\n{proc.stderr[-2000:]}")
    return json.loads(line.removeprefix("COMPILE "))


def compile_cache(args: argparse.Namespace, device: torch.device) -> None:
    """Part 4: what `torch.compile` adds per distinct network, and what Inductor's caches save when trials
    share a graph. Per network, in fresh processes (a trial's worker) with their own Inductor cache folder:
    cold (empty cache), the same process compiling again after `torch._dynamo.reset()` (a reused worker's
    next trial of the same network), and a new process on the cache the first one filled (another worker,
    or a later study on the same machine). Compile time = first compiled step minus a later one."""
    root = Path(getattr(args, "smoke_folder", None) or tempfile.mkdtemp(prefix="icbench-inductor-"))
    rows = []
    for strategy in [v.strip() for v in args.compile_networks.split(",") if v.strip()]:
        cfg = {"dataset": "mnist5k", "family": "resnet_cifar", "size": args.size, "width": args.width,
               "unit": "ic", "strategy": strategy, "batch_size": args.batch_size, "seed": 0}  # fmt: skip
        cache = root / f"inductor-{strategy}"
        cold = _compile_probe(cfg, 2, cache)
        warm = _compile_probe(cfg, 1, cache)
        rows.append(
            (strategy, cold["eager_step"], cold["compile"][0], cold["compile"][1], warm["compile"][0])
        )
    print(
        f"\n## 4. torch.compile per distinct network: resnet_cifar {args.size} x{args.width}, unit ic, batch "
        f"{args.batch_size}, one training step (forward + backward), 1 thread, {device.type} (fresh processes)"
    )
    print(
        f"{'placement':<12} {'eager step ms':>13} {'cold s':>8} {'same proc. again s':>19} {'new proc., warm cache s':>24}"
    )
    for strategy, eager, cold_s, again_s, warm_s in rows:
        print(f"{strategy:<12} {1e3 * eager:>13.1f} {cold_s:>8.1f} {again_s:>19.1f} {warm_s:>24.1f}")
    print(
        "cold: empty Inductor cache (every distinct network pays this once); same proc. again: after "
        "torch._dynamo.reset() in the process that compiled it (a reused worker); new proc., warm cache: "
        "a new process on the Inductor cache folder the first one filled (FX graph and kernel caches)."
    )


def epochs_to(curve: list[dict[str, Any]], target: float) -> int | None:
    return next((e["epoch"] for e in curve if e["val_acc"] >= target), None)


def mean_std(values: list[float], fmt: str = "{:.2f}") -> str:
    if not values:
        return "-"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{fmt.format(statistics.mean(values))} ± {fmt.format(std)}"


def wld_claim(args: argparse.Namespace, device: torch.device) -> None:
    base = {
        "dataset": "mnist5k",
        "family": "resnet_cifar",
        "size": args.size,
        "width": args.width,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "device": str(device),
        "latency": False,
    }
    cache = tempfile.mkdtemp(prefix="icbench-teachers-")
    # The teacher's recipe is pinned to the default one, so --wld-lr changes the student's only.
    wld = {"enabled": True, "teacher_recipe": {"epochs": args.teacher_epochs, "lr": args.lr}}
    c_name = "(c) IC + WLD (warm start + distillation)"
    c_extra: dict[str, Any] = {"strategy": "all", "cache_dir": cache, "wld": wld}
    if args.wld_lr is not None:
        c_name, c_extra["lr"] = f"(c) IC + WLD, student lr {args.wld_lr:g}", args.wld_lr
    variants = [
        v
        for v in [
            ("(a) basic network (all conv)", {"strategy": "none"}),
            ("(b) IC from scratch", {"strategy": "all"}),
            (c_name, c_extra),
        ]
        if v[0][1] in args.variants
    ]
    rows = []
    for name, extra in variants:
        reached, finals, times, deltas = [], [], [], []
        for seed in range(args.seeds):
            m = train_candidate({**base, **extra, "seed": seed})
            e = epochs_to(m["curve"], args.target)
            if e is not None:
                reached.append(e)
            finals.append(m["val_acc"])
            times.append(m["train_time_s"])
            if m["unit_delta"] is not None:
                deltas.append(m["unit_delta"])
            print(
                f"  {name} seed {seed}: val acc by epoch "
                + " ".join(f"{c['val_acc']:.3f}" for c in m["curve"])
                + f"  ({m['train_time_s']:.1f} s)"
                + (f"  unit δ {m['unit_delta']:.3f}" if m["unit_delta"] is not None else ""),
                flush=True,
            )
        rows.append((name, reached, finals, times, deltas))
    teacher_files = list(Path(cache).glob("*.json"))
    print(
        f"\n## 2. WLD: epochs to {args.target:.1%} validation accuracy on mnist5k, resnet_cifar {args.size} "
        f"width {args.width}, {args.epochs} epochs (the default recipe), batch {args.batch_size}, "
        f"seeds 0..{args.seeds - 1}"
    )
    header = (
        f"{'variant':<44} {'reached':>8} {'epochs to target':>17} {'final val acc':>16} {'train s/run':>12}"
        f" {'unit δ':>13}"
    )
    print(header)
    print("-" * len(header))
    for name, reached, finals, times, deltas in rows:
        print(
            f"{name:<44} {f'{len(reached)}/{args.seeds}':>8} {mean_std([float(r) for r in reached]):>17} "
            f"{mean_std(finals, '{:.4f}'):>16} {statistics.mean(times):>12.1f}"
            f" {mean_std(deltas, '{:.3f}') if deltas else '-':>13}"
        )
    print(
        "unit δ: median over the unit sites of ‖unit(x) − conv(x)‖ / ‖conv(x)‖ after training (how far the units "
        f"moved from the plain convolution); units train with unit_lr_mult {Recipe().unit_lr_mult:g}, "
        f"unit_init {Recipe().unit_init}"
    )
    if teacher_files:
        teacher = json.loads(teacher_files[0].read_text())
        print(
            f"(c)'s teacher: the basic network trained {args.teacher_epochs} epoch(s) at lr {args.lr:g} once "
            f"(seed 0) and cached; validation accuracy {teacher['val_acc']:.4f}, trained in "
            f"{teacher['train_time_s']:.1f} s. Epochs to target count the student's epochs only."
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, see above)")
    parser.add_argument("--size", default=tiny_size("resnet_cifar"))
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--tax-reps", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--target", type=float, default=0.97)
    parser.add_argument("--teacher-epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=0.1, help="learning rate of every run and the teacher")
    parser.add_argument("--wld-lr", type=float, default=None, help="another learning rate for (c)'s student")
    parser.add_argument("--variants", default="abc", help="which of (a), (b), (c) to run, e.g. 'c'")
    parser.add_argument("--skip-tax", action="store_true")
    parser.add_argument("--skip-wld", action="store_true")
    parser.add_argument("--compile", action="store_true", help="also part 3, the torch.compile break-even")
    parser.add_argument("--compile-epochs", type=int, default=3)
    parser.add_argument("--compile-reps", type=int, default=2)
    parser.add_argument(
        "--compile-cache",
        action="store_true",
        help="also part 4: torch.compile time per distinct network, with and without Inductor's caches",
    )
    parser.add_argument(
        "--compile-networks", default="all,every_other", help="part 4's placements (strategies)"
    )
    add_smoke_options(parser, "parts 1 and 2 with one rep, one seed, one epoch; parts 3 and 4 only if asked")
    args = parser.parse_args()
    if args.smoke:
        args.tax_reps, args.seeds, args.epochs, args.teacher_epochs, args.target = 1, 1, 1, 1, 0.5
        args.width, args.batch_size = 0.25, 64
        args.compile_epochs, args.compile_reps, args.compile_networks = 2, 1, "all"
        args.smoke_folder = smoke_dir(args)
        if not (args.compile or args.compile_cache):
            print("smoke run: parts 3 and 4 (torch.compile) not run; add --compile / --compile-cache")

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    gpu = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
    print(f"machine: {machine()}")
    print(f"torch {torch.__version__}, device {device}{gpu}, {torch.get_num_threads()} CPU thread(s)")
    start = time.perf_counter()
    if not args.skip_tax:
        harness_tax(args, device)
    if not args.skip_wld:
        wld_claim(args, device)
    if args.compile:
        compile_break_even(args, device)
    if args.compile_cache:
        compile_cache(args, device)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
