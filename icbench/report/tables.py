"""Tables for the report: number formatting, Markdown / LaTeX writers and the report's table layouts.

Pure functions from tables to text; writing files is `build.py`'s job. Markdown and LaTeX are written
here rather than with pandas' `to_markdown`/`to_latex`, which need optional packages (tabulate, jinja2).

Accuracy is stored as the training layer reports it; fractions (all values <= 1) are shown as percent.
MACs are multiply-accumulates per image (FLOPs = 2 x MACs), shown in GMac or MMac.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from icbench.liveness import INERT_DELTA, is_inert
from icbench.report import stats
from icbench.report.aggregate import Budget, PairedTable
from icbench.report.liveness import fmt_delta
from icbench.report.pareto import accuracy_top, candidates

if TYPE_CHECKING:
    import pandas as pd

MACS_NOTE = "MACs: multiply-accumulates per image (FLOPs = 2 x MACs)."
DELTA_NOTE = (
    "δ: unit liveness, how much the trained units change their sites' outputs (median over the unit sites "
    f"of ‖unit(x) − conv(x)‖ / ‖conv(x)‖; '-' for the basic network or a trial that did not record it); "
    f"'units inert': δ < {INERT_DELTA:g}, the trial trained a plain convolution in all but name."
)

#: Markdown/LaTeX columns of pareto.md / pareto.tex; "{macs}" and "{params}" are the units chosen.
PARETO_COLUMNS: tuple[str, ...] = (
    "Trial",
    "Family",
    "Size",
    "Unit",
    "Placement",
    "Val acc (%)",
    "Test acc (%)",
    "δ",
    "MACs ({macs})",
    "Params ({params})",
    "Latency (ms)",
    "Seeds",
    "Note",
)

#: Columns of pareto.csv (raw numbers, accuracy as stored).
PARETO_CSV_COLUMNS: tuple[str, ...] = (
    "number",
    "on_front",
    "is_basic",
    "family",
    "size",
    "width",
    "unit",
    "placement",
    "strategy",
    "wld",
    "seed",
    "val_acc",
    "test_acc",
    "macs",
    "params",
    "latency_ms",
    "epochs_done",
    "unit_delta",
)


# --------------------------------------------------------------------------------------------------
# Number formatting


def missing(value: Any) -> bool:
    """None or NaN."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def acc_factor(values: Any) -> float:
    """Multiplier that turns stored accuracies into percent (100 for fractions, 1 for percent)."""
    return 100.0 / accuracy_top(values)


def macs_unit(values: Any) -> tuple[str, float]:
    """("GMac", 1e9) when the largest value reaches 1e9, else ("MMac", 1e6)."""
    finite = [float(v) for v in values if not missing(v)]
    return ("GMac", 1e9) if finite and max(finite) >= 1e9 else ("MMac", 1e6)


def params_unit(values: Any) -> tuple[str, float]:
    """("M", 1e6) when the largest value reaches 1e6, else ("K", 1e3)."""
    finite = [float(v) for v in values if not missing(v)]
    return ("M", 1e6) if finite and max(finite) >= 1e6 else ("K", 1e3)


def fmt_num(value: Any, scale: float = 1.0, digits: int = 4) -> str:
    """`value / scale` with `digits` significant digits (no exponent below 1e6); "-" when missing."""
    if missing(value):
        return "-"
    x = float(value) / scale
    if abs(x) >= 10 ** (digits - 1):
        return f"{x:,.0f}"
    if x == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(x))))
    return f"{x:.{decimals}f}"


def fmt_fixed(value: Any, decimals: int = 2, factor: float = 1.0) -> str:
    """`value * factor` with fixed decimals; "-" when missing."""
    return "-" if missing(value) else f"{float(value) * factor:.{decimals}f}"


