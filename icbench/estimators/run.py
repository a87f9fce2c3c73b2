"""`run_study.py estimate TABLE`: score a table's candidates with each estimator and measure them."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from icbench.estimators.evaluate import ALL, EstimateError, check_names, check_table, evaluate
from icbench.estimators.report import write_report
from icbench.places import folder_problem

#: Estimators `estimate` runs when none are named: the baselines, the curve proxies and the zero-cost ones.
DEFAULT = ("random", "params", "macs", "unit_sites", "val_acc_e1", "val_acc_e2", "sotl", "final",
           "grad_norm", "snip", "synflow", "nwot", "jacob_cov", "supernet")  # fmt: skip


def estimate(
    table: str | os.PathLike[str],
    names: Sequence[str] = DEFAULT,
    *,
    repeats: int = 3,
    out_dir: str | os.PathLike[str] | None = None,
    echo: Callable[[str], None] = print,
    workers: int = 1,
) -> Path:
    """Measure `names` against the table and write estimators.md/.csv/.png (default folder
    `reports/<table stem>/`); returns the path of estimators.md. `workers` > 1: that many processes,
    one torch thread each (`evaluate`).

    Raises:
        IcbenchError: an unreadable table, one without two seeds or (for proxies) without the
            experiment to build its networks, or an unknown estimator; all before anything is computed.
    """
    from icbench.machine import cpu_model
    from icbench.report import signal
    from icbench.report.table import read_table

    path = Path(table)
    check_names(names)
    out = Path(out_dir) if out_dir else Path("reports") / path.stem
    problem = folder_problem(out)
    if problem:  # written after every estimator has scored: refused before the first
        where = "option --out: " if out_dir else ""
        raise EstimateError(f"{where}the report folder cannot be written: {problem}")
    frame, shared = read_table(path)
    seeds = check_table(frame, shared, names, str(path), repeats)
    ms = evaluate(frame, shared, names, repeats=repeats, path=str(path), echo=echo, workers=workers)
    ceilings = {}
    for s in signal.table_signal(frame):
        label = (
            ALL
            if "pooled" in s.stratum
            else f"{s.stratum['unit']}, WLD {'on' if s.stratum['wld'] else 'off'}"
        )
        ceilings[label] = s.ceiling
    threads = f"{workers} processes of one torch thread each" if workers > 1 else "one process"
    ok = frame[frame["status"] == "complete"] if "status" in frame else frame
    row_s = float(ok["wall_time_s"].mean()) if "wall_time_s" in ok and len(ok) else None
    return write_report(ms, out, table_path=str(path), ceilings=ceilings, seeds=seeds,
                        machine=f"{cpu_model()}, {os.cpu_count()} CPUs ({threads})", row_s=row_s)  # fmt: skip
