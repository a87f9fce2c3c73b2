"""estimators.md, estimators.csv and estimators.png: what `evaluate` measured, with intervals and beside
the table's noise ceiling."""

from __future__ import annotations

import math
import platform
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from icbench.estimators._base import ESTIMATORS
from icbench.estimators.evaluate import ALL, TOP, Measurement

METRICS = ("spearman", "kendall", "top_precision", "regret")


def summary_rows(ms: Sequence[Measurement]) -> list[dict[str, Any]]:
    """One row per (estimator, scope): each metric's mean and 95 % t interval over the repeats, the cost."""
    from icbench.report.stats import mean_interval

    groups: dict[tuple[str, str], list[Measurement]] = {}
    for m in ms:
        groups.setdefault((m.estimator, m.scope), []).append(m)
    rows = []
    for (name, scope), group in groups.items():
        row: dict[str, Any] = {"estimator": name, "kind": ESTIMATORS.get(name).kind, "scope": scope,
                               "repeats": len(group), "candidates": group[0].metrics["n"]}  # fmt: skip
        for key in METRICS:
            iv = mean_interval([m.metrics[key] for m in group])
            row.update({key: iv.mean, f"{key}_low": iv.low, f"{key}_high": iv.high})
        row["cost_s"] = float(sum(m.cost_s for m in group) / len(group))
        row["setup_s"] = float(sum(m.setup_s for m in group) / len(group))
        rows.append(row)
    return rows


def _cell(row: Mapping[str, Any], key: str, digits: int = 2) -> str:
    m, lo, hi = row[key], row[f"{key}_low"], row[f"{key}_high"]
    if m is None or (isinstance(m, float) and math.isnan(m)):
        return "-"
    if isinstance(lo, float) and math.isnan(lo):
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _cost(s: float) -> str:
    return f"{s / 3600:.2f} h" if s >= 3600 else f"{s / 60:.1f} min" if s >= 60 else f"{s:.1f} s"


def write_report(
    ms: Sequence[Measurement],
    out_dir: str | Path,
    *,
    table_path: str,
    ceilings: Mapping[str, float],
    seeds: Sequence[int],
    machine: str,
    row_s: float | None = None,
) -> Path:
    """Write estimators.md/.csv/.png into `out_dir`; returns the path of estimators.md.

    Args:
        ceilings: stratum label (or `ALL`) -> the table's split-seed noise ceiling (`report.signal`).
        row_s: mean seconds of one table row (one candidate's full training), the unit costs are stated in.
    """
    import pandas as pd

    from icbench.report.tables import markdown_table

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = summary_rows(ms)
    pd.DataFrame(rows).to_csv(out / "estimators.csv", index=False)
    _plot(rows, out / "estimators.png")
    scopes = [ALL, *sorted({r["scope"] for r in rows if r["scope"] != ALL})]
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    repeats = max((r["repeats"] for r in rows), default=0)
    lines = [f"# Estimators measured against {Path(table_path).name}\n"]
    lines.append(
        f"Generated {generated} from `{table_path}` on {machine}. Repeats: {repeats} (repeat r scores with "
        f"table seed {list(seeds)[:repeats]}[r] and is measured against the candidates' mean over the other "
        f"seeds {list(seeds)}). Mean [95% t interval] over repeats. Spearman ρ and Kendall τ-b against the "
        f"truth; top-{TOP:.0%} precision; regret = true accuracy of the true best minus that of the "
        "estimator's top pick (points); cost = seconds to score every candidate of the table on this machine "
        "(`training` estimators: the recorded seconds of the epochs they read). `final` is one seed's full "
        "training: the noise ceiling of this protocol.\n"
    )
    lines.append("## Estimators\n")
    lines += [f"- `{n}` ({ESTIMATORS.get(n).kind}): {ESTIMATORS.get(n).describe}" for n in
              dict.fromkeys(r["estimator"] for r in rows)]  # fmt: skip
    lines.append("")
    for scope in scopes:
        sub = [r for r in rows if r["scope"] == scope]
        ceiling = ceilings.get(scope, math.nan)
        lines.append(f"## {scope[0].upper() + scope[1:]} ({sub[0]['candidates'] if sub else 0} candidates)\n")
        lines.append(
            f"Noise ceiling of the table here (split-seed Spearman, `report TABLE`): "
            f"{'-' if math.isnan(ceiling) else f'{ceiling:.2f}'}.\n"
        )
        body = [[f"`{r['estimator']}`", r["kind"], _cell(r, "spearman"), _cell(r, "kendall"),
                 _cell(r, "top_precision"), _cell(r, "regret"), _cost(r["cost_s"])] for r in sub]  # fmt: skip
        lines.append(markdown_table(["Estimator", "Kind", "Spearman ρ", "Kendall τ", f"Top {TOP:.0%} precision",
                                     "Regret (pts)", "Cost"], body, "llrrrrr"))  # fmt: skip
    lines.append("## Cost\n")
    unit = f"one candidate's full training ({row_s:.1f} s, the table's mean row)" if row_s else ""
    lines.append(
        "Seconds to score every candidate, split into what is paid once (a supernet's training) and per "
        "candidate" + (f", and as multiples of {unit}" if unit else "") + ".\n"
    )
    n_all = next((r["candidates"] for r in rows if r["scope"] == ALL), 0)
    body = []
    for r in (r for r in rows if r["scope"] == ALL):
        per = (r["cost_s"] - r["setup_s"]) / max(1, n_all)
        cells = [f"`{r['estimator']}`", _cost(r["setup_s"]), f"{per:.2f} s", _cost(r["cost_s"])]
        if row_s:
            cells += [f"{r['setup_s'] / row_s:.1f}", f"{r['cost_s'] / row_s:.1f}"]
        body.append(cells)
    head = ["Estimator", "Set-up", "Per candidate", "All candidates"]
    if row_s:
        head += ["Set-up (x one training)", "All (x one training)"]
    lines.append(markdown_table(head, body, "l" + "r" * (len(head) - 1)))
    lines.append("![Kendall τ against cost](estimators.png)\n")
    lines.append(f"Report built with Python {platform.python_version()}.\n")
    path = out / "estimators.md"
    path.write_text("\n".join(lines))
    return path


def _plot(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        if r["scope"] != ALL or math.isnan(r["kendall"]):
            continue
        cost = max(r["cost_s"], 1e-3)
        lo, hi = r["kendall_low"], r["kendall_high"]
        err = None if math.isnan(lo) else [[r["kendall"] - lo], [hi - r["kendall"]]]
        ax.errorbar([cost], [r["kendall"]], yerr=err, fmt="o", capsize=3)
        ax.annotate(
            r["estimator"], (cost, r["kendall"]), textcoords="offset points", xytext=(4, 4), fontsize=8
        )
    ax.set_xscale("log")
    ax.set_xlabel("cost to score every candidate (s, log)")
    ax.set_ylabel("Kendall τ over all candidates")
    ax.axhline(0, color="grey", lw=0.8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
