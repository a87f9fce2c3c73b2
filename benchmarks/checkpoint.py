"""What exact-resume checkpoints and data-parallel trials cost: checkpoint time and size per epoch, and
2 gloo workers against 1 worker.

Usage:
    .venv/bin/python benchmarks/checkpoint.py [--out benchmarks/results/checkpoint.txt] [--smoke]

Part 1, checkpoints: each network (IC units at every site, the default recipe) trains a few epochs
through `train_candidate` with a checkpoint folder on the local disk and one checkpoint per epoch, so
the times are the loop's own (`checkpoint_time_s`: `state.pt` and `progress.json` written, fsynced and
renamed). The share of the epoch is given twice: of the short epoch measured here, and of a full epoch
estimated from the measured training time per image (the epoch's wall time, validation pass included,
over its images) × the images of the dataset that network trains on at full scale: 45,000 for the
CIFAR ResNets (CIFAR-10's training split less 10 % validation) and 1,281,167 for ResNet-50 (ImageNet-1k).
Part 2, data-parallel: ResNet-20 on the same data and global batch, 2 workers of 1 thread (gloo, one
process each) against 1 worker of 2 threads (the same cores) and 1 worker of 1 thread (the same
compute per worker), epoch time measured inside the loop (epochs after the first). On a 2-core machine this is overhead, not speed-up: both use the same 2 cores.

Every figure comes from this run, on this machine, side by side; the machine's load is printed (on a
shared machine, other work slows every figure, not only one side of a ratio).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from _common import RESULTS, add_smoke_options, header, smoke_dir, table  # noqa: E402

#: Training images of one full epoch at the scale each network is used at.
FULL_EPOCH_IMAGES = {"cifar": 45_000, "imagenet": 1_281_167}

#: (label, family, size, image size, classes, samples generated, batch, epochs, full-epoch key).
CASES = [
    ("ResNet-8", "resnet_cifar", "resnet8", 32, 10, 4000, 128, 3, "cifar"),
    ("ResNet-20", "resnet_cifar", "resnet20", 32, 10, 4000, 128, 3, "cifar"),
    ("ResNet-50", "resnet", "resnet50", 224, 100, 80, 16, 2, "imagenet"),
]
SMOKE_CASES = [
    ("ResNet-8", "resnet_cifar", "resnet8", 16, 10, 200, 32, 2, "cifar"),
    ("ResNet (tiny)", "resnet", "resnet_tiny", 32, 10, 60, 16, 2, "imagenet"),
]
DDP = ("ResNet-20", "resnet_cifar", "resnet20", 32, 10, 4000, 128, 3)
SMOKE_DDP = ("ResNet-8", "resnet_cifar", "resnet8", 16, 10, 300, 32, 2)


def _config(case: tuple[Any, ...], threads: int) -> dict[str, Any]:
    _, family, size, image, classes, n, batch, epochs = case[:8]
    return {
        "dataset": "synthetic",
        "dataset_kwargs": {"n": n, "image_size": image, "num_classes": classes},
        "family": family,
        "size": size,
        "epochs": epochs,
        "batch_size": batch,
        "lr": 0.05,
        "latency": False,
        "device": "cpu",
        "num_threads": threads,
    }


def checkpoint_costs(cases: list[tuple[Any, ...]], folder: Path, threads: int) -> list[list[str]]:
    """Part 1: one `train_candidate` per network, one checkpoint per epoch."""
    from icbench.objectstore import Folder
    from icbench.training import train_candidate

    rows = []
    for case in cases:
        label, n, batch, key = case[0], case[5], case[6], case[8]
        where = folder / label.replace(" ", "_")
        t0 = time.perf_counter()
        m = train_candidate(_config(case, threads), checkpoint=Folder(str(where)), checkpoint_every=1)
        wall = time.perf_counter() - t0
        epochs = m["epochs_done"]
        size_mb = (where / "state.pt").stat().st_size / 1e6
        per_ckpt = m["checkpoint_time_s"] / epochs
        epoch_s = statistics.mean(e["epoch_time_s"] for e in m["curve"])  # state.pt is written after it
        images = (int(round(0.7 * n)) // batch) * batch  # synthetic: 70 % train, drop_last batches
        full_s = epoch_s / images * FULL_EPOCH_IMAGES[key]
        rows.append([
            label, f"{m['params'] / 1e6:.2f}", f"{size_mb:.1f}", f"{per_ckpt:.3f}", f"{epoch_s:.2f} ({images})",
            f"{100 * per_ckpt / epoch_s:.2f} %", f"{full_s:,.0f} ({FULL_EPOCH_IMAGES[key]:,})",
            f"{100 * per_ckpt / full_s:.4f} %", f"{wall:.0f}",
        ])  # fmt: skip
        print(" | ".join(rows[-1]), flush=True)
    return rows


def _worker(rank: int, world: int, init: str, config: dict[str, Any], out: str) -> None:
    import torch
    import torch.distributed as dist

    from icbench.training import train_candidate

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        metrics = train_candidate({**config, "num_threads": 1}, evaluate_test=False)
        Path(out, f"rank{rank}.json").write_text(json.dumps(metrics, default=str))
    finally:
        dist.destroy_process_group()


def _two_workers(config: dict[str, Any], folder: Path) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    ctx = multiprocessing.get_context("spawn")
    init = f"file://{folder}/pg"
    procs = [ctx.Process(target=_worker, args=(r, 2, init, config, str(folder))) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    if any(p.exitcode != 0 for p in procs):
        raise SystemExit(f"a data-parallel worker failed: exit codes {[p.exitcode for p in procs]}")
    return json.loads((folder / "rank0.json").read_text())


def _steady_epoch_s(metrics: dict[str, Any]) -> float:
    times = [e["epoch_time_s"] for e in metrics["curve"]]
    return statistics.median(times[1:] if len(times) > 1 else times)


def data_parallel(case: tuple[Any, ...], folder: Path, rounds: int) -> list[list[str]]:
    """Part 2: 2 workers × 1 thread against 1 worker × 2 threads (the same cores) and 1 worker × 1 thread
    (the same compute per worker), the runs taking turns."""
    from icbench.training import train_candidate

    config = _config(case, 2)
    times: dict[str, list[float]] = {"same cores": [], "one thread": [], "two workers": []}
    losses: dict[str, float] = {}
    for r in range(rounds):
        runs = {
            "same cores": lambda: train_candidate(config, evaluate_test=False),
            "one thread": lambda: train_candidate({**config, "num_threads": 1}, evaluate_test=False),
            "two workers": lambda r=r: _two_workers(config, folder / f"round{r}"),
        }
        for name, run in runs.items():
            metrics = run()
            times[name].append(_steady_epoch_s(metrics))
            losses[name] = metrics["curve"][-1]["train_loss"]
        print(f"round {r}: " + ", ".join(f"{k} {v[-1]:.2f} s/epoch" for k, v in times.items()), flush=True)
    base = times["same cores"]
    labels = {
        "same cores": "1 worker x 2 threads",
        "one thread": "1 worker x 1 thread",
        "two workers": "2 workers x 1 thread (gloo)",
    }
    return [
        [labels[k], f"{statistics.median(v):.2f}",
         f"{statistics.median([b / a for a, b in zip(base, v, strict=True)]):.2f}", f"{losses[k]:.4f}"]
        for k, v in times.items()
    ]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(RESULTS / "checkpoint.txt"), help="where the report goes")
    parser.add_argument("--rounds", type=int, default=2, help="data-parallel rounds (median)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads of the checkpoint part's runs (default 1: on a shared machine two threads of one "
        "process wait on each other at every barrier)",
    )
    add_smoke_options(parser, "ResNet-8 and the tiny torchvision ResNet, a 2-worker ResNet-8, 1 round")
    args = parser.parse_args()
    cases, ddp, rounds = CASES, DDP, args.rounds
    out = Path(args.out)
    work = Path(tempfile.mkdtemp(prefix="icbench-ckpt-bench-"))
    if args.smoke:
        cases, ddp, rounds = SMOKE_CASES, SMOKE_DDP, 1
        out = smoke_dir(args) / "checkpoint.txt"
        work = out.parent
    command = "$ .venv/bin/python " + " ".join(
        shlex.quote(a) for a in [f"benchmarks/{Path(__file__).name}", *sys.argv[1:]]
    )
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    lines = [
        command,
        header("checkpoint cost per epoch and the 2-worker trial's overhead"),
        f"uptime at start: {uptime}",
    ]
    print("\n".join(lines), flush=True)

    cols = ["network", "M params", "state.pt MB", "write s", "epoch s here (images)", "share here",
            "full epoch s, est. (images)", "share of full", "wall s"]  # fmt: skip
    part1 = table(checkpoint_costs(cases, work / "ckpt", args.threads), cols)
    part2 = table(
        data_parallel(ddp, work / "ddp", rounds),
        ["same global batch and data", "s/epoch", "ratio to first", "last train_loss"],
    )
    uptime_end = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    _, _, size, image, _, n, batch, epochs = ddp
    report = [
        *lines,
        "",
        "## Checkpoint per epoch (train_candidate, IC units at every site, default recipe: no EMA copy;",
        f"## state.pt = weights + SGD momentum + generators + curve; {args.threads} CPU thread(s); local disk,",
        "## fsync + rename)",
        part1,
        "share here: of the short epoch measured above. share of full: of a full epoch estimated as the",
        "measured time per training image x the full epoch's images (CIFAR-10 45,000; ImageNet-1k 1,281,167).",
        "An EMA (ema_decay > 0) adds one more copy of the weights to state.pt. ResNet-50 has a 100-class head",
        "here (synthetic data draws one 224x224 prototype per class): 1.8 M parameters fewer than the",
        "ImageNet network's 25.6 M, so its state.pt is about 7 % smaller than at 1,000 classes.",
        "",
        f"## Data-parallel: {size} on {n} synthetic {image}x{image} images (70 % train), global batch {batch},",
        f"## {epochs} epochs, epoch time of the epochs after the first (median over {rounds} round(s))",
        part2,
        f"This machine has {os.cpu_count()} cores. 2 workers x 1 thread and 1 worker x 2 threads use the same",
        "cores, so their ratio is the overhead of 2 processes and gloo's gradient all-reduce (and of",
        "BatchNorm over half batches), not a speed-up; each worker validates half the batches.",
        "Data-parallel pays off with a core or GPU per worker. On a loaded machine 2 threads of one",
        "process wait on each other at every barrier (see the load above), which flatters the 2 workers.",
        f"uptime at end: {uptime_end}",
    ]
    text = "\n".join(report) + "\n"
    print("\n" + text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
