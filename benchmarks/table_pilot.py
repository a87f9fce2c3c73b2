"""Which IC-Bench design carries placement signal per CPU-hour? Pilots of candidate table designs.

Usage:
    .venv/bin/python benchmarks/table_pilot.py [--designs NAME ...] [--placements 8] [--pilot-seed 0]
        [--out benchmarks/results/table_pilot] [--smoke [--smoke-dir DIR]]

`--smoke`: one design on synthetic images (2 placements of `ic`, seeds 0-1, one epoch), under a
temporary folder: the pilot, its table and the summary run for real; the figures mean nothing.

Each *design* is the v2 study (`studies/icbench_v2.yaml`) with a few settings changed: network width and
depth, epochs, dataset and the size of the validation split. Its pilot (`tabulate --pilot N`) trains N
placements drawn at random, the same for the units ic, ic_dual and se, WLD off, 5 seeds, plus the basic
network, through the live path (Ray Tune trials, two at a time, one CPU each). Each pilot is its own
study under runs/, so an interrupted benchmark resumes with the rows it has; its table is copied to
`<out>/<design>.parquet`.

For every design it prints the signal diagnostics of each unit stratum (`icbench.report.signal`: ICC and
the noise ceiling, the split-seed Spearman that no estimator or search can beat) and the cost: the mean
wall seconds of one row (one trial on one CPU, data, build, cost and test included) and what the full
v2 table of that design would take on this machine (every placement x 3 units x WLD off/on x 5 seeds,
two rows at a time; WLD rows costed like WLD-off rows, so a lower bound). Summary in `<out>.txt`.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import ROOT, add_smoke_options, header, smoke_dir  # noqa: E402

STUDY = ROOT / "studies" / "icbench_v2.yaml"
PILOT_SPACE = "../search_spaces/icbench_v2_pilot.yaml"
#: Rows of a full v2 table per placement (3 units x WLD off/on x 5 seeds), and the basic network's 5.
ROWS_PER_PLACEMENT, BASIC_ROWS = 30, 5

#: Candidate designs: settings of the v2 study each pilot changes (dotted keys, as `--set`).
DESIGNS: dict[str, dict[str, Any]] = {
    "r8_w0.5_e4_val750": {"family.width": 0.5, "budget.epochs": 4, "dataset.kwargs": {"val_fraction": 0.15}},
    "r8_w0.5_e4_val1500": {"family.width": 0.5, "budget.epochs": 4, "dataset.kwargs": {"val_fraction": 0.3}},
    "r8_w0.25_e4_val1500": {"family.width": 0.25, "budget.epochs": 4, "dataset.kwargs": {"val_fraction": 0.3}},
    "r8_w0.5_e2_val1500": {"family.width": 0.5, "budget.epochs": 2, "dataset.kwargs": {"val_fraction": 0.3}},
    "r8_w1.0_e4_val1500": {"family.width": 1.0, "budget.epochs": 4, "dataset.kwargs": {"val_fraction": 0.3}},
    "r8_w0.5_e10_digits": {
        "family.width": 0.5, "budget.epochs": 10, "dataset": {"name": "digits", "kwargs": {"image_size": 28}},
        "wld.teacher_epochs": 10,
    },
    "r14_w0.5_e4_val1500_blocks": {
        "family.size": "resnet14", "family.width": 0.5, "budget.epochs": 4,
        "dataset.kwargs": {"val_fraction": 0.3}, "strategy": "mask",
        "search_space": "../search_spaces/icbench_v2_pilot_blocks.yaml",
    },
}  # fmt: skip


#: The smoke run's design: the v2 study on synthetic images, narrower, one epoch, ic only, seeds 0-1.
SMOKE_DESIGN: dict[str, Any] = {
    "family.width": 0.25, "budget.epochs": 1,
    "dataset": {"name": "synthetic", "kwargs": {"n": 240, "image_size": 16, "in_chans": 1}},
}  # fmt: skip
SMOKE_SPACE = """
params:
  unit: {type: categorical, choices: [conv, ic]}
  sites: {type: mask, over: sites}
  seed: {type: categorical, choices: [0, 1]}
"""


def overrides(name: str) -> dict[str, Any]:
    # each pilot is its own study in runs/ (not in the v2 table's storage)
    return {"name": f"pilot_{name}", "search_space": PILOT_SPACE, "storage": None, **DESIGNS[name]}


def full_placements(name: str) -> int:
    """Placements of the design's full table: every non-empty mask over its eligible sites or blocks."""
    from icbench.api import build_candidate  # noqa: F401  (registers the families)
    from icbench.search.checks import check_study
    from icbench.search.study import load_study

    checked = check_study(load_study(STUDY, overrides(name)))
    return 2 ** int(checked.mask_len or 0) - 1  # the stem is a site the mask never sets: see mask_len


