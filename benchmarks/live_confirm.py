#!/usr/bin/env python
"""A live MO-ASHA search against the replay's prediction for the same configuration.

Runs (or resumes) `studies/icbench_live_mo_asha.yaml` live, then scores its answer the way
`benchmarks/samplers.py` scores a replay (hypervolume regret of its observed front at the table's true
values) and compares it with the replayed `tpe+mo_asha` runs at the same number of trials
(`benchmarks/results/samplers.csv`: mean, 95 % interval of the mean, and the range over seeds). Also: how
often a live trial's validation accuracy equals the table's seed-0 row of the same candidate (the live
trials train with seed 0, as the table's seed-0 rows did, on the same kind of machine).

    python benchmarks/live_confirm.py [--study S] [--table T] [--samplers-csv C] [--smoke [--smoke-dir DIR]]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


#: The smoke run's search: the full benchmark's configuration (TPE + MO-ASHA) on `SMOKE_EXPERIMENT`.
SMOKE_STUDY = """sampler: {name: tpe, seed: 0}
n_trials: 3
execution: {cpus_per_trial: 1, max_concurrent: 2, scheduler: mo_asha, asha: {grace_period: 1, reduction_factor: 2}}
"""


def main(argv: list[str] | None = None) -> int:
    from _common import add_smoke_options, header, smoke_dir, smoke_live_study

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", default=str(REPO / "studies" / "icbench_live_mo_asha.yaml"))
    ap.add_argument("--table", default=str(REPO / "tables" / "icbench_resnet8_mnist5k.parquet"))
    ap.add_argument("--samplers-csv", default=str(REPO / "benchmarks" / "results" / "samplers.csv"))
    add_smoke_options(ap, "a live TPE + MO-ASHA search of 3 tiny trials against a hand-made table")
    args = ap.parse_args(argv)
    print(header("A live MO-ASHA search against the replay's prediction for the same configuration"))
    if args.smoke:
        folder = smoke_dir(args)
        study_path, table_path = smoke_live_study(folder, name="live_confirm_smoke", extra=SMOKE_STUDY)
        csv = folder / "samplers.csv"  # replayed regrets as benchmarks/samplers.py writes them
        csv.write_text(
            "config,axis,x,regret\n" + "".join(f"tpe+mo_asha,trials,3,{r}\n" for r in (0.0, 0.1, 0.3))
        )
        args.study, args.table, args.samplers_csv = str(study_path), str(table_path), str(csv)

    import optuna
    import pandas as pd
    from samplers import curves, true_values

    from icbench.report.stats import mean_interval
    from icbench.report.table import read_table
    from icbench.search import load_study, run_study
    from icbench.search.storage import storage_url

    study_file = Path(args.study)
    run_study(study_file, report=True)
    loaded = load_study(study_file)
    n = loaded.config.n_trials
    study = optuna.load_study(study_name=loaded.config.name, storage=storage_url(loaded))
    t0 = min(t.datetime_start for t in study.trials if t.datetime_start)
    trials = [
        {"state": t.state.name, "status": t.user_attrs.get("status"), "placement": t.user_attrs.get("placement"),
         "wld": bool(t.user_attrs.get("wld")), "acc": t.user_attrs.get("val_acc"), "macs": t.user_attrs.get("macs"),
         "end": (t.datetime_complete - t0).total_seconds() if t.datetime_complete else None}
        for t in study.trials
    ]  # fmt: skip
    table, _ = read_table(Path(args.table))
    truth, front, ref = true_values(table)
    live = curves({"trials": trials}, truth, front, ref, np.array([0.0]), n)["by_trial"][n - 1]
    bench = pd.read_csv(args.samplers_csv)
    rep = bench[(bench.config == "tpe+mo_asha") & (bench.axis == "trials") & (bench.x == n)][
        "regret"
    ].tolist()
    iv = mean_interval(rep)
    seed0 = table[table.seed == 0].set_index(["placement", "wld"])["val_acc"]
    done = [t for t in trials if t["state"] == "COMPLETE"]
    same = sum(abs(seed0.get((t["placement"], t["wld"]), np.nan) - t["acc"]) < 1e-9 for t in done)
    pruned = sum(t["state"] == "PRUNED" for t in trials)
    print(f"live {loaded.config.name}: {len(done)} complete, {pruned} pruned of {n}")
    print(f"live hypervolume regret after {n} trials: {live:.4f}")
    print(
        f"replay tpe+mo_asha after {n} trials ({len(rep)} seeds): mean {iv.mean:.4f}, 95% CI [{iv.low:.4f}, "
        f"{iv.high:.4f}], range [{min(rep):.4f}, {max(rep):.4f}]"
    )
    inside = min(rep) <= live <= max(rep)
    print(
        f"live result within the replay's range over seeds: {inside}; within the CI of the mean: {iv.low <= live <= iv.high}"
    )
    print(f"live complete trials whose val acc equals the table's seed-0 row: {same}/{len(done)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
