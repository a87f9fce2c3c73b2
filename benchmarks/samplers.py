#!/usr/bin/env python
"""Samplers and schedulers compared on a benchmark table by replay: hypervolume regret over many seeds.

Every configuration (sampler, scheduler) is replayed `--seeds` times against the table through the same
executor `run_study.py run` uses (`execution.backend: replay`), in memory. After each trial, the search's
answer is its Pareto front *by the values it observed* (one seed per candidate); that front is then scored
at the candidates' true values (the table's mean over seeds), and the regret is

    regret(t) = 1 - HV(true values of the observed front at t) / HV(true front)

against one reference point for all (the lowest mean accuracy and the largest MACs in the table). It is
read as a function of simulated time (`max_concurrent` workers, the table's epoch times) and of trials.
Printed: the regret at fixed budgets, mean and 95 % t-interval over seeds; how many true-front
candidates each scheduler stopped; proposals per trained candidate. Also a CSV of every run's curve and a
PNG.

    python benchmarks/samplers.py                      # the shipped table, 20 seeds (docs/icbench.md figures)
    python benchmarks/samplers.py --ceiling 0.5        # + proposals under a MACs ceiling (half the space)
    python benchmarks/samplers.py --smoke --study S --table T   # CI: 2 seeds, few trials
    python benchmarks/samplers.py --estimators params,supernet --top 10   # + searches seeded by estimators

With `--estimators`, each named estimator (`icbench.estimators`) scores the table's candidates once (table
seed of repeat 0), and two configurations are added per estimator: `<name> top-K` trains only its top K
candidates, `<name>+tpe+mo_asha` is TPE + MO-ASHA with those K enqueued first. Either starts on the
simulated clock after the estimator's cost (its measured seconds; for estimators read from the table's
curves, the recorded seconds of the epochs they read).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import add_smoke_options, smoke_dir  # noqa: E402

#: name -> (sampler, scheduler, informed): what each configuration replays.
CONFIGS: dict[str, tuple[str, str, bool]] = {
    "random": ("random", "fifo", True),
    "tpe": ("tpe", "fifo", True),
    "nsga2": ("nsga2", "fifo", True),
    "gp": ("gp", "fifo", True),
    "tpe+asha": ("tpe", "asha", True),
    "tpe+mo_asha": ("tpe", "mo_asha", True),
    "nsga2+mo_asha": ("nsga2", "mo_asha", True),
}
#: The same searches with Optuna's samplers alone (no learning from pruned/rejected, no fallback).
UNINFORMED = {f"{k} (uninformed)": (s, sch, False) for k, (s, sch, _) in CONFIGS.items()}
DEFAULT = "random,tpe,nsga2,gp,tpe+asha,tpe+mo_asha,nsga2+mo_asha"


def true_values(table: Any) -> tuple[dict[tuple[str, bool], tuple[float, float]], np.ndarray, tuple]:
    """(candidate -> (mean val acc, MACs), true front points, reference point) of a table."""
    from icbench.report.pareto import pareto_mask

    ok = table[table["status"] == "complete"]
    means = ok.groupby(["placement", "wld"]).agg(acc=("val_acc", "mean"), macs=("macs", "first"))
    truth = {k: (float(r.acc), float(r.macs)) for k, r in means.iterrows()}
    pts = np.array(list(truth.values()))
    front = pts[pareto_mask(pts, ["maximize", "minimize"])]
    reference = (float(pts[:, 0].min()), float(pts[:, 1].max()) * 1.0001)
    return truth, front, reference


def _run_one(task: dict[str, Any]) -> dict[str, Any]:
    """One replay in memory: the per-trial record the curves are made from."""
    import optuna

    from icbench.search.checks import check_study
    from icbench.search.executors import EXECUTORS
    from icbench.search.runner import open_study
    from icbench.search.schema import load_study

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    overrides = {
        "sampler.name": task["sampler"], "sampler.seed": task["seed"], "sampler.informed": task["informed"],
        "execution.scheduler": task["scheduler"], "execution.table": task["table"],
        "n_trials": task["trials"], "name": "bench", "execution.max_consecutive_rejections": 500,
    }  # fmt: skip
    if task.get("max_macs"):
        overrides["constraints.max_macs"] = task["max_macs"]
    if task.get("start_s"):
        overrides["execution.replay_clock"] = {"start_s": task["start_s"]}
    loaded = load_study(task["study"], overrides)
    key = json.dumps({k: v for k, v in overrides.items() if k != "sampler.seed"}, sort_keys=True)
    checked = _CHECKED.get(key) or _CHECKED.setdefault(key, check_study(loaded, n_probe=1))
    study = open_study(loaded, "memory", storage=optuna.storages.InMemoryStorage())
    for params in task.get("seed_params", []):
        study.enqueue_trial(params, user_attrs={"proposed_by": f"estimator:{task['estimator']}"})
    t0 = time.perf_counter()
    EXECUTORS.get("replay")(loaded, checked, study, loaded.config.n_trials, None)
    wall = time.perf_counter() - t0
    trials = []
    for t in study.get_trials(deepcopy=False):
        a = t.user_attrs
        trials.append({
            "state": t.state.name, "status": a.get("status"), "placement": a.get("placement"),
            "wld": bool(a.get("wld")), "acc": a.get("val_acc"), "macs": a.get("macs"),
            "end": a.get("sim_end_s"), "fallback": a.get("proposed_by") == "fallback", "seed": a.get("seed"),
        })  # fmt: skip
    print(f"  {task['config']} seed {task['seed']}: {wall:.1f} s", file=sys.stderr, flush=True)
    return {**task, "trials": trials, "wall_s": wall}


_CHECKED: dict[str, Any] = {}


def curves(
    run: dict[str, Any], truth: dict, front: np.ndarray, ref: tuple, grid_t: np.ndarray, n: int
) -> dict:
    """Regret after each trial (in trial order) and at each time of `grid_t`."""
    from icbench.report.pareto import hypervolume_2d, pareto_mask

    dirs = ["maximize", "minimize"]
    best = hypervolume_2d(front, dirs, ref)
    done = sorted(
        (t for t in run["trials"] if t["state"] == "COMPLETE" and t["end"] is not None),
        key=lambda t: t["end"],
    )
    regrets, ends = [], []
    for i in range(1, len(done) + 1):
        seen = done[:i]
        obs = np.array([[t["acc"], t["macs"]] for t in seen], dtype=float)
        chosen = [seen[j] for j in np.flatnonzero(pareto_mask(obs, dirs))]
        true_pts = np.array([truth[(t["placement"], t["wld"])] for t in chosen])
        regrets.append(1.0 - hypervolume_2d(true_pts, dirs, ref) / best)
        ends.append(done[i - 1]["end"])
    by_trial = [regrets[min(i, len(regrets)) - 1] if regrets else 1.0 for i in range(1, n + 1)]
    by_time = [
        regrets[int(np.searchsorted(ends, t, side="right")) - 1] if ends and t >= ends[0] else 1.0
        for t in grid_t
    ]
    return {"by_trial": by_trial, "by_time": by_time, "end": ends[-1] if ends else math.nan}


def estimator_seeds(
    study: str, table: str, names: list[str], top: int
) -> dict[str, tuple[list[dict], float]]:
    """estimator -> (the trial parameters of its top `top` candidates, its cost in seconds)."""
    from icbench.estimators import ESTIMATORS, EstimateContext
    from icbench.estimators.evaluate import table_candidates
    from icbench.report.table import read_table
    from icbench.search.checks import check_study
    from icbench.search.schema import load_study
    from icbench.search.seeding import ranked_keys, space_candidates

    loaded = load_study(study, {"execution.table": table})
    points, _ = space_candidates(loaded, check_study(loaded, n_probe=1))
    frame, shared = read_table(table)
    cands = table_candidates(frame)
    ctx = EstimateContext(shared.get("experiment") or {}, tuple(sorted({int(s) for s in frame["seed"]})))
    out = {}
    for name in names:
        sc = ESTIMATORS.get(name)().score(cands, ctx, 0)
        ranked = ranked_keys(points, sc.values)
        out[name] = ([points[k][0] for k in ranked[:top]], sc.cost_s())
        print(f"  estimator {name}: {len(ranked)} candidates scored in {sc.cost_s():.1f} s", file=sys.stderr)
    return out


def seed_values(table: Any) -> dict[tuple[str, bool], dict[int, float]]:
    """candidate -> seed -> validation accuracy (complete rows)."""
    ok = table[table["status"] == "complete"]
    out: dict[tuple[str, bool], dict[int, float]] = {}
    for placement, wld, seed, acc in zip(ok["placement"], ok["wld"], ok["seed"], ok["val_acc"], strict=True):
        out.setdefault((str(placement), bool(wld)), {})[int(seed)] = float(acc)
    return out


def taken_away(run: dict[str, Any], by_seed: dict, front: np.ndarray, ref: tuple) -> dict[str, float]:
    """What a user takes away at the end of the search, as hypervolume regret against the true front:

    - `claimed`: the observed front at its observed (one-seed) values: what the search reports. Below the
      true regret (even negative) where lucky seeds flatter it.
    - `confirmed`: the observed front retrained on fresh seeds (the table's seeds other than the one each
      trial saw), its front taken again at those means and scored at them: what a user who confirms
      (`icbench confirm`) reports. The fresh seeds are independent of the selection, so the claim is honest.
    """
    from icbench.report.pareto import hypervolume_2d, pareto_mask

    dirs = ["maximize", "minimize"]
    best = hypervolume_2d(front, dirs, ref)
    done = [t for t in run["trials"] if t["state"] == "COMPLETE" and t["acc"] is not None]
    if not done:
        return {"claimed": 1.0, "confirmed": 1.0}
    obs = np.array([[t["acc"], t["macs"]] for t in done], dtype=float)
    chosen = [done[j] for j in np.flatnonzero(pareto_mask(obs, dirs))]
    claimed = 1.0 - hypervolume_2d(obs[pareto_mask(obs, dirs)], dirs, ref) / best
    fresh = []
    for t in chosen:
        seeds = by_seed[(t["placement"], t["wld"])]
        others = [v for s, v in seeds.items() if t["seed"] is None or s != int(t["seed"])]
        fresh.append([float(np.mean(others)) if others else t["acc"], t["macs"]])
    pts = np.array(fresh, dtype=float)
    confirmed = 1.0 - hypervolume_2d(pts[pareto_mask(pts, dirs)], dirs, ref) / best
    return {"claimed": claimed, "confirmed": confirmed}


def interval(values: list[float]) -> tuple[float, float, float]:
    from icbench.report.stats import mean_interval

    iv = mean_interval(values)
    return iv.mean, iv.low, iv.high


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--study", default=str(REPO / "studies" / "icbench_replay.yaml"))
    p.add_argument("--table", default=str(REPO / "tables" / "icbench_resnet8_mnist5k.parquet"))
    p.add_argument(
        "--configs", default=DEFAULT, help=f"comma-separated, of {', '.join([*CONFIGS, *UNINFORMED])}"
    )
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--trials", type=int, default=100)
    p.add_argument("--ceiling", type=float, default=None,
                   help="also replay tpe and nsga2 under a MACs ceiling at this quantile of the table's MACs, informed and not")  # fmt: skip
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "samplers"))
    add_smoke_options(p, "2 seeds, 12 trials; its table, CSV and plot go to the smoke folder")
    p.add_argument(
        "--estimators", default="", help="comma-separated estimators whose top candidates seed searches"
    )
    p.add_argument(
        "--top", type=int, default=10, help="how many of an estimator's candidates are trained or enqueued"
    )
    args = p.parse_args(argv)
    if args.smoke:
        args.seeds, args.trials = 2, 12
        if args.out == p.get_default("out"):
            args.out = str(smoke_dir(args) / "samplers")
    import pandas as pd

    from icbench.machine import cpu_model
    from icbench.report.table import read_table

    t_start = time.perf_counter()
    table, _ = read_table(args.table)
    truth, front, ref = true_values(table)
    by_seed = seed_values(table)
    configs = {**CONFIGS, **UNINFORMED}
    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in names if c not in configs]
    if unknown:
        p.error(f"unknown configs {unknown}; choose from {', '.join(configs)}")
    base = {
        "study": str(Path(args.study).resolve()),
        "table": str(Path(args.table).resolve()),
        "trials": args.trials,
    }
    tasks = [
        {**base, "config": c, "sampler": configs[c][0], "scheduler": configs[c][1], "informed": configs[c][2], "seed": s}
        for c in names for s in range(args.seeds)
    ]  # fmt: skip
    est_names = [n.strip() for n in args.estimators.split(",") if n.strip()]
    for name, (params, cost) in estimator_seeds(base["study"], base["table"], est_names, args.top).items():
        seeded = {**base, "estimator": name, "seed_params": params, "start_s": cost, "informed": True}
        tasks += [{**seeded, "config": f"{name} top-{args.top}", "sampler": "random", "scheduler": "fifo",
                   "trials": len(params), "seed": s} for s in range(args.seeds)]  # fmt: skip
        tasks += [{**seeded, "config": f"{name}+tpe+mo_asha", "sampler": "tpe", "scheduler": "mo_asha", "seed": s}
                  for s in range(args.seeds)]  # fmt: skip
    max_macs = None
    if args.ceiling is not None:
        macs = np.array([m for _, m in truth.values()])
        max_macs = float(np.quantile(macs, args.ceiling))
        for c in ("tpe", "nsga2"):
            for informed in (True, False):
                label = f"{c} ceiling" + ("" if informed else " (uninformed)")
                tasks += [{**base, "config": label, "sampler": c, "scheduler": "fifo", "informed": informed,
                           "seed": s, "max_macs": max_macs} for s in range(args.seeds)]  # fmt: skip
    ctx = mp.get_context("fork")
    with ctx.Pool(args.workers) as pool:
        runs = pool.map(_run_one, tasks, chunksize=1)

    fifo_ends = [
        max((t["end"] or 0) for t in r["trials"])
        for r in runs
        if r["scheduler"] == "fifo" and "max_macs" not in r and "estimator" not in r
    ]
    horizon = float(np.median(fifo_ends)) if fifo_ends else 1.0
    grid_t = np.linspace(0, horizon, 41)
    out_rows = []
    front_keys = {k for k, v in truth.items() if any(np.allclose(v, f) for f in front)}
    by_config: dict[str, list[dict]] = {}
    for r in runs:
        cur = curves(r, truth, front, ref, grid_t, args.trials)
        pruned_front = sum(
            1 for t in r["trials"] if t["state"] == "PRUNED" and (t["placement"], t["wld"]) in front_keys
        )
        trained = sum(1 for t in r["trials"] if t["state"] in ("COMPLETE", "PRUNED"))
        proposals = sum(
            1
            for t in r["trials"]
            if t["state"] in ("COMPLETE", "PRUNED") or t["status"] in ("rejected", "duplicate")
        )
        rec = {"config": r["config"], "seed": r["seed"], **cur, "pruned_front": pruned_front,
               "proposals_per_trained": proposals / max(trained, 1), "wall_s": r["wall_s"],
               **taken_away(r, by_seed, front, ref)}  # fmt: skip
        by_config.setdefault(r["config"], []).append(rec)
        for i, v in enumerate(cur["by_trial"]):
            out_rows.append(
                {"config": r["config"], "seed": r["seed"], "axis": "trials", "x": i + 1, "regret": v}
            )
        for x, v in zip(grid_t, cur["by_time"], strict=True):
            out_rows.append(
                {"config": r["config"], "seed": r["seed"], "axis": "sim_time_s", "x": float(x), "regret": v}
            )

    ref_name = "tpe+mo_asha" if "tpe+mo_asha" in by_config else "tpe"
    checkpoints_t = [0.25, 0.5, 1.0]
    checkpoints_n = [n for n in (10, 25, 50, 100) if n <= args.trials] or [args.trials]
    lines = [
        f"# samplers.py — {len(runs)} replays ({args.seeds} seeds x {len(by_config)} configurations, {args.trials} trials each)",
        f"machine: {cpu_model()}, {os.cpu_count()} CPUs; table {Path(args.table).name} ({len(table)} rows, "
        f"{len(truth)} candidates, true front {len(front)} candidates); reference point acc {ref[0]:.4f}, "
        f"MACs {ref[1] / 1e6:.3f} M; simulated horizon {horizon:.0f} s (median end of the full-budget searches)",
        "regret = 1 - HV(true values of the observed front) / HV(true front); mean [95% CI] over seeds. After "
        "the last trial, what a user takes away: *claimed* = the observed front at its one-seed values (below "
        "the true regret where lucky seeds flatter it); *confirmed* = that front retrained on the table's "
        "other seeds, its front at those means (`icbench confirm`)",
        "",
        "| config | " + " | ".join(f"t={f:g}H" for f in checkpoints_t) + " | " + " | ".join(f"n={n}" for n in checkpoints_n)
        + f" | claimed (one seed) | confirmed (fresh seeds) | time to mean final regret of {ref_name} (H; share of its median end)"
        " | true-front stopped | proposals/trained |",
        "|---|" + "---|" * (len(checkpoints_t) + len(checkpoints_n) + 5),
    ]  # fmt: skip
    ref_final, ref_end = None, math.nan
    if ref_name in by_config:
        ref_final = float(np.mean([rec["by_trial"][-1] for rec in by_config[ref_name]]))
        ref_end = float(np.median([rec["end"] for rec in by_config[ref_name]]))
    for config, recs in by_config.items():
        cells = []
        for f in checkpoints_t:
            i = int(round(f * (len(grid_t) - 1)))
            m, lo, hi = interval([rec["by_time"][i] for rec in recs])
            cells.append(f"{m:.3f} [{lo:.3f}, {hi:.3f}]")
        for n in checkpoints_n:
            m, lo, hi = interval([rec["by_trial"][n - 1] for rec in recs])
            cells.append(f"{m:.3f} [{lo:.3f}, {hi:.3f}]")
        for key in ("claimed", "confirmed"):
            m, lo, hi = interval([rec[key] for rec in recs])
            cells.append(f"{m:.3f} [{lo:.3f}, {hi:.3f}]")
        mean_t = np.mean([rec["by_time"] for rec in recs], axis=0)
        reach = "-"
        if ref_final is not None:
            hit = np.flatnonzero(mean_t <= ref_final + 1e-12)
            reach = (
                f"{grid_t[hit[0]] / horizon:.2f}H = {grid_t[hit[0]] / ref_end:.2f} of its time"
                if hit.size
                else "not reached"
            )
        pf = interval([rec["pruned_front"] for rec in recs])
        pp = interval([rec["proposals_per_trained"] for rec in recs])
        cells += [reach, f"{pf[0]:.2f} [{pf[1]:.2f}, {pf[2]:.2f}]", f"{pp[0]:.2f} [{pp[1]:.2f}, {pp[2]:.2f}]"]
        lines.append(f"| {config} | " + " | ".join(cells) + " |")
    if max_macs is not None:
        lines.append(
            f"\nceiling rows: constraints.max_macs = {max_macs / 1e6:.3f} MMac (the {args.ceiling:g} quantile of the table's MACs)"
        )
    lines.append(
        f"\nbenchmark wall time {time.perf_counter() - t_start:.1f} s with {args.workers} worker processes"
    )
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".txt").write_text(text + "\n")
    pd.DataFrame(out_rows).to_csv(out.with_suffix(".csv"), index=False)
    _plot(by_config, grid_t, args.trials, out.with_suffix(".png"))
    return 0


def _plot(by_config: dict[str, list[dict]], grid_t: np.ndarray, n: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from icbench.report.stats import mean_interval

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for config, recs in by_config.items():
        for ax, key, x in ((axes[0], "by_time", grid_t), (axes[1], "by_trial", np.arange(1, n + 1))):
            vals = np.array([rec[key] for rec in recs])
            ivs = [mean_interval(list(col)) for col in vals.T]
            ax.plot(x, [iv.mean for iv in ivs], label=config)
            ax.fill_between(x, [iv.low for iv in ivs], [iv.high for iv in ivs], alpha=0.15)
    axes[0].set_xlabel("simulated time (s)")
    axes[1].set_xlabel("trials")
    for ax in axes:
        ax.set_ylabel("hypervolume regret")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.suptitle("Hypervolume regret on the benchmark table (mean, 95% CI over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
