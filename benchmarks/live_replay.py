#!/usr/bin/env python
"""Does the replay predict a live search? Live searches against replays of the same sampler seeds.

Usage:
    .venv/bin/python benchmarks/live_replay.py [--study studies/icbench_v2_live.yaml]
        [--table tables/icbench_v2.parquet] [--sampler-seeds 0 1 2 3 4] [--calibrate-on 0]
        [--range-seeds 20] [--out benchmarks/results/live_replay] [--smoke [--smoke-dir DIR]]

1. Live: the study (every trial trains with the study's `training.seed`, as any live search) is run once
   per sampler seed, each as its own study `<name>_s<seed>` in runs/ (resumable: a finished one is read,
   not rerun). The call time, the real wall time and every trial's timings go to `<out>.jsonl`.
2. Calibration: the replay clock (`execution.replay_clock`) is fitted on the live run of `--calibrate-on`
   only: `epoch_scale` = median live / table epoch time of the same row; `setup_scale` = the same for the
   set-up time (wall minus training); `trial_overhead_s` = median of a live trial's driver-side time
   (Optuna start to completion) minus its own wall time; `start_s` = median time from the call to the
   first trial's start. The other sampler seeds are out of sample.
3. Replay: each sampler seed replayed with `replay_seed: study` and the calibrated clock (the point
   prediction for that live search), and `--range-seeds` sampler seeds replayed the same way (the
   replay's 95 % range for this configuration: 2.5th to 97.5th percentile of their regrets).
4. Compared per sampler seed: hypervolume regret after the last trial (the observed front scored at the
   table's mean over its seeds, as `benchmarks/samplers.py`), trials pruned, live trials whose value
   equals the table row, the same proposals in the same order, and the span from the first trial's
   start to the last trial's end, live against simulated. Summary in `<out>.txt`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import ROOT, add_smoke_options, header, smoke_dir, smoke_live_study  # noqa: E402


def _trials(study: Any) -> list[dict[str, Any]]:
    out = []
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        a = t.user_attrs
        out.append({
            "number": t.number, "state": t.state.name, "placement": a.get("placement"), "wld": bool(a.get("wld")),
            "acc": a.get("val_acc"), "macs": a.get("macs"), "wall_time_s": a.get("wall_time_s"),
            "train_time_s": a.get("train_time_s"),
            "epoch_times": [c.get("epoch_time_s") for c in a.get("curve") or []],
            "start": t.datetime_start.timestamp() if t.datetime_start else None,
            "end": t.datetime_complete.timestamp() if t.datetime_complete else None,
            "sim_start": a.get("sim_start_s"), "sim_end": a.get("sim_end_s"),
        })  # fmt: skip
    return out


def run_live(study_file: Path, seed: int, log: Path) -> dict[str, Any]:
    """Run (or read) the live search of one sampler seed; its record is appended to `log` once."""
    import optuna

    from icbench.search import load_study, run_study
    from icbench.search.storage import storage_url

    records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    done = {r["seed"]: r for r in records}
    overrides = {"name": f"{load_study(study_file).config.name}_s{seed}", "sampler.seed": seed}
    if seed not in done:
        t_call = time.time()
        run = run_study(study_file, report=False, overrides=overrides)
        if run.stop_reason:
            raise SystemExit(f"live seed {seed}: {run.stop_reason}")
        rec = {"seed": seed, "t_call": t_call, "wall_s": run.wall_time_s,
               "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}  # fmt: skip
        with log.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        done[seed] = rec
    loaded = load_study(study_file, overrides)
    study = optuna.load_study(study_name=loaded.config.name, storage=storage_url(loaded))
    return {**done[seed], "trials": _trials(study)}


def calibrate(live: dict[str, Any], rows: dict[tuple[str, bool], dict[str, Any]]) -> dict[str, float]:
    """The replay clock fitted on one live run (see the module docstring)."""
    epoch, setup, overhead = [], [], []
    for t in live["trials"]:
        row = rows.get((t["placement"], t["wld"]))
        if t["state"] != "COMPLETE" or row is None:
            continue
        epoch += [a / b for a, b in zip(t["epoch_times"], row["epoch_time_s_curve"], strict=False) if a and b]
        row_setup = float(row["wall_time_s"]) - float(row["train_time_s"])
        if t["wall_time_s"] and row_setup > 0:
            setup.append((t["wall_time_s"] - t["train_time_s"]) / row_setup)
        if t["start"] and t["end"] and t["wall_time_s"]:
            overhead.append(max(0.0, t["end"] - t["start"] - t["wall_time_s"]))
    starts = [t["start"] for t in live["trials"] if t["start"]]
    return {
        "start_s": max(0.0, min(starts) - live["t_call"]) if starts else 0.0,
        "trial_overhead_s": statistics.median(overhead) if overhead else 0.0,
        "setup_scale": statistics.median(setup) if setup else 1.0,
        "epoch_scale": statistics.median(epoch) if epoch else 1.0,
    }


def replay(study_file: Path, table: Path, seed: int, clock: dict[str, float]) -> list[dict[str, Any]]:
    """The replay of one sampler seed, in memory, with the study's seed and the calibrated clock."""
    import optuna

    from icbench.search.checks import check_study
    from icbench.search.executors import EXECUTORS
    from icbench.search.schema import load_study
    from icbench.search.study import open_study

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    overrides = {
        "name": "replay", "sampler.seed": seed, "execution.backend": "replay", "execution.table": str(table),
        "execution.replay_seed": "study", "execution.replay_clock": clock,
    }  # fmt: skip
    loaded = load_study(study_file, overrides)
    checked = _CHECKED.get(str(study_file)) or _CHECKED.setdefault(
        str(study_file), check_study(loaded, n_probe=1)
    )
    study = open_study(loaded, "memory", storage=optuna.storages.InMemoryStorage())
    EXECUTORS.get("replay")(loaded, checked, study, loaded.config.n_trials, None)
    return _trials(study)


