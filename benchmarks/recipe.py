"""Which recipe choices matter at short budgets: one change at a time from icbench's default recipe.

Usage:
    .venv/bin/python benchmarks/recipe.py [--dataset mnist5k] [--epochs 3] [--lrs 0.05,0.12,0.25]
        [--seeds 0] [--variants "NAME;..."] [--results FILE] [--smoke [--smoke-dir DIR]]

Every variant is the default `Recipe` (icbench/recipe.py) with one or two fields changed, trained on the
same plain ResNet-8 at width 0.5 (`train_candidate`, unit conv, one thread) at each learning rate and
seed; printed: validation accuracy per learning rate, the mean over them, and the mean change against
the default. Cells are appended to `--results` (JSON lines) and reused when the script runs again.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from _common import ROOT, add_smoke_options, append_cell, header, read_cells, smoke_dir, table  # noqa: E402

#: name -> the recipe fields it changes from the default.
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "batch 128": {"batch_size": 128},
    "batch 32": {"batch_size": 32},
    "cosine schedule": {"schedule": "cosine"},
    "onecycle, 30 % warm-up": {"schedule": "onecycle", "warmup_fraction": 0.3},
    "no warm-up": {"warmup_fraction": 0.0},
    "warm-up 10 %": {"warmup_fraction": 0.1},
    "no label smoothing": {"label_smoothing": 0.0},
    "label smoothing 0.2": {"label_smoothing": 0.2},
    "He init (family)": {"init": "family"},
    "EMA 0.99": {"ema_decay": 0.99},
    "augmentation on": {"augment": True},
    "previous default": {
        "batch_size": 128,
        "schedule": "cosine",
        "warmup_fraction": 0.0,
        "label_smoothing": 0.0,
        "init": "family",
        "augment": True,
    },  # fmt: skip
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lrs", default="0.05,0.12,0.25")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--variants", default=";".join(VARIANTS), help="names separated by ;")
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "recipe.jsonl"))
    add_smoke_options(parser, "two variants, one epoch, one learning rate")
    args = parser.parse_args(argv)
    if args.smoke:
        args.epochs, args.lrs, args.seeds, args.variants = 1, "0.12", "0", "default;batch 128"
        args.results = str(smoke_dir(args) / "recipe.jsonl")
    lrs = [float(v) for v in args.lrs.split(",")]
    seeds = [int(v) for v in args.seeds.split(",")]
    names = [v.strip() for v in args.variants.split(";") if v.strip()]
    for n in names:
        if n not in VARIANTS:
            parser.error(f"unknown variant {n!r}; valid: {', '.join(VARIANTS)}")

    import torch

    from icbench.training import train_candidate

    torch.set_num_threads(1)
    print(header("Short-budget recipe: one change at a time from the default"))
    results = Path(args.results)
    done = read_cells(results)
    for name in names:
        for lr in lrs:
            for seed in seeds:
                key = (args.dataset, args.epochs, name, lr, seed)
                if key in done:
                    continue
                start = time.perf_counter()
                out = train_candidate({
                    "dataset": args.dataset, "family": "resnet_cifar", "size": "resnet8", "width": 0.5,
                    "unit": "conv", "strategy": "none", "epochs": args.epochs, "lr": lr, "seed": seed,
                    "device": "cpu", "num_threads": 1, "latency": False, **VARIANTS[name],
                })  # fmt: skip
                done[key] = float(out["val_acc"])
                append_cell(results, key, done[key], time.perf_counter() - start)
    base = {(lr, s): done[(args.dataset, args.epochs, "default", lr, s)] for lr in lrs for s in seeds}
    rows = []
    for name in names:
        accs = {(lr, s): done[(args.dataset, args.epochs, name, lr, s)] for lr in lrs for s in seeds}
        per_lr = [statistics.mean(accs[(lr, s)] for s in seeds) for lr in lrs]
        delta = statistics.mean(accs[k] - base[k] for k in accs)
        rows.append([name, *(f"{a:.3f}" for a in per_lr), f"{statistics.mean(per_lr):.3f}", f"{delta:+.3f}"])
    print(
        f"\n## {args.dataset}, plain resnet8 x0.5, {args.epochs} epochs, seeds {seeds}: validation accuracy"
    )
    print(table(rows, ["variant", *(f"lr {lr}" for lr in lrs), "mean", "vs default"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
