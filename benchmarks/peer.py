"""icbench against the script a user would write instead: a raw Optuna + Ray Tune study, side by side.

The peer is `shared/peer/raw_optuna_ray.py` beside the checkout (`--peer PATH` to point elsewhere). It
is run as it is, never edited; this script only calls it.

Usage:
    .venv/bin/python benchmarks/peer.py [--part study,recipe] [--trials 16] [--epochs 3]
        [--concurrency 2] [--seeds 0] [--recipe-epochs 1,3,10] [--lrs 0.02,0.05,0.12,0.3]
        [--recipe-seeds 0,1] [--datasets mnist5k,digits] [--nets 1x8] [--previous]
        [--results FILE] [--smoke]

1. Study (`--part study`): the peer script with `trials epochs concurrency` as its arguments, then
   `run_study.py run` on a generated study over the same space: plain CIFAR ResNets (n blocks per stage
   in {1, 2, 3}, base width in {8, 12, 16}: icbench's resnet8/14/20 at width 0.5/0.75/1.0, the same
   networks), learning rate log-uniform in [0.02, 0.3], TPE seeded alike, the same trials, epochs and
   concurrency, each command timed from its start to its exit. Printed for both: wall time, the share
   of slot time outside training (1 − Σ trial training time / (concurrency × wall); each side's own
   training clock includes its per-epoch validation pass), best validation accuracy, and the
   hypervolume of (validation accuracy, MACs) against one reference (accuracy 0, 1.1 × the largest
   network's MACs), normalised by that box. The two sides validate on different 20 % / 15 % holdouts
   of mnist5k (the peer splits 4,000 / 1,000 by its own permutation; icbench 3,500 / 750 / 750
   stratified), so accuracies carry about ±1 point of split noise.
2. Recipe (`--part recipe`): per candidate, the same network trained by the peer's loop (its
   `resnet` builder imported from the script; its optimiser, OneCycleLR schedule and batch loop
   reproduced line for line, since the script's trainable only runs inside Ray Tune) and by icbench's
   default recipe (`train_candidate`), on the same icbench splits (the peer gets its [0, 1] inputs back)
   at every learning rate × epochs × dataset × seed, one thread each. `--previous` adds icbench's
   earlier default (batch 128, cosine without warm-up, no label smoothing, He init, the dataset's
   augmentation). Each finished cell is appended to `--results` (JSON lines) and skipped when the
   script runs again, so a long run resumes where it stopped.

`--smoke` runs a few-second version of both parts (CI runs it); its figures mean nothing.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from _common import (  # noqa: E402
    ROOT,
    add_smoke_options,
    append_cell,
    header,
    mean_std,
    read_cells,
    smoke_dir,
    table,
    write_study,
)

PEER = ROOT.parent / "shared" / "peer" / "raw_optuna_ray.py"
MACS_MARGIN = 1.1
#: peer (blocks per stage, base width) -> icbench (resnet_cifar size, width multiplier)
SIZES = {1: "resnet8", 2: "resnet14", 3: "resnet20"}
BASE_WIDTH = 16
#: icbench's default recipe before the short-budget recipe (`--previous`).
PREVIOUS = {
    "batch_size": 128,
    "schedule": "cosine",
    "warmup_fraction": 0.0,
    "label_smoothing": 0.0,
    "init": "family",
    "augment": None,
    "augment_from_epochs": 1,  # the dataset's augmentation at every budget
}


def _space(blocks: list[int], widths: list[int]) -> str:
    sizes = ", ".join(SIZES[n] for n in blocks)
    mults = ", ".join(str(w / BASE_WIDTH) for w in widths)
    return (
        "params:\n"
        f"  size: {{type: categorical, choices: [{sizes}]}}\n"
        f"  width: {{type: categorical, choices: [{mults}]}}\n"
        "  lr: {type: float, low: 0.02, high: 0.3, log: true}\n"
    )


def _study(trials: int, epochs: int, concurrency: int, seed: int) -> str:
    return (
        "dataset: {name: mnist5k}\n"
        "family: {name: resnet_cifar, size: resnet8, width: 0.5}\n"
        "unit: conv\nstrategy: none\n"
        "objectives: [val_acc, macs]\n"
        f"sampler: {{name: tpe, seed: {seed}}}\n"
        f"n_trials: {trials}\n"
        f"budget: {{epochs: {epochs}}}\n"
        f"training: {{seed: {seed}}}\n"
        f"execution: {{cpus_per_trial: 1, max_concurrent: {concurrency}}}\n"
    )


#: icbench's second row: the search the harness is built for, IC units placed per block of one basic
#: network (ResNet-8 x0.5), learning rate searched, WLD on: one teacher (trained once, cached; its training
#: counts as time outside the trials' training), the units' data calibration and δ in every trial.
IC_WLD_STUDY = """dataset: {{name: mnist5k}}
family: {{name: resnet_cifar, size: resnet8, width: 0.5}}
unit: ic
strategy: mask
objectives: [val_acc, macs]
sampler: {{name: tpe, seed: {seed}}}
n_trials: {trials}
budget: {{epochs: {epochs}}}
training: {{seed: {seed}}}
wld: {{enabled: true, teacher_epochs: {epochs}}}
execution: {{cpus_per_trial: 1, max_concurrent: {concurrency}}}
"""
IC_WLD_SPACE = """params:
  blocks: {type: mask, over: blocks}
  lr: {type: float, low: 0.02, high: 0.3, log: true}