def fmt_mean_std(mean: Any, std: Any, decimals: int = 2, factor: float = 1.0) -> str:
    """ "m ± s", or "m" alone when the std is missing (one value)."""
    if missing(mean):
        return "-"
    if missing(std):
        return fmt_fixed(mean, decimals, factor)
    return f"{float(mean) * factor:.{decimals}f} ± {float(std) * factor:.{decimals}f}"


def fmt_int(value: Any) -> str:
    """An integer (trial numbers read back as floats next to NaN); "-" when missing."""
    return "-" if missing(value) else str(int(value))


def fmt_text(value: Any) -> str:
    return "-" if missing(value) else str(value)


# --------------------------------------------------------------------------------------------------
# Writers


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None) -> str:
    """A GitHub Markdown table.

    Args:
        headers: Column titles.
        rows: Cell texts, one sequence per row.
        align: One letter per column, "l" or "r" (default: left).

    Returns:
        The table text, ending with a newline.
    """
    align = align or "l" * len(headers)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(_md_cell(h) for h in headers) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters; "±" becomes $\\pm$."""
    out = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)
    return out.replace("±", r"$\pm$")


def latex_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    align: str | None = None,
    caption: str = "",
    label: str = "",
    raw_columns: Sequence[int] = (),
) -> str:
    """A booktabs `table` environment (needs `\\usepackage{booktabs}`).

    Args:
        headers: Column titles (escaped here).
        rows: Cell texts (escaped here, except the columns in `raw_columns`, which are LaTeX already).
        align: tabular column spec letters, one per column (default: left).
        caption: Caption text (escaped here).
        label: \\label key.
        raw_columns: Indices of columns whose cells are not escaped.
    """
    align = align or "l" * len(headers)
    lines = [r"\begin{table}[t]", r"\centering", r"\small"]
    if caption:
        lines.append(r"\caption{" + latex_escape(caption) + "}")
    if label:
        lines.append(r"\label{" + label + "}")
    lines += [r"\begin{tabular}{" + align + "}", r"\toprule"]
    lines.append(" & ".join(latex_escape(h) for h in headers) + r" \\")
    lines.append(r"\midrule")
    for row in rows:
        cells = [c if i in raw_columns else latex_escape(c) for i, c in enumerate(row)]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def write_csv(frame: pd.DataFrame, path: Any) -> None:
    """CSV without the index (NaN as empty cells)."""
    frame.to_csv(path, index=False)


# --------------------------------------------------------------------------------------------------
# Report tables


def pareto_rows(front: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    """The rows of pareto.*: the front plus, per (family, size, width), the best basic network as reference.

    Args:
        front: Pareto-optimal COMPLETE trials.
        trials: The whole trials table (to find basic networks that are not on the front).

    Returns:
        `PARETO_CSV_COLUMNS`, sorted by MACs then trial number.
    """
    import pandas as pd

    rows = front.assign(on_front=True)
    cand = candidates(trials, ["val_acc"])
    if "is_basic" in cand:
        basic = cand[cand["is_basic"].fillna(False).astype(bool)]
        refs = []
        keys = [k for k in ("family", "size", "width") if k in basic]
        for _, group in basic.groupby(keys, dropna=False, sort=True):
            best = group.sort_values(["val_acc", "number"], ascending=[False, True]).iloc[[0]]
            if (
                not best["number"].isin(rows["number"]).any()
                and not group["number"].isin(rows["number"]).any()
            ):
                refs.append(best.assign(on_front=False))
        if refs:
            rows = pd.concat([rows, *refs])
    rows = rows.copy()
    rows["is_basic"] = rows["is_basic"].fillna(False).astype(bool) if "is_basic" in rows else False
    for col in PARETO_CSV_COLUMNS:
        if col not in rows:
            rows[col] = None
    return rows.sort_values(["macs", "number"], kind="stable")[list(PARETO_CSV_COLUMNS)].reset_index(
        drop=True
    )


def _size_text(size: Any, width: Any) -> str:
    """The size, with its width multiplier when it is not 1 (e.g. "resnet8 x0.5")."""
    try:
        w = float(width)
    except (TypeError, ValueError):
        return fmt_text(size)
    return fmt_text(size) if w == 1.0 or w != w else f"{fmt_text(size)} x{w:g}"


def _note(on_front: bool, is_basic: bool, unit_delta: Any = None) -> str:
    if on_front and is_basic:
        note = "front; basic (reference)"
    else:
        note = "front" if on_front else "basic (reference)"
    if not is_basic and not missing(unit_delta) and is_inert(float(unit_delta)):
        note += "; units inert"
    return note


def pareto_display(rows: pd.DataFrame, acc_values: Any) -> tuple[list[str], list[list[str]]]:
    """Headers and cell texts of pareto.md / pareto.tex (units chosen from the data)."""
    factor = acc_factor(acc_values)
    mname, mscale = macs_unit(rows["macs"])
    pname, pscale = params_unit(rows["params"])
    headers = [h.format(macs=mname, params=pname) for h in PARETO_COLUMNS]
    body = [
        [
            str(int(r.number)),
            fmt_text(r.family),
            _size_text(r.size, getattr(r, "width", None)),
            fmt_text(r.unit),
            fmt_text(r.placement),
            fmt_fixed(r.val_acc, 2, factor),
            fmt_fixed(r.test_acc, 2, factor),
            fmt_delta(getattr(r, "unit_delta", None)),
            fmt_num(r.macs, mscale),
            fmt_num(r.params, pscale),
            fmt_fixed(r.latency_ms, 2),
            "1" if missing(r.seed) else f"1 (seed {fmt_int(r.seed)})",
            _note(bool(r.on_front), bool(r.is_basic), getattr(r, "unit_delta", None)),
        ]
        for r in rows.itertuples(index=False)
    ]
    return headers, body


def pareto_markdown(
    rows: pd.DataFrame,
    acc_values: Any,
    study: str,
    objectives: Sequence[tuple[str, str]],
    test_text: str = "",
) -> str:
    """pareto.md: the table plus what it shows.

    Args:
        test_text: which trials were evaluated on the test split, and when (`evaluation.statement_on_test`);
            "-" in the test column means not evaluated.
    """
    headers, body = pareto_display(rows, acc_values)
    body = [[*r[:4], f"`{r[4]}`" if r[4] != "-" else r[4], *r[5:]] for r in body]
    objs = ", ".join(f"{d} {n}" for n, d in objectives)
    text = [
        f"# Pareto front: {study}\n",
        f"Pareto-optimal COMPLETE trials ({objs}), sorted by MACs. Rows marked *basic (reference)* are the "
        "basic (all-conv) network of each family, size and width, listed for comparison even when off the front. "
        "Selection used validation accuracy; '-' in the test column: not evaluated on the test split. "
        "Each row is one trial: one training run with one seed, picked as the best of many noisy single runs, "
        "so its accuracy is an optimistic search-time value; `run_study.py confirm` retrains these rows "
        "with fresh seeds and reports each with a 95% interval.\n",
        *([f"{test_text}\n"] if test_text else []),
        markdown_table(headers, body, align="rllllrrrrrrrl"),
        f"\n{MACS_NOTE} PRUNED and FAIL trials (rejected included) are never on the front. {DELTA_NOTE}\n",
    ]
    return "\n".join(text)


def pareto_latex(rows: pd.DataFrame, acc_values: Any, study: str, test_text: str = "") -> str:
    """pareto.tex: a booktabs table of the same rows (placement in \\texttt); `test_text` (one sentence,
    `evaluation.statement_on_test(..., short=True)`) goes into the caption."""
    headers, body = pareto_display(rows, acc_values)
    for r in body:
        r[4] = r"\texttt{" + latex_escape(r[4]) + "}"
    test = f" {test_text}" if test_text else ""
    return latex_table(
        headers,
        body,
        align="rllllrrrrrrrl",
        caption=f"Pareto-optimal trials of study {study}, sorted by MACs; each row is one training run "
        f"(one seed), a search-time value. {MACS_NOTE}{test}",
        label=f"tab:pareto-{study}",
        raw_columns=(4,),
    )


def placements_markdown(
    by_strategy: pd.DataFrame,
    by_unit: pd.DataFrame,
    by_both: pd.DataFrame,
    repeats: pd.DataFrame,
    budgets: Sequence[Budget],
    budget_text: str,
    acc_values: Any,
    study: str,
    paired: PairedTable | None = None,
) -> str:
    """placements.md: per strategy, per unit, per strategy x unit, then seed repeats and (with `paired`)
    their paired comparisons against the basic network.

    The budget columns are single trials: each is one training run with one seed, the best of the
    group's trials, which the text says.
    """
    factor = acc_factor(acc_values)
    mname, mscale = macs_unit([b.macs for b in budgets if math.isfinite(b.macs)])

    def budget_header(b: Budget) -> str:
        if not math.isfinite(b.macs):
            return "Best val acc (%), no limit"
        return f"Best val acc (%), MACs ≤ {fmt_num(b.macs, mscale)} {mname} ({b.label})"

    def section(title: str, table: pd.DataFrame, keys: Sequence[str]) -> str:
        headers = [k.capitalize() for k in keys] + ["Trials", "Complete", "Pruned", "Failed"]
        headers += [budget_header(b) for b in budgets] + ["Best trial", "Median δ"]
        body = [
            [fmt_text(row[k]) for k in keys]
            + [str(row["trials"]), str(row["complete"]), str(row["pruned"]), str(row["failed"])]
            + [fmt_fixed(row[f"best_{b.label}"], 2, factor) for b in budgets]
            + [fmt_int(row["best_trial"]), fmt_delta(row.get("unit_delta"))]
            for _, row in table.iterrows()
        ]
        align = "l" * len(keys) + "r" * (4 + len(budgets) + 2)
        return f"## {title}\n\n" + markdown_table(headers, body, align)

    out = [
        f"# Placements and units: {study}\n",
        f"Best validation accuracy among COMPLETE trials within each MACs budget ('-': none within it); "
        "each value is one trial (one training run with one seed), the best of its group, so it is an "
        f"optimistic search-time value, not a mean over seeds. {budget_text}. Failed counts include trials rejected over the MACs ceiling. {MACS_NOTE}\n",
        section("By placement strategy", by_strategy, ["strategy"]),
        section("By unit", by_unit, ["unit"]),
        section("By strategy and unit", by_both, ["strategy", "unit"]),
        "## Repeated seeds\n",
    ]
    if repeats.empty:
        out.append("No configuration was run with more than one seed.\n")
    else:
        rname, rscale = macs_unit(repeats["macs"])
        headers = [
            "Strategy",
            "Unit",
            "Placement",
            "WLD",
            "Seeds",
            "Val acc (%) mean ± std",
            f"MACs ({rname})",
            "Median δ",
        ]
        body = [
            [
                fmt_text(r.strategy),
                fmt_text(r.unit),
                f"`{r.placement}`",
                fmt_text(r.wld),
                str(r.n_seeds),
                fmt_mean_std(r.val_acc_mean, r.val_acc_std, 2, factor),
                fmt_num(r.macs, rscale),
                fmt_delta(getattr(r, "unit_delta", None)),
            ]
            for r in repeats.itertuples(index=False)
        ]
        out.append(
            "COMPLETE configurations run with several seeds (identical apart from the seed); "
            "std is the sample standard deviation.\n\n" + markdown_table(headers, body, "llllrrrr")
        )
    if paired is not None:
        out.append(paired_markdown(paired, acc_values, "Paired comparisons against the basic network"))
    return "\n".join(out)


#: Columns of ablation.md after the factor columns.
ABLATION_COLUMNS: tuple[str, ...] = (
    "Trials",
    "Seeds",
    "Val acc (%)",
    "Test acc (%)",
    "MACs ({macs})",
    "Params ({params})",
    "Epochs to target",
    "Reached target",
    "δ",
)


def _delta_mean_std(mean: Any, std: Any) -> str:
    if missing(mean):
        return "-"
    text = fmt_delta(mean) if missing(std) else f"{fmt_delta(mean)} ± {fmt_delta(std)}"
    return text + (" (inert)" if is_inert(float(mean)) else "")


def ablation_markdown(
    cells: pd.DataFrame,
    factors: Sequence[str],
    target: float,
    acc_values: Any,
    study: str,
    is_grid: bool,
    target_text: str,
    test_text: str = "",
    paired: PairedTable | None = None,
) -> str:
    """ablation.md: one row per factor cell, mean ± std over seeds; with `paired`, each cell's paired
    comparison against the basic cell.

    The test column has a value only for cells whose every trial was evaluated on the test split (a mean
    over some of a cell's seeds would not compare with the others); `test_text` says which were.
    """
    factor = acc_factor(acc_values)
    mname, mscale = macs_unit(cells["macs"]) if len(cells) else ("MMac", 1e6)
    pname, pscale = params_unit(cells["params"]) if len(cells) else ("M", 1e6)
    names = [f.removeprefix("param_") for f in factors] or ["Cell"]
    headers = names + [h.format(macs=mname, params=pname) for h in ABLATION_COLUMNS]
    body = []
    for _, row in cells.iterrows():
        keys = [fmt_text(row[f]) for f in factors] or [str(row["cell"])]
        body.append(
            keys
            + [
                str(row["n"]),
                str(row["seeds"]),
                fmt_mean_std(row["val_acc_mean"], row["val_acc_std"], 2, factor),
                fmt_mean_std(row["test_acc_mean"], row["test_acc_std"], 2, factor)
                if row["test_n"] == row["n"]
                else "-",
                fmt_num(row["macs"], mscale),
                fmt_num(row["params"], pscale),
                fmt_mean_std(row["epochs_to_target_mean"], row["epochs_to_target_std"], 1),
                f"{row['reached']}/{row['n']}",
                _delta_mean_std(row.get("unit_delta_mean"), row.get("unit_delta_std")),
            ]
        )
    kind = (
        "Grid study: one row per cell of the sampled factors (the seed aside)."
        if is_grid
        else "Not a grid study: cells group all COMPLETE trials by unit and WLD where those vary, "
        "so a cell pools different placements and hyperparameters."
    )
    text = [
        f"# Ablation: {study}\n",
        f"{kind} Values are mean ± sample std over the cell's COMPLETE trials (seeds). "
        f"Epochs to target: epochs trained until validation accuracy first reached "
        f"{fmt_fixed(target, 2, factor)} % ({target_text}); trials that never reached it are left out "
        f"of the mean and counted in the column after it. {MACS_NOTE} {DELTA_NOTE}\n",
    ]
    if test_text:
        text.append(
            f"{test_text} The test column has a value only where every trial of the cell was evaluated on "
            "the test split ('-' otherwise).\n"
        )
    text.append(
        markdown_table(headers, body, "l" * len(names) + "r" * len(ABLATION_COLUMNS))
        if body
        else "No COMPLETE trial, so no cell.\n"
    )
    if paired is not None:
        text.append(paired_markdown(paired, acc_values, "Paired comparisons against the basic network"))
    text.append("\nValidation accuracy per epoch for each cell: [curves.png](curves.png).\n")
    return "\n".join(text)


# --------------------------------------------------------------------------------------------------
# Paired comparisons


METRIC_NAMES = {"test_acc": "test accuracy", "val_acc": "validation accuracy"}

#: Columns of a paired-comparisons table (Markdown and CSV).
PAIRED_COLUMNS: tuple[str, ...] = (
    "Configuration",
    "Against",
    "Seeds (n)",
    "Mean difference (points)",
    "95% CI (points)",
    "p (Holm)",
    "Verdict",
)


def paired_explanation(table: PairedTable, n_rows: int | None = None) -> str:
    """What a paired table shows, in words: metric, pairing, interval method, correction, verdicts."""
    n = len(table.rows) if n_rows is None else n_rows
    return (
        f"Metric: {METRIC_NAMES.get(table.metric, table.metric)}. Each row is the mean of the per-seed "
        "differences (row minus the configuration it is compared against) over the seeds both were trained "
        "with, in percentage points, with its 95% Student's t interval (n - 1 degrees of freedom; not a "
        f"bootstrap). p-values are Holm-corrected over the {n} "
        f"comparison{'s' if n != 1 else ''} of this table, so the table as a whole has at most a 5% chance "
        "of one false 'better'/'worse'. Where no difference is detected, the verdict gives the smallest "
        f"true difference these seeds would detect with {stats.POWER:.0%} power, given the spread seen."
    )


def fmt_p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def paired_body(table: PairedTable, factor: float) -> list[list[str]]:
    """Cell texts of a paired table (differences times `factor`: 100 for fractions)."""
    out = []
    for r in table.rows:
        d = r.diff
        ci = "-" if missing(d.low) else f"[{d.low * factor:+.2f}, {d.high * factor:+.2f}]"
        p = "-" if missing(r.p_adjusted) else fmt_p(r.p_adjusted)
        out.append(
            [
                r.label,
                r.reference,
                str(r.n),
                "-" if missing(d.mean) else f"{d.mean * factor:+.2f}",
                ci,
                p,
                stats.verdict(r, factor=factor),
            ]
        )
    return out


def paired_markdown(table: PairedTable, acc_values: Any, title: str) -> str:
    """A `## title` section: the paired comparisons with their explanation, or why there are none."""
    out = [f"## {title}\n"]
    if not table.rows:
        out.append(f"No paired comparison: {table.note.removeprefix('no paired comparison: ')}.\n")
        return "\n".join(out)
    out.append(paired_explanation(table) + "\n")
    out.append(markdown_table(PAIRED_COLUMNS, paired_body(table, acc_factor(acc_values)), "llrrrrl"))
    if table.note:
        out.append(f"\nNot compared: {table.note}.\n")
    return "\n".join(out)


def paired_frame(table: PairedTable, factor: float = 1.0) -> pd.DataFrame:
    """The comparisons as raw numbers (for CSV): differences times `factor`."""
    import pandas as pd

    rows = [
        {
            "configuration": r.label,
            "against": r.reference,
            "metric": table.metric,
            "n_seeds": r.n,
            "seeds": " ".join(map(str, r.seeds)),
            "mean_diff": r.diff.mean * factor,
            "ci_low": r.diff.low * factor,
            "ci_high": r.diff.high * factor,
            "p": r.p,
            "p_holm": r.p_adjusted,
            "detectable_diff": r.detectable * factor,
            "verdict": stats.verdict(r, factor=factor),
        }
        for r in table.rows
    ]
    return pd.DataFrame(rows)


def fmt_ci(interval: stats.Interval, factor: float = 1.0, decimals: int = 2) -> str:
    """ "m [lo, hi] (n = k)" with a 95% t interval; "m (n = 1)" for one value; "-" for none."""
    if interval.n == 0:
        return "-"
    if interval.n < 2:
        return f"{interval.mean * factor:.{decimals}f} (n = 1)"
    return (
        f"{interval.mean * factor:.{decimals}f} [{interval.low * factor:.{decimals}f}, "
        f"{interval.high * factor:.{decimals}f}] (n = {interval.n})"
    )


def fmt_pm_ci(interval: stats.Interval, factor: float = 1.0, decimals: int = 2) -> str:
    """ "m ± h" with h the half-width of the 95% t interval (for LaTeX tables); "m" for one value."""
    if interval.n == 0:
        return "-"
    if interval.n < 2:
        return f"{interval.mean * factor:.{decimals}f}"
    return f"{interval.mean * factor:.{decimals}f} ± {interval.half_width * factor:.{decimals}f}"
