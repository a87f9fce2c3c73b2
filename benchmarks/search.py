"""Search efficiency at a fixed budget: hypervolume by sampler, and with WLD warm start versus from scratch.

Usage:
    .venv/bin/python benchmarks/search.py [--trials 8] [--epochs 1] [--seeds 3] [--concurrency 2]
        [--samplers random,tpe,nsga2] [--size resnet8] [--width 0.5] [--batch-size 128]
        [--teacher-epochs 2] [--optuna-defaults] [--skip-wld] [--keep DIR]

Every arm is a study on mnist5k (resnet_cifar `--size` at `--width`) with the same search space (unit,
placement strategy, per-block mask, learning rate; the space of `studies/quickstart.yaml` without its
`wld` choice), `--trials` trials of `--epochs` epoch(s) each, run through `icbench.search.run_study`
with one local Ray started once for all of them. Each arm is repeated for seeds 0..`--seeds`-1 (the
sampler's seed and the trials' training seed).

1. Samplers: `random`, `tpe`, `nsga2`, all training from scratch. Optuna's defaults would make both
   model-based samplers pure random search at this budget (TPE starts with 10 random trials, NSGA-II's
   first generation has 50), so unless `--optuna-defaults` is given they get
   `n_startup_trials = trials // 2` (TPE) and `population_size = max(2, trials // 2)` (NSGA-II).
2. WLD: the `random` arm again with WLD on (warm start from, and distillation of, the basic network
   trained `--teacher-epochs` epochs once, cached and shared by every trial and seed). With the same
   sampler seed the random sampler proposes the same candidates in the same order, so each WLD trial has
   a from-scratch twin in arm 1: the table also gives the mean paired accuracy gain.

The score of a study is the hypervolume of its COMPLETE trials' (validation accuracy, MACs) points
(`icbench.report.hypervolume_2d`) against one fixed reference point for every arm: accuracy 0 and
1.1 x the largest MACs in the space (`ic_dual` at every eligible site), printed with the results, and
normalised by the reference box (1.0 x reference MACs): 1.0 would be 100 % accuracy at zero MACs.
The default run (96 trials) takes about 15 minutes on 2 cores; flags scale it up.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from _common import header, mean_std, quiet_ray_env, table, timed, write_study  # noqa: E402

SPACE = """
params:
  unit: {type: categorical, choices: [ic, ic_dual, se, conv]}
  strategy: {type: categorical, choices: [all, every_other, last_k, mask]}
  k: {type: int, low: 1, high: 2, target: strategy_args.k, when: {strategy: [last_k]}}
  blocks: {type: mask, over: blocks, when: {strategy: [mask]}}
  lr: {type: float, low: 0.03, high: 0.3, log: true}
