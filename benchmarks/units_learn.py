"""Do the units learn? Liveness δ and validation accuracy of each unit against the basic network.

Usage:
    .venv/bin/python benchmarks/units_learn.py [--datasets mnist5k digits] [--widths 0.5 1.0]
        [--epochs 2 4 10] [--seeds 5] [--units ic ic_dual se]
        [--settings default legacy=1:zero ...] [--jobs 2] [--out benchmarks/results/units_learn]
        [--smoke [--smoke-dir DIR]]

Every run is one candidate of a CIFAR-style ResNet-8 with the unit at every eligible site, trained from
scratch with the default recipe (no WLD), `train_candidate` as a study trial runs it. A *setting* is the
units' learning-rate multiplier and threshold initialisation, `name=MULT:INIT` (`default` is the recipe's
default, `legacy=1:zero` the behaviour before those settings existed). Each (dataset, width, epochs,
seed) also trains the basic network (every site a plain convolution), and each unit is compared with it
paired by seed: mean difference of validation accuracy with its 95 % t interval, and the seeds won.

δ (`icbench.units.unit_deltas`) is how much a trained unit changes its site's output, on the first 256
validation images: ‖unit(x) − conv(x)‖ / ‖conv(x)‖, median over the sites.

Runs go `--jobs` at a time, one thread each (on the CPU a run's numbers do not depend on what else
runs), and each finished run is appended to `<out>.jsonl` at once: an interrupted benchmark resumes where
it stopped, and a run already there is not trained again. The summary is written to `<out>.txt`.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import ROOT, add_smoke_options, header, smoke_dir  # noqa: E402

from icbench.recipe import LEGACY_UNIT_RECIPE, Recipe  # noqa: E402

DEFAULT = Recipe()


def parse_setting(text: str) -> tuple[str, float, str]:
    """`name=MULT:INIT`, or `default` / `legacy` alone."""
    if text == "default":
        return "default", float(DEFAULT.unit_lr_mult), DEFAULT.unit_init
    if text == "legacy":
        return "legacy", float(LEGACY_UNIT_RECIPE["unit_lr_mult"]), str(LEGACY_UNIT_RECIPE["unit_init"])
    name, _, spec = text.partition("=")
    mult, _, init = spec.partition(":")
    if not name or not mult or init not in ("data", "zero"):
        raise SystemExit(f"--settings: {text!r} is not NAME=MULT:INIT (INIT data or zero), default or legacy")
    return name, float(mult), init


def run_key(r: dict[str, Any]) -> str:
    return json.dumps(
        [r["dataset"], r["width"], r["epochs"], r["unit"], r["unit_lr_mult"], r["unit_init"], r["seed"]]
    )


def train_one(job: dict[str, Any]) -> dict[str, Any]:
    from icbench.training.candidate import train_candidate

    m = train_candidate(
        {
            "dataset": job["dataset"],
            "family": "resnet_cifar",
            "size": "resnet8",
            "width": job["width"],
            "unit": job["unit"],
            "strategy": "all",
            "epochs": job["epochs"],
            "seed": job["seed"],
            "unit_lr_mult": job["unit_lr_mult"],
            "unit_init": job["unit_init"],
            "device": job["device"],
            "num_threads": 1,
            "latency": False,
        },
        evaluate_test=False,
    )
    return {
        **job,
        "val_acc": m["val_acc"],
        "unit_delta": m["unit_delta"],
        "unit_deltas": m["unit_deltas"],
        "train_time_s": round(m["train_time_s"], 2),
    }


def jobs_of(args: argparse.Namespace) -> list[dict[str, Any]]:
    settings = [parse_setting(s) for s in args.settings]
    out = []
    for dataset in args.datasets:
        for width in args.widths:
            for epochs in args.epochs:
                for seed in range(args.seeds):
                    base = {"dataset": dataset, "width": width, "epochs": epochs, "seed": seed,
                            "device": args.device}  # fmt: skip
                    out.append({**base, "unit": "conv", "setting": "basic", "unit_lr_mult": 1.0,
                                "unit_init": "zero"})  # fmt: skip
                    for unit in args.units:
                        for name, mult, init in settings:
                            out.append({**base, "unit": unit, "setting": name, "unit_lr_mult": mult,
                                        "unit_init": init})  # fmt: skip
    return out


def fmt_pts(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{100 * v:+.2f}"


def summary(rows: list[dict[str, Any]], args: argparse.Namespace) -> list[str]:
    from icbench.report.stats import mean_interval, paired

    lines = []
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["width"], r["epochs"]), []).append(r)
    for (dataset, width, epochs), rs in sorted(groups.items()):
        basic = {r["seed"]: r["val_acc"] for r in rs if r["unit"] == "conv"}
        lines += [
            "",
            f"## {dataset}, ResNet-8 x{width}, {epochs} epochs (basic network: "
            f"{100 * statistics.mean(basic.values()):.2f} % over {len(basic)} seeds)" if basic else
            f"## {dataset}, ResNet-8 x{width}, {epochs} epochs",
            "",
            "| unit | setting (mult:init) | seeds | median δ, mean [min, max] | val acc (%) | "
            "Δ val vs basic (points) [95 % CI] | seeds won |",
            "| --- | --- | ---: | --- | ---: | --- | ---: |",
        ]  # fmt: skip
        cells: dict[tuple, list[dict[str, Any]]] = {}
        for r in rs:
            if r["unit"] != "conv":
                cells.setdefault((r["unit"], r["setting"], r["unit_lr_mult"], r["unit_init"]), []).append(r)
        for (unit, setting, mult, init), cs in sorted(cells.items()):
            deltas = [c["unit_delta"] for c in cs if c["unit_delta"] is not None]
            acc = {c["seed"]: c["val_acc"] for c in cs}
            p = paired(unit, acc, "basic", basic)
            won = sum(acc[s] > basic[s] for s in p.seeds)
            dstr = (
                f"{statistics.mean(deltas):.3f} [{min(deltas):.3f}, {max(deltas):.3f}]" if deltas else "n/a"
            )
            ci = f"{fmt_pts(p.diff.mean)} [{fmt_pts(p.diff.low)}, {fmt_pts(p.diff.high)}]"
            lines.append(
                f"| {unit} | {setting} ({mult:g}:{init}) | {len(cs)} | {dstr} | "
                f"{100 * mean_interval(list(acc.values())).mean:.2f} | {ci} | {won}/{p.n} |"
            )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["mnist5k", "digits"])
    ap.add_argument("--widths", nargs="+", type=float, default=[0.5, 1.0])
    ap.add_argument("--epochs", nargs="+", type=int, default=[2, 4, 10])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--units", nargs="+", default=["ic", "ic_dual", "se"])
    ap.add_argument("--settings", nargs="+", default=["default", "legacy"])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "units_learn"))
    add_smoke_options(ap, "ic against the basic network, width 0.25, one epoch, 2 seeds, one job")
    args = ap.parse_args()
    if args.smoke:
        args.datasets, args.widths, args.epochs, args.seeds = ["mnist5k"], [0.25], [1], 2
        args.units, args.settings, args.jobs = ["ic"], ["default"], 1
        args.out = str(smoke_dir(args) / "units_learn")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    jsonl = out.with_suffix(".jsonl")
    done: dict[str, dict[str, Any]] = {}
    if jsonl.exists():
        for line in jsonl.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                done[run_key(r)] = r
    wanted = jobs_of(args)
    todo = [j for j in wanted if run_key(j) not in done]
    print(header("units_learn: do the units leave the identity, and what does it cost or gain?"))
    print(
        f"{len(wanted)} runs, {len(wanted) - len(todo)} already in {jsonl.name}, {len(todo)} to train",
        flush=True,
    )
    with ProcessPoolExecutor(max_workers=args.jobs) as pool, jsonl.open("a") as f:
        futures = [pool.submit(train_one, j) for j in todo]
        for i, fut in enumerate(as_completed(futures), 1):
            r = fut.result()
            done[run_key(r)] = r
            f.write(json.dumps(r) + "\n")
            f.flush()
            print(
                f"[{i}/{len(todo)}] {r['dataset']} x{r['width']} {r['epochs']}ep {r['unit']} {r['setting']} "
                f"seed {r['seed']}: val {100 * r['val_acc']:.2f} % delta {r['unit_delta']} "
                f"({r['train_time_s']:.0f} s)",
                flush=True,
            )
    rows = [done[run_key(j)] for j in wanted]
    lines = [
        header("units_learn: do the units leave the identity, and what does it cost or gain?"),
        f"default setting: unit_lr_mult {DEFAULT.unit_lr_mult:g}, unit_init {DEFAULT.unit_init}; "
        f"legacy: {LEGACY_UNIT_RECIPE['unit_lr_mult']:g}:{LEGACY_UNIT_RECIPE['unit_init']}",
        "every unit at every eligible site, no WLD; δ on 256 validation images; intervals: Student's t "
        "of the per-seed paired difference against the basic network",
        *summary(rows, args),
    ]
    text = "\n".join(lines) + "\n"
    out.with_suffix(".txt").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
