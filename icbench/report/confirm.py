"""The confirmation report: each chosen trial's search-time accuracy next to its accuracy on fresh seeds.

Reads the source study and its confirmation study (`icbench.search.confirm`) and writes, into the
confirmation's report folder:

- confirm.md: per candidate, the search-time value (one run, one seed, the best of many: optimistic), the
  confirmed mean over K seeds with its 95 % t interval, their difference (the optimism the search carried),
  whether the candidate stays on the front by confirmed means, and the paired comparisons of every
  candidate against the basic network of its size (Holm-corrected, with a verdict);
- confirm.csv and paired.csv: the same numbers raw; confirm.tex: the confirmed-results table for a paper
  (mean ± half-width of the 95 % interval, seed count); trials.csv: every confirmation trial.

It never trains. A source study with no front gets a confirm.md that says so.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from icbench.liveness import is_inert
from icbench.report import stats, tables
from icbench.report.aggregate import PairedTable, comparison_metric
from icbench.report.build import _atomic, _write_text, tabular
from icbench.report.liveness import fmt_delta
from icbench.report.load import StudyData, load_study
from icbench.report.pareto import pareto_mask

if TYPE_CHECKING:
    import pandas as pd

    from icbench.report.load import StorageLike

#: Study user attribute of a confirmation study: {study, storage, fingerprint_hash, trials, basic_trials,
#: seeds}. Defined here, where the report reads it; `icbench.search.confirm` writes it.
LINK_ATTR = "confirmation_of"
#: Trial user attributes naming a confirmation trial's point: the source trial and the seed.
SOURCE_ATTR = "source_trial"
SEED_ATTR = "confirm_seed"
SOURCE_COLUMN = f"attr_{SOURCE_ATTR}"

CONFIRM_FILES = ("confirm.md", "confirm.csv", "confirm.tex", "paired.csv", "trials.csv")


@dataclass
class Candidate:
    """One source trial and what its confirmation measured."""

    number: int
    source: pd.Series
    trials: pd.DataFrame  # its COMPLETE confirmation trials
    failed: int  # confirmation trials of it that trained and failed (diverged, errors)
    val: stats.Interval
    test: stats.Interval

    @property
    def is_basic(self) -> bool:
        return bool(self.source.get("is_basic")) and not tables.missing(self.source.get("is_basic"))


def _net_key(row: Any) -> tuple[str, ...]:
    return tuple(str(row.get(k)) for k in ("family", "size", "width"))


def _network(row: Any) -> str:
    width = row.get("width")
    size = tables.fmt_text(row.get("size"))
    try:
        w = float(width)
    except (TypeError, ValueError):
        return size
    return size if w == 1.0 or math.isnan(w) else f"{size} x{w:g}"


def _wld(row: Any) -> bool:
    value = row.get("wld")
    return bool(value) and not tables.missing(value)


def parameters_text(row: Any) -> str:
    """The source trial's sampled parameters, e.g. "unit=ic, wld=True, lr=0.163" (mask bits left out: the
    placement shows them)."""
    out = []
    for name, value in row.items():
        if not str(name).startswith("param_") or tables.missing(value):
            continue
        key = str(name).removeprefix("param_")
        if re.search(r"_\d+$", key) and isinstance(value, (bool, np.bool_)):
            continue
        text = f"{value:.3g}" if isinstance(value, float) and not float(value).is_integer() else str(value)
        out.append(f"{key}={text}")
    return ", ".join(out) or "-"


def candidates(source: StudyData, confirm: StudyData) -> tuple[list[Candidate], dict[str, Any]]:
    """The confirmed candidates, in the order of the link, and the link itself."""
    link = dict(confirm.user_attrs.get(LINK_ATTR) or {})
    src, conf = source.trials, confirm.trials
    assert src is not None and conf is not None
    out = []
    for number in link.get("trials", []):
        rows = src[src["number"] == number]
        if rows.empty:
            continue
        mine = conf[conf[SOURCE_COLUMN] == number] if SOURCE_COLUMN in conf else conf.iloc[:0]
        done = mine[(mine["state"] == "COMPLETE") & mine["val_acc"].notna()]
        failed = mine[(mine["state"] == "FAIL") & ~mine["status"].isin(["interrupted", "duplicate"])]
        out.append(
            Candidate(
                int(number),
                rows.iloc[0],
                done,
                len(failed),
                stats.mean_interval(done["val_acc"].tolist()),
                stats.mean_interval(done["test_acc"].tolist()),
            )
        )
    return out, link


def paired_table(cands: list[Candidate]) -> PairedTable:
    """Each non-basic candidate against the confirmed basic network of its family, size and width."""
    metric = comparison_metric([c.trials for c in cands])
    basic = {_net_key(c.source): c for c in cands if c.is_basic}
    rows, missing = [], 0
    for c in cands:
        if c.is_basic:
            continue
        ref = basic.get(_net_key(c.source))
        if ref is None:
            missing += 1
            continue

        def values(x: Candidate) -> dict[Any, float]:
            return {int(s): float(v) for s, v in zip(x.trials["seed"], x.trials[metric], strict=True)}

        rows.append(
            stats.paired(
                f"#{c.number} {c.source.get('placement')}{' + WLD' if _wld(c.source) else ''} "
                f"({_network(c.source)})",
                values(c),
                f"basic #{ref.number}",
                values(ref),
            )
        )
    note = f"{missing} candidate(s) have no confirmed basic network of their size" if missing else ""
    return PairedTable(metric, stats.holm_table(rows), note)


def confirm_frame(cands: list[Candidate]) -> pd.DataFrame:
    """confirm.csv: one row per candidate (accuracies as stored, fractions)."""
    import pandas as pd

    on_front = _confirmed_front(cands)
    rows = []
    for c, front in zip(cands, on_front, strict=True):
        s = c.source
        rows.append(
            {
                "source_trial": c.number,
                "family": s.get("family"),
                "size": s.get("size"),
                "width": s.get("width"),
                "unit": s.get("unit"),
                "placement": s.get("placement"),
                "wld": _wld(s),
                "parameters": parameters_text(s),
                "is_basic": c.is_basic,
                "macs": s.get("macs"),
                "search_seed": s.get("seed"),
                "search_val_acc": s.get("val_acc"),
                "search_test_acc": s.get("test_acc"),
                "n_seeds": c.val.n,
                "seeds": " ".join(str(int(x)) for x in c.trials["seed"]),
                "val_acc_mean": c.val.mean,
                "val_acc_ci_low": c.val.low,
                "val_acc_ci_high": c.val.high,
                "test_acc_mean": c.test.mean,
                "test_acc_ci_low": c.test.low,
                "test_acc_ci_high": c.test.high,
                "search_minus_confirmed_val": s.get("val_acc") - c.val.mean if c.val.n else math.nan,
                "unit_delta_mean": _delta(c),
                "failed_seeds": c.failed,
                "on_confirmed_front": front,
            }
        )
    return pd.DataFrame(rows)


def _delta(c: Candidate) -> float:
    """Mean unit liveness δ over a candidate's confirmation trials (NaN for the basic network or none)."""
    if c.is_basic or "unit_delta" not in c.trials:
        return math.nan
    values = c.trials["unit_delta"].dropna().astype(float)
    return float(values.mean()) if len(values) else math.nan