_CHECKED: dict[str, Any] = {}


def regret(trials: list[dict[str, Any]], truth: dict, front: np.ndarray, ref: tuple) -> float:
    from samplers import curves

    run = {"trials": [{**t, "end": t["sim_end"] if t["sim_end"] is not None else t["end"]} for t in trials]}
    n = len(trials)
    return float(curves(run, truth, front, ref, np.array([0.0]), n)["by_trial"][n - 1])


def span(trials: list[dict[str, Any]], sim: bool) -> float:
    s, e = ("sim_start", "sim_end") if sim else ("start", "end")
    starts = [t[s] for t in trials if t[s] is not None]
    ends = [t[e] for t in trials if t[e] is not None]
    return max(ends) - min(starts) if starts and ends else float("nan")


#: The smoke run's search: the full benchmark's configuration (TPE + MO-ASHA) on `SMOKE_EXPERIMENT`.
SMOKE_STUDY = """sampler: {name: tpe, seed: 0}
n_trials: 4
execution: {cpus_per_trial: 1, max_concurrent: 2, scheduler: mo_asha, asha: {grace_period: 1, reduction_factor: 2}}
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", default=str(ROOT / "studies" / "icbench_v2_live.yaml"))
    ap.add_argument("--table", default=str(ROOT / "tables" / "icbench_v2.parquet"))
    ap.add_argument("--sampler-seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--calibrate-on", type=int, default=0)
    ap.add_argument("--range-seeds", type=int, default=20)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "live_replay"))
    add_smoke_options(
        ap, "one live TPE + MO-ASHA search of 4 tiny trials against 3 replays of a hand-made table"
    )
    args = ap.parse_args()
    if args.smoke:
        folder = smoke_dir(args)
        study, table = smoke_live_study(folder, name="live_replay_smoke", extra=SMOKE_STUDY)
        args.study, args.table, args.out = str(study), str(table), str(folder / "live_replay")
        args.sampler_seeds, args.calibrate_on, args.range_seeds = [0], 0, 3
    from samplers import true_values

    from icbench.report.table import read_table
    from icbench.search import load_study

    study_file, table_path, out = Path(args.study), Path(args.table).resolve(), Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    loaded = load_study(study_file)
    train_seed = int(loaded.config.training.seed)
    table, _ = read_table(table_path)
    seeds = sorted({int(s) for s in table["seed"]})
    truth, front, ref = true_values(table)
    rows = {
        (str(r["placement"]), bool(r["wld"])): r
        for r in table[table["seed"] == train_seed].to_dict("records")
    }

    lives = {s: run_live(study_file, s, out.with_suffix(".jsonl")) for s in args.sampler_seeds}
    clock = calibrate(lives[args.calibrate_on], rows)
    ranges = [
        regret(replay(study_file, table_path, s, clock), truth, front, ref) for s in range(args.range_seeds)
    ]
    lo, hi = float(np.quantile(ranges, 0.025)), float(np.quantile(ranges, 0.975))

    lines = [header("Live searches against their replays (same sampler seed, the study's training seed)"), ""]
    lines.append(
        f"study {study_file.name} ({loaded.config.n_trials} trials, sampler {loaded.config.sampler.name}, "
        f"scheduler {loaded.config.execution.scheduler_name}, training seed {train_seed}); table "
        f"{table_path.name} ({len(table)} rows, seeds {seeds}; truth = mean over those seeds)"
    )
    lines.append(
        f"clock calibrated on the live run of sampler seed {args.calibrate_on}: "
        + ", ".join(f"{k} {v:.3g}" for k, v in clock.items())
    )
    lines.append(
        f"replay's 95 % range of the regret ({args.range_seeds} sampler seeds, replay_seed study): "
        f"[{lo:.4f}, {hi:.4f}], mean {np.mean(ranges):.4f}"
    )
    lines += ["", "| sampler seed | live regret | replay regret | in range | same proposals | values = table "
              "| pruned live / replay | span live / sim (s) | live wall (s) |", "|---" * 9 + "|"]  # fmt: skip
    inside = 0
    for s, live in lives.items():
        rep = replay(study_file, table_path, s, clock)
        r_live, r_rep = regret(live["trials"], truth, front, ref), regret(rep, truth, front, ref)
        inside += lo <= r_live <= hi
        same_props = sum(
            a["placement"] == b["placement"] and a["wld"] == b["wld"]
            for a, b in zip(live["trials"], rep, strict=False)
        )
        done = [t for t in live["trials"] if t["state"] == "COMPLETE"]
        equal = sum(
            abs(float(rows[(t["placement"], t["wld"])]["val_acc"]) - t["acc"]) < 1e-9
            for t in done if (t["placement"], t["wld"]) in rows
        )  # fmt: skip
        pruned = (
            sum(t["state"] == "PRUNED" for t in live["trials"]),
            sum(t["state"] == "PRUNED" for t in rep),
        )
        lines.append(
            f"| {s}{' (calibration)' if s == args.calibrate_on else ''} | {r_live:.4f} | {r_rep:.4f} | "
            f"{'yes' if lo <= r_live <= hi else 'no'} | {same_props}/{len(live['trials'])} | {equal}/{len(done)} | "
            f"{pruned[0]} / {pruned[1]} | {span(live['trials'], False):.0f} / {span(rep, True):.0f} | "
            f"{live['wall_s']:.0f} |"
        )
    lines.append(f"\nlive regrets inside the replay's 95 % range: {inside} of {len(lives)}")
    text = "\n".join(lines) + "\n"
    out.with_suffix(".txt").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