def run_design(name: str, n: int, pilot_seed: int, out: Path) -> Path:
    from icbench.search.tabulate import tabulate

    table = out / f"{name}.parquet"
    run = tabulate(STUDY, out=table, report=False, overrides=overrides(name), pilot=n, pilot_seed=pilot_seed)
    if run.stop_reason:
        raise SystemExit(f"{name}: {run.stop_reason}")
    return table


def summarise(name: str, table: Path) -> tuple[list[str], dict[str, float]]:
    import pandas as pd

    from icbench.report import signal

    frame = pd.read_parquet(table)
    done = frame[frame["status"] == "complete"]
    strata = [s for s in signal.table_signal(frame) if "pooled" not in s.stratum]
    sec = float(done["wall_time_s"].mean())
    placements = full_placements(name)
    full_rows = placements * ROWS_PER_PLACEMENT + BASIC_ROWS
    hours = full_rows * sec / 2 / 3600
    ceil = [s.ceiling for s in strata if not math.isnan(s.ceiling)]
    icc = [s.icc for s in strata if not math.isnan(s.icc)]
    mean_ceiling = sum(ceil) / len(ceil) if ceil else math.nan
    lines = [f"## {name}: {len(frame)} rows ({len(done)} complete), settings {DESIGNS[name]}"]
    for s in strata:
        lines.append(
            f"  {s.label:<22} mean {100 * s.mean:6.2f} %  σ_b {100 * math.sqrt(s.between_var):.2f}  "
            f"σ_w {100 * math.sqrt(s.within_var):.2f} pts  ICC {s.icc:+.2f} [{s.icc_low:+.2f}, {s.icc_high:+.2f}]"
            f"  p {s.p_value:.2g}  ceiling {s.ceiling:+.2f} [{s.ceiling_low:+.2f}, {s.ceiling_high:+.2f}]"
        )
    basic = done[done["unit"] == "conv"]["val_acc"]
    lines.append(
        f"  basic network {100 * basic.mean():.2f} % over {len(basic)} seeds; {sec:.1f} s per row; full table "
        f"{full_rows} rows ({placements} placements) ≈ {hours:.1f} h on this machine (2 rows at a time)"
    )
    lines.append(
        f"  mean over units: ICC {sum(icc) / len(icc) if icc else math.nan:+.2f}, noise ceiling "
        f"{mean_ceiling:+.2f}; ceiling per full-table hour {mean_ceiling / hours:+.3f}"
    )
    return lines, {"ceiling": mean_ceiling, "hours": hours}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--designs", nargs="+", default=list(DESIGNS), choices=list(DESIGNS))
    ap.add_argument("--placements", type=int, default=8)
    ap.add_argument("--pilot-seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "table_pilot"))
    ap.add_argument("--summarise-only", action="store_true", help="only read the pilots' tables")
    add_smoke_options(ap, "one tiny design on synthetic images, 2 placements x 2 seeds")
    args = ap.parse_args()
    if args.smoke:
        folder = smoke_dir(args)
        (folder / "smoke.space.yaml").write_text(SMOKE_SPACE)
        DESIGNS["smoke"] = {**SMOKE_DESIGN, "search_space": str(folder / "smoke.space.yaml"),
                            "runs_dir": str(folder / "runs"), "reports_dir": str(folder / "reports")}  # fmt: skip
        args.designs, args.placements, args.out = ["smoke"], 2, str(folder / "table_pilot")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = [header("IC-Bench v2 design pilots: placement signal and cost per design"), ""]
    lines.append(
        f"Each pilot: {args.placements} placements drawn with seed {args.pilot_seed} (the same for ic, ic_dual "
        "and se), WLD off, seeds 0-4, and the basic network; live units (default recipe). Noise ceiling: "
        "each seed's Spearman over placements with the other seeds' mean, averaged (bootstrap 95 % interval)."
    )
    for name in args.designs:
        table = out / f"{name}.parquet"
        if not args.summarise_only:
            table = run_design(name, args.placements, args.pilot_seed, out)
        if table.exists():
            block, _ = summarise(name, table)
            lines += ["", *block]
            print("\n".join(block), flush=True)
    text = "\n".join(lines) + "\n"
    Path(f"{out}.txt").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