"""


def max_macs(blocks: list[int], widths: list[int]) -> int:
    """MACs of the largest network of the space on mnist5k (28×28, 1 channel)."""
    from icbench.cost import count_macs
    from icbench.families import build_model

    model = build_model(
        "resnet_cifar", SIZES[max(blocks)], num_classes=10, in_chans=1, image_size=28,
        width=max(widths) / BASE_WIDTH,
    )  # fmt: skip
    return int(count_macs(model, (1, 28, 28)))


def hv(points: list[tuple[float, float]], reference: tuple[float, float]) -> float:
    from icbench.report import hypervolume_2d

    if not points:
        return 0.0
    box = (1.0 - reference[0]) * reference[1]
    return hypervolume_2d(points, ["maximize", "minimize"], reference) / box


def run_peer(peer: Path, args: argparse.Namespace, blocks: list[int], widths: list[int], ref: float) -> dict:
    env = {
        **os.environ,
        "PEER_N": ",".join(map(str, blocks)),
        "PEER_W": ",".join(map(str, widths)),
        "HV_REF_MACS": str(ref),
    }
    cmd = [sys.executable, str(peer), str(args.trials), str(args.epochs), str(args.concurrency)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())
    wall = time.perf_counter() - start
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith('{"trials"')), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"peer script failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    out = json.loads(line)
    points = [(float(a), float(m)) for a, m in out["points"]]
    return {
        "wall": wall,
        "train": float(out["sum_train_s"]),
        "points": points,
        "complete": int(out["trials"]),
        "own_overhead": float(out["overhead_frac"]),
    }


def run_icbench(
    folder: Path,
    args: argparse.Namespace,
    seed: int,
    blocks: list[int],
    widths: list[int],
    ic_wld: bool = False,
) -> dict:
    from icbench.report import load_trials
    from icbench.search.runner import storage_url
    from icbench.search.schema import load_study

    name = f"peer_icbench{'_ic_wld' if ic_wld else ''}_s{seed}"
    if ic_wld:
        text = IC_WLD_STUDY.format(
            seed=seed, trials=args.trials, epochs=args.epochs, concurrency=args.concurrency
        )
        path = write_study(folder, name, text, IC_WLD_SPACE)
    else:
        text = _study(args.trials, args.epochs, args.concurrency, seed)
        path = write_study(folder, name, text, _space(blocks, widths))
    cmd = [sys.executable, str(ROOT / "run_study.py"), "run", str(path)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(
            f"icbench study failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        )
    loaded = load_study(path)
    trials = load_trials(storage_url(loaded), name)
    done = trials[trials["state"] == "COMPLETE"]
    train = float(done["train_time_s"].sum())
    # The search's own window, as the peer measures its own (Tuner.fit): first trial start to last trial end.
    window = (trials["end_time"].max() - trials["start_time"].min()).total_seconds()
    return {
        "split": _split(done, window, args.concurrency),
        "wall": wall,
        "train": train,
        "points": [(float(a), float(m)) for a, m in zip(done["val_acc"], done["macs"], strict=True)],
        "complete": len(done),
        "own_overhead": 1.0 - train / (args.concurrency * window) if window > 0 else float("nan"),
    }


def _split(done: Any, window: float, concurrency: int) -> dict[str, Any]:
    """Where the search's slot-seconds outside training went: inside each slot's first trial (a fresh
    worker: imports, first use, a WLD teacher), inside the later trials (ask to tell, less the training
    loop), and between trials (slots with no trial: start-up stagger, the last trials' tail)."""
    ordered = done.sort_values("start_time")
    spans = (ordered["end_time"] - ordered["start_time"]).dt.total_seconds()
    outside = (spans - ordered["train_time_s"]).tolist()
    first, later = outside[:concurrency], outside[concurrency:]
    return {
        "slot_seconds": concurrency * window,
        "first": sum(first),
        "first_each": first,
        "later": sum(later),
        "later_each": statistics.mean(later) if later else math.nan,
        "between": concurrency * window - float(spans.sum()),
    }


def _split_line(side: str, split: dict[str, Any]) -> str:
    pct = 100.0 / split["slot_seconds"]
    each = ", ".join(f"{x:.1f}" for x in split["first_each"])
    return (
        f"  {side}: of {split['slot_seconds']:.0f} slot-seconds in the search, outside training: "
        f"{split['first']:.1f} s in the slots' first trials ({each}; {pct * split['first']:.1f} %), "
        f"{split['later']:.1f} s in the later trials ({split['later_each']:.2f} s each; "
        f"{pct * split['later']:.1f} %), {split['between']:.1f} s between trials "
        f"({pct * split['between']:.1f} %)"
    )


def part_study(args: argparse.Namespace, peer: Path) -> None:
    blocks, widths = ([1], [8]) if args.smoke else ([1, 2, 3], [8, 12, 16])
    ref = (0.0, MACS_MARGIN * max_macs(blocks, widths))
    print(
        f"\n## Whole study: {args.trials} trials x {args.epochs} epochs, {args.concurrency} at a time, "
        f"blocks {blocks} x base widths {widths} x lr log-uniform [0.02, 0.3], TPE; "
        f"hypervolume reference (acc 0, {ref[1] / 1e6:.3f} MMac)",
        flush=True,
    )
    rows, hvs = [], {"peer": [], "icbench": []}
    shares: dict[str, list[tuple[float, float]]] = {}
    splits: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="icbench-peer-"))
    sides = ("peer", "icbench") + (("icbench IC+WLD",) if args.ic_wld else ())
    for seed in args.seeds:
        for side in sides:
            if side == "peer":
                if seed != 0:
                    continue  # the peer's sampler seed is fixed at 0 inside the script
                r = run_peer(peer, args, blocks, widths, ref[1])
            else:
                r = run_icbench(folder, args, seed, blocks, widths, ic_wld=side != "icbench")
            outside = 1.0 - r["train"] / (args.concurrency * r["wall"])
            shares.setdefault(side, []).append((outside, r["own_overhead"]))
            best = max((a for a, _ in r["points"]), default=math.nan)
            h = hv(r["points"], ref) if side in hvs else math.nan  # IC+WLD searches another space
            if side in hvs:
                hvs[side].append(h)
            if "split" in r:
                splits.append(_split_line(f"{side} seed {seed}", r["split"]))
            rows.append([
                side, seed, r["complete"], f"{r['wall']:.0f}", f"{100 * outside:.1f} %",
                f"{100 * r['own_overhead']:.1f} %", f"{best:.4f}", "-" if math.isnan(h) else f"{h:.4f}",
            ])  # fmt: skip
            print(f"  {side} seed {seed}: {r['complete']} trials, {r['wall']:.0f} s, HV {h:.4f}", flush=True)
    print()
    print(
        table(
            rows,
            [
                "side",
                "seed",
                "trials",
                "wall (s)",
                "outside training",
                "in the search",
                "best val acc",
                "HV (norm.)",
            ],
        )  # fmt: skip
    )
    print(
        "outside training = 1 - sum of the trials' training time / (concurrency x wall): the whole command "
        "(process start, imports, Ray start, report); in the search = the same over the search alone (the "
        "peer: its Tuner.fit(); icbench: first trial start to last trial end, so its Tuner set-up before the "
        "first trial is not in it). Targets for icbench: < 5 % plain, < 10 % with IC + WLD (its teacher's "
        "training, the units' calibration and δ count as outside training)."
    )
    for side, values in shares.items():
        whole = statistics.mean(v[0] for v in values)
        search = statistics.mean(v[1] for v in values)
        print(
            f"  {side}: outside training {100 * whole:.1f} % of the command, {100 * search:.1f} % of the search"
        )
    if splits:
        print("icbench's search, split by where its slot time outside training went (from the study's trials):")
        print("\n".join(splits))
    if len(hvs["icbench"]) > 1:
        print(f"icbench HV over seeds {args.seeds}: {mean_std(hvs['icbench'], '{:.4f}')} (mean ± sample std)")
    if hvs["peer"] and hvs["icbench"]:
        print(f"HV icbench / peer: {statistics.mean(hvs['icbench']) / hvs['peer'][0]:.3f}")