"""
MACS_MARGIN = 1.1


def sampler_kwargs(name: str, trials: int, optuna_defaults: bool) -> dict[str, Any]:
    """Sampler arguments scaled to the budget (see the module docstring)."""
    if optuna_defaults:
        return {}
    if name == "tpe":
        return {"n_startup_trials": max(1, trials // 2)}
    if name == "nsga2":
        return {"population_size": max(2, trials // 2)}
    return {}


def study_yaml(args: argparse.Namespace, sampler: str, seed: int, wld: bool) -> str:
    kwargs = sampler_kwargs(sampler, args.trials, args.optuna_defaults)
    kw = ", ".join(f"{k}: {v}" for k, v in kwargs.items())
    return (
        "dataset: {name: mnist5k}\n"
        f"family: {{name: resnet_cifar, size: {args.size}, width: {args.width}}}\n"
        f"n_trials: {args.trials}\n"
        f"sampler: {{name: {sampler}, seed: {seed}, kwargs: {{{kw}}}}}\n"
        f"budget: {{epochs: {args.epochs}}}\n"
        f"training: {{batch_size: {args.batch_size}, seed: {seed}}}\n"
        f"wld: {{enabled: {str(wld).lower()}, teacher_epochs: {args.teacher_epochs}}}\n"
        f"execution: {{cpus_per_trial: 1, max_concurrent: {args.concurrency}}}\n"
    )


def space_macs(args: argparse.Namespace) -> tuple[int, int]:
    """(MACs of the basic network, largest MACs in the space: `ic_dual` at every eligible site)."""
    from icbench.cost import count_macs
    from icbench.training import build_candidate

    out = []
    for unit in ("conv", "ic_dual"):
        cand = {"dataset": "mnist5k", "family": "resnet_cifar", "size": args.size, "width": args.width,
                "unit": unit, "strategy": "all"}  # fmt: skip
        model, _, shape = build_candidate(cand)
        out.append(count_macs(model, shape))
    return out[0], out[1]


def pretrain_teacher(path: Path) -> tuple[float, dict[str, Any]]:
    """Train (or find) the study's cached teacher before the WLD studies, as their trials would.

    One student epoch is trained with it (the public entry point trains a candidate); its time is not
    the teacher's. Returns (seconds of the whole call, the metrics).
    """
    from icbench.search import space as sp
    from icbench.search.schema import load_study
    from icbench.training import train_candidate

    loaded = load_study(path)
    cand = sp.base_candidate(loaded)
    cand["cache_dir"] = str((Path(loaded.config.runs_dir) / ".teachers").resolve())  # as the Proposer sets it
    cand["wld"]["enabled"] = True
    cand.update(epochs=1, num_threads=1)
    return timed(lambda: train_candidate(cand))


def score(path: Path, reference: tuple[float, float]) -> dict[str, Any]:
    """Hypervolume and the other figures of one finished study."""
    import math

    from icbench.report import hypervolume_2d, load_trials
    from icbench.report.pareto import candidates, pareto_front
    from icbench.search.runner import storage_url
    from icbench.search.schema import load_study

    loaded = load_study(path)
    trials = load_trials(storage_url(loaded), loaded.config.name)
    done = candidates(trials, ["val_acc", "macs"])
    hv = hypervolume_2d(done[["val_acc", "macs"]].to_numpy(float), ["maximize", "minimize"], reference)
    box = (1.0 - reference[0]) * reference[1]
    return {
        "hv": hv / box,
        "best_acc": float(done["val_acc"].max()) if len(done) else math.nan,
        "mean_acc": float(done["val_acc"].mean()) if len(done) else math.nan,
        "front": len(pareto_front(trials)),
        "complete": len(done),
        "train_s": float(done["train_time_s"].mean()) if len(done) else math.nan,
        "by_number": {int(r.number): (dict(_params(r)), float(r.val_acc)) for r in done.itertuples()},
    }


def _params(row: Any) -> dict[str, Any]:
    return {k: v for k, v in row._asdict().items() if k.startswith("param_") and v == v}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8, help="trials per study (default 8)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per trial (default 1)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per arm (default 3)")
    parser.add_argument("--concurrency", type=int, default=2, help="trials at a time (default 2)")
    parser.add_argument("--samplers", default="random,tpe,nsga2", help="comma-separated (default all three)")
    parser.add_argument("--size", default="resnet8")
    parser.add_argument("--width", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--teacher-epochs", type=int, default=2, help="epochs of the cached WLD teacher")
    parser.add_argument(
        "--optuna-defaults", action="store_true", help="Optuna's sampler defaults (no budget scaling)"
    )
    parser.add_argument("--skip-wld", action="store_true", help="only the sampler comparison")
    parser.add_argument("--keep", default=None, help="keep the studies in this folder (default: a temp dir)")
    args = parser.parse_args(argv)
    samplers = [s.strip() for s in args.samplers.split(",") if s.strip()]
    known = ("random", "tpe", "nsga2", "gp")
    for s in samplers:
        if s not in known:
            parser.error(f"unknown sampler {s!r}; known: {', '.join(known)}")
    if not args.skip_wld and "random" not in samplers:
        parser.error(
            "the WLD comparison pairs with the random arm: keep 'random' in --samplers or --skip-wld"
        )

    print(header("Search efficiency at a fixed budget: hypervolume by sampler, WLD vs from scratch"))
    quiet_ray_env()
    start = time.perf_counter()
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="icbench-search-"))
    basic_macs, max_macs = space_macs(args)
    reference = (0.0, MACS_MARGIN * max_macs)

    arms: list[tuple[str, str, bool]] = [(f"{s}, scratch", s, False) for s in samplers]
    if not args.skip_wld:
        arms.append(("random, WLD", "random", True))
    paths = {
        (arm, seed): write_study(
            folder,
            f"search_{sampler}_{'wld' if wld else 'scratch'}_s{seed}",
            study_yaml(args, sampler, seed, wld),
            SPACE,
        )
        for arm, sampler, wld in arms
        for seed in range(args.seeds)
    }

    teacher: tuple[float, dict[str, Any]] | None = None
    if not args.skip_wld:
        teacher = pretrain_teacher(paths[("random, WLD", 0)])

    import ray

    from icbench.search import run_study
    from icbench.search.runner import _init_ray  # the runner's own start-up, once for every study
    from icbench.search.schema import load_study

    ray_s, _ = timed(lambda: _init_ray(load_study(next(iter(paths.values())))))
    results: dict[tuple[str, int], dict[str, Any]] = {}
    try:
        # Seed-major order: every arm of a seed runs before the next seed, so slow spells hit all arms.
        for seed in range(args.seeds):
            for arm, _, _ in arms:
                wall, _ = timed(lambda p=paths[(arm, seed)]: run_study(p, report=False, echo=lambda s: None))
                r = score(paths[(arm, seed)], reference)
                r["wall"] = wall
                results[(arm, seed)] = r
                print(
                    f"  seed {seed} {arm:<16} hv {r['hv']:.4f}  best acc {r['best_acc']:.4f}  "
                    f"{r['complete']}/{args.trials} complete  {wall:.0f} s",
                    flush=True,
                )
    finally:
        ray.shutdown()

    print(
        f"\n## Hypervolume of (val_acc, MACs) after {args.trials} trials x {args.epochs} epoch(s), "
        f"mnist5k, resnet_cifar {args.size} width {args.width}, batch {args.batch_size}, "
        f"{args.concurrency} trials at a time, seeds 0..{args.seeds - 1} (mean ± std)"
    )
    print(
        f"reference point: val_acc 0, MACs {reference[1] / 1e6:.3f} M = {MACS_MARGIN} x the largest in the "
        f"space ({max_macs / 1e6:.3f} M, ic_dual everywhere; the basic network has {basic_macs / 1e6:.3f} M); "
        "hv normalised by the box 1.0 x reference MACs"
    )
    kw = {s: sampler_kwargs(s, args.trials, args.optuna_defaults) for s in samplers}
    print("sampler arguments: " + "; ".join(f"{s} {kw[s] or 'Optuna defaults'}" for s in samplers))
    rows = []
    base_hv = (
        [results[("random, scratch", s)]["hv"] for s in range(args.seeds)] if "random" in samplers else []
    )
    for arm, _, _ in arms:
        rs = [results[(arm, s)] for s in range(args.seeds)]
        hv = [r["hv"] for r in rs]
        ratio = (
            mean_std([h / b for h, b in zip(hv, base_hv, strict=True) if b > 0], "{:.3f}") if base_hv else "-"
        )
        rows.append(
            [
                arm,
                mean_std(hv, "{:.4f}"),
                ratio,
                mean_std([r["best_acc"] for r in rs], "{:.4f}"),
                mean_std([r["mean_acc"] for r in rs], "{:.4f}"),
                mean_std([float(r["front"]) for r in rs], "{:.1f}"),
                mean_std([float(r["complete"]) for r in rs], "{:.1f}"),
                mean_std([r["train_s"] for r in rs], "{:.1f}"),
                mean_std([r["wall"] for r in rs], "{:.0f}"),
            ]
        )
    cols = ["arm", "hypervolume (norm.)", "hv / random scratch", "best val_acc", "mean val_acc",
            "front size", "complete", "train s/trial", "study s"]  # fmt: skip
    print(table(rows, cols))

    print("\nPer seed, hypervolume (normalised):")
    print(
        table(
            [[arm] + [f"{results[(arm, s)]['hv']:.4f}" for s in range(args.seeds)] for arm, _, _ in arms],
            ["arm"] + [f"seed {s}" for s in range(args.seeds)],
        )
    )

    if teacher is not None:
        gains, pairs, mismatched = [], 0, 0
        for s in range(args.seeds):
            a = results[("random, scratch", s)]["by_number"]
            b = results[("random, WLD", s)]["by_number"]
            for number in sorted(set(a) & set(b)):
                if a[number][0] == b[number][0]:
                    pairs += 1
                    gains.append(b[number][1] - a[number][1])
                else:
                    mismatched += 1
        t_s, t_metrics = teacher
        epochs_scratch = args.trials * args.epochs
        print(
            f"\nWLD vs scratch, paired by trial (same sampler seed, same parameters): {pairs} pairs "
            f"({mismatched} trial numbers with different parameters left out); val_acc gain per candidate "
            f"{mean_std(gains, '{:+.4f}')}, WLD better in {sum(g > 0 for g in gains)}/{len(gains)}"
        )
        print(
            f"budget: each study trains {epochs_scratch} candidate epochs; the WLD arm also needs the teacher "
            f"({args.teacher_epochs} epochs of the basic network, trained once for all seeds: "
            f"{args.teacher_epochs / args.seeds:.2f} epochs per study here); teacher val_acc "
            f"{t_metrics['teacher_val_acc']:.4f} ({t_metrics['teacher_key']}); pre-training call "
            f"{t_s:.1f} s (teacher and one student epoch)"
        )
    print(f"\nRay start-up {ray_s:.1f} s (once); studies written to {folder}")
    print(f"total benchmark time {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