def _delta_text(c: Candidate) -> str:
    d = _delta(c)
    return "-" if math.isnan(d) else fmt_delta(d) + (" (units inert)" if is_inert(d) else "")


def _confirmed_front(cands: list[Candidate]) -> list[bool]:
    """Whether each candidate is Pareto-optimal by (confirmed mean validation accuracy, MACs)."""
    pts = np.array([[c.val.mean, float(c.source.get("macs"))] for c in cands], dtype=float).reshape(-1, 2)
    return [bool(x) for x in pareto_mask(pts, ["maximize", "minimize"])]


def confirm_markdown(
    cands: list[Candidate], link: dict[str, Any], paired: PairedTable, source: StudyData, confirm: StudyData
) -> str:
    acc = source.trials["val_acc"] if source.trials is not None else [1.0]
    factor = tables.acc_factor(acc)
    mname, mscale = tables.macs_unit([c.source.get("macs") for c in cands])
    seeds = link.get("seeds", [])
    front = _confirmed_front(cands)
    headers = [
        "Source trial",
        "Network",
        "Unit",
        "Placement",
        "WLD",
        "Parameters (search)",
        f"MACs ({mname})",
        "Val acc (%), search (1 seed)",
        "Val acc (%), confirmed: mean [95% CI] (n seeds)",
        "Search - confirmed (points)",
        "Test acc (%), search (1 seed)",
        "Test acc (%), confirmed: mean [95% CI] (n seeds)",
        "δ, confirmed (mean)",
        "Failed seeds",
        "Front (confirmed)",
    ]
    body = []
    for c, on in zip(cands, front, strict=True):
        s = c.source
        gap = s.get("val_acc") - c.val.mean if c.val.n else math.nan
        body.append(
            [
                f"#{c.number}" + (" (basic)" if c.is_basic else ""),
                _network(s),
                tables.fmt_text(s.get("unit")),
                f"`{s.get('placement')}`",
                "yes" if _wld(s) else "no",
                parameters_text(s),
                tables.fmt_num(s.get("macs"), mscale),
                tables.fmt_fixed(s.get("val_acc"), 2, factor),
                tables.fmt_ci(c.val, factor),
                "-" if tables.missing(gap) else f"{gap * factor:+.2f}",
                tables.fmt_fixed(s.get("test_acc"), 2, factor),
                tables.fmt_ci(c.test, factor),
                _delta_text(c),
                str(c.failed),
                "yes" if on else "no",
            ]
        )
    counts = confirm.trials["state"].value_counts().to_dict() if confirm.trials is not None else {}
    expected = len(link.get("trials", [])) * len(seeds)
    done = sum(c.val.n for c in cands)
    gaps = [s for s in (c.source.get("val_acc") - c.val.mean for c in cands if c.val.n) if not math.isnan(s)]
    lines = [
        f"# Confirmation: {link.get('study', source.name)}\n",
        f"The {len(cands)} trials that {link.get('study')}'s report shows (its Pareto front and the basic "
        f"reference networks, chosen on validation accuracy) retrained with {len(seeds)} fresh seeds each "
        f"({', '.join(map(str, seeds))}; seeds the search never used) as ordinary trials of the linked study "
        f"`{confirm.name}`: {done} of {expected} seed runs COMPLETE "
        f"(that study has {', '.join(f'{v} {k}' for k, v in sorted(counts.items()))} trials).\n",
        "Search-time values are single runs, each the best of many noisy measurements, so they are "
        "optimistic (the winner's curse). Confirmed values are the mean over the confirmation seeds with a "
        "95% Student's t interval (n - 1 degrees of freedom); no number here mixes seeds without saying how "
        "many. Every confirmation trial evaluated the test split at the end of its own training (these are "
        "the chosen trials; nothing is selected within the confirmation).\n",
    ]
    if gaps:
        lines.append(
            f"Search minus confirmed validation accuracy, averaged over the candidates: "
            f"{sum(gaps) / len(gaps) * factor:+.2f} points (positive: the search was optimistic).\n"
        )
    lines.append(tables.markdown_table(headers, body, "lllllllrrrrrrrl"))
    lines.append(
        f"\n{tables.MACS_NOTE} Front (confirmed): Pareto-optimal among these rows by confirmed mean validation "
        "accuracy and MACs. Each row is retrained exactly as the search trained it (its parameters, "
        "recipe and budget; with WLD, warm-started from and distilled from the same cached basic teacher); "
        "only the seed changes. A comparison with the basic network is therefore of the whole recipe, WLD "
        "and learning rate included, not of the unit alone. " + tables.DELTA_NOTE + "\n"
    )
    lines.append(tables.paired_markdown(paired, acc, "Paired comparisons against the basic network"))
    return "\n".join(lines)