def _load_peer_module(peer: Path) -> Any:
    spec = importlib.util.spec_from_file_location("raw_optuna_ray", peer)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    argv, sys.argv = sys.argv, [str(peer)]  # it reads its trial count etc. from sys.argv at import
    try:
        spec.loader.exec_module(module)
    finally:
        sys.argv = argv
    return module


def peer_loop(
    peer_mod: Any, splits: Any, blocks: int, width: int, lr: float, epochs: int, seed: int
) -> float:
    """The peer's trainable, line for line, on icbench's splits (inputs back in [0, 1])."""
    import torch
    import torch.nn.functional as F

    info = splits.info
    mean = torch.tensor(info.mean).view(1, -1, 1, 1)
    std = torch.tensor(info.std).view(1, -1, 1, 1)
    Xtr, ytr = splits.train.x * std + mean, splits.train.y
    Xva, yva = splits.val.x * std + mean, splits.val.y
    torch.manual_seed(seed)
    m = peer_mod.resnet(blocks, width, in_ch=info.in_chans, classes=info.num_classes)
    opt = torch.optim.SGD(m.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    n = len(Xtr)
    steps = epochs * ((n + 127) // 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    for _ in range(epochs):
        m.train()
        perm = torch.randperm(n)
        for i in range(0, n, 128):
            idx = perm[i : i + 128]
            loss = F.cross_entropy(m(Xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    m.eval()
    with torch.no_grad():
        return float((m(Xva).argmax(1) == yva).float().mean().item())


def icbench_run(
    dataset: str, blocks: int, width: int, lr: float, epochs: int, seed: int, recipe: dict
) -> float:
    from icbench.training import train_candidate

    out = train_candidate({
        "dataset": dataset, "family": "resnet_cifar", "size": SIZES[blocks], "width": width / BASE_WIDTH,
        "unit": "conv", "strategy": "none", "epochs": epochs, "lr": lr, "seed": seed, "device": "cpu",
        "num_threads": 1, "latency": False, **recipe,
    })  # fmt: skip
    return float(out["val_acc"])


def part_recipe(args: argparse.Namespace, peer: Path) -> None:
    import torch

    from icbench.data import load_dataset

    torch.set_num_threads(1)
    peer_mod = _load_peer_module(peer)
    results = Path(args.results)
    done = read_cells(results)
    arms = ["peer", "icbench"] + (["icbench, previous default"] if args.previous else [])
    nets = [tuple(int(v) for v in n.split("x")) for n in args.nets]
    print(
        f"\n## Per candidate: validation accuracy, same network, lr and epochs; seeds {args.recipe_seeds}; "
        f"results in {results}",
        flush=True,
    )
    for dataset in args.datasets:
        splits = load_dataset(dataset, None, device=torch.device("cpu"))
        for blocks, width in nets:
            for epochs in args.recipe_epochs:
                for lr in args.lrs:
                    for seed in args.recipe_seeds:
                        for arm in arms:
                            key = (dataset, blocks, width, epochs, lr, seed, arm)
                            if key in done:
                                continue
                            start = time.perf_counter()
                            if arm == "peer":
                                acc = peer_loop(peer_mod, splits, blocks, width, lr, epochs, seed)
                            else:
                                recipe = PREVIOUS if arm != "icbench" else {}
                                acc = icbench_run(dataset, blocks, width, lr, epochs, seed, recipe)
                            done[key] = acc
                            append_cell(results, key, acc, time.perf_counter() - start)
    rows, behind = [], []
    for dataset in args.datasets:
        for blocks, width in nets:
            for epochs in args.recipe_epochs:
                for lr in args.lrs:
                    accs = {
                        a: [done[(dataset, blocks, width, epochs, lr, s, a)] for s in args.recipe_seeds]
                        for a in arms
                    }
                    diff = [i - p for i, p in zip(accs["icbench"], accs["peer"], strict=True)]
                    d = statistics.mean(diff)
                    if d < 0:
                        behind.append(
                            f"{dataset} {SIZES[blocks]} x{width / BASE_WIDTH:g} {epochs} ep lr {lr}: {d:+.4f}"
                        )
                    rows.append([
                        dataset, f"{SIZES[blocks]} x{width / BASE_WIDTH:g}", epochs, lr,
                        *(mean_std(accs[a], "{:.4f}") for a in arms), f"{d:+.4f}",
                    ])  # fmt: skip
    print()
    cols = ["dataset", "network", "epochs", "lr", *(f"{a}" for a in arms), "icbench - peer"]
    print(table(rows, cols))
    n = len(args.recipe_seeds)
    print(f"(mean ± sample std over {n} seed(s); the difference is the mean of per-seed paired differences)")
    print("icbench behind the peer in: " + ("; ".join(behind) if behind else "no cell"))


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", default="study,recipe", help="comma-separated: study, recipe")
    parser.add_argument("--peer", default=str(PEER), help=f"the peer script (default {PEER})")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--seeds", type=_ints, default=[0], help="icbench study seeds (the peer's is 0)")
    parser.add_argument("--recipe-epochs", type=_ints, default=[1, 3, 10])
    parser.add_argument("--lrs", type=_floats, default=[0.02, 0.05, 0.12, 0.3])
    parser.add_argument("--recipe-seeds", type=_ints, default=[0, 1])
    parser.add_argument("--datasets", type=lambda s: s.split(","), default=["mnist5k", "digits"])
    parser.add_argument("--nets", type=lambda s: s.split(","), default=["1x8"], help="blocks x base width")
    parser.add_argument("--previous", action="store_true", help="also icbench's earlier default recipe")
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "peer_recipe.jsonl"))
    parser.add_argument(
        "--no-ic-wld", dest="ic_wld", action="store_false", help="leave out icbench's IC + WLD study row"
    )
    add_smoke_options(parser, "both parts, 2 trials of 1 epoch, one recipe cell per side")
    args = parser.parse_args(argv)
    peer = Path(args.peer)
    if not peer.is_file():
        parser.error(f"the peer script {peer} does not exist (give --peer PATH)")
    parts = [p.strip() for p in args.part.split(",") if p.strip()]
    for p in parts:
        if p not in ("study", "recipe"):
            parser.error(f"unknown part {p!r}; valid: study, recipe")
    if args.smoke:
        args.trials, args.epochs, args.seeds = 2, 1, [0]
        args.recipe_epochs, args.lrs, args.recipe_seeds, args.datasets = [1], [0.1], [0], ["digits"]
        if args.results == parser.get_default("results"):
            args.results = str(smoke_dir(args) / "recipe.jsonl")
    print(header("icbench against a raw Optuna + Ray Tune script at equal budget"))
    if "study" in parts:
        part_study(args, peer)
    if "recipe" in parts:
        part_recipe(args, peer)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