def confirm_latex(cands: list[Candidate], link: dict[str, Any], source: StudyData) -> str:
    """confirm.tex: the confirmed-results table (mean ± 95% CI half-width, seed count)."""
    acc = source.trials["val_acc"] if source.trials is not None else [1.0]
    factor = tables.acc_factor(acc)
    mname, mscale = tables.macs_unit([c.source.get("macs") for c in cands])
    headers = [
        "Network",
        "Unit",
        "Placement",
        "WLD",
        f"MACs ({mname})",
        "Val acc (%) search",
        "Val acc (%) confirmed",
        "Test acc (%) confirmed",
        "Seeds",
    ]
    body = [
        [
            _network(c.source),
            tables.fmt_text(c.source.get("unit")),
            r"\texttt{" + tables.latex_escape(str(c.source.get("placement"))) + "}",
            "yes" if _wld(c.source) else "no",
            tables.fmt_num(c.source.get("macs"), mscale),
            tables.fmt_fixed(c.source.get("val_acc"), 2, factor),
            tables.fmt_pm_ci(c.val, factor),
            tables.fmt_pm_ci(c.test, factor),
            str(c.val.n),
        ]
        for c in cands
    ]
    study = str(link.get("study", source.name))
    return tables.latex_table(
        headers,
        body,
        align="llllrrrrr",
        caption=f"Study {study}: chosen trials retrained with {len(link.get('seeds', []))} fresh seeds. "
        "Confirmed: mean ± half-width of the 95% Student's t interval over the seeds; search: one run "
        f"(one seed), the best of the search. {tables.MACS_NOTE}",
        label=f"tab:confirm-{study}",
        raw_columns=(2,),
    )


def write_no_front(out_dir: str | os.PathLike[str], study: str, reason: str) -> Path:
    """confirm.md for a source study with nothing to confirm, saying why."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "confirm.md"
    path.write_text(f"# Confirmation: {study}\n\nNothing confirmed: {reason}.\n", encoding="utf-8")
    return path


def build_confirm_report(
    source_storage: StorageLike,
    source_name: str,
    confirm_storage: StorageLike,
    confirm_name: str,
    out_dir: str | os.PathLike[str],
) -> dict[str, Path]:
    """Write the confirmation report (see the module docstring); returns file name -> path."""
    source = load_study(source_storage, source_name)
    confirm = load_study(confirm_storage, confirm_name)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cands, link = candidates(source, confirm)
    if not cands:
        return {"confirm.md": write_no_front(out, source_name, "the confirmation study lists no trial")}
    paired = paired_table(cands)
    acc = source.trials["val_acc"] if source.trials is not None else [1.0]
    factor = tables.acc_factor(acc)
    files = {
        "confirm.md": _write_text(out / "confirm.md", confirm_markdown(cands, link, paired, source, confirm)),
        "confirm.tex": _write_text(out / "confirm.tex", confirm_latex(cands, link, source)),
    }
    frame = confirm_frame(cands)
    files["confirm.csv"] = _atomic(out / "confirm.csv", lambda p: frame.to_csv(p, index=False))
    pf = tables.paired_frame(paired, factor)
    files["paired.csv"] = _atomic(out / "paired.csv", lambda p: pf.to_csv(p, index=False))
    assert confirm.trials is not None
    flat = tabular(confirm.trials)
    files["trials.csv"] = _atomic(out / "trials.csv", lambda p: flat.to_csv(p, index=False))
    return files
