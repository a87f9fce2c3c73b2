"""Group the trials table into the numbers the report's tables show (pure functions, no I/O).

Standard deviations are sample standard deviations (n - 1); with one value they are NaN and the tables
print the mean alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from icbench.report import stats
from icbench.report.pareto import candidates

if TYPE_CHECKING:
    import pandas as pd

#: Default MACs budgets, as multiples of the basic (all-conv) network's MACs.
DEFAULT_BUDGET_FACTORS: tuple[float, ...] = (1.0, 1.1, 1.5)

#: Default epochs-to-target target: this fraction of the lowest cell's mean final validation accuracy,
#: so that on average every cell reaches it and the column compares speed.
DEFAULT_TARGET_FRACTION = 0.99

UNSPECIFIED = "(unspecified)"


def state_counts(trials: pd.DataFrame) -> dict[str, int]:
    """Trial counts: total, COMPLETE, PRUNED, FAIL, RUNNING, WAITING, and within FAIL: rejected, duplicate.

    `diverged` counts trials whose status says so (FAIL in the search layer's schema).
    """
    state = trials["state"]
    status = trials["status"].astype(str)
    return {
        "total": len(trials),
        "COMPLETE": int((state == "COMPLETE").sum()),
        "PRUNED": int((state == "PRUNED").sum()),
        "FAIL": int((state == "FAIL").sum()),
        "rejected": int(((state == "FAIL") & (trials["rejected"] | (status == "rejected"))).sum()),
        "duplicate": int(((state == "FAIL") & (status == "duplicate")).sum()),
        "diverged": int((status == "diverged").sum()),
        "RUNNING": int((state == "RUNNING").sum()),
        "WAITING": int((state == "WAITING").sum()),
    }


@dataclass(frozen=True)
class Budget:
    """A MACs budget: trials with `macs <= macs` qualify (`macs` is inf for "no limit")."""

    label: str
    macs: float


def default_budgets(
    trials: pd.DataFrame,
    factors: Sequence[float] = DEFAULT_BUDGET_FACTORS,
    max_macs: float | None = None,
) -> tuple[list[Budget], str]:
    """MACs budgets relative to the basic network, plus the study's ceiling and "no limit".

    The base is the MACs of the basic (all-conv) COMPLETE trials when they all share one value; with
    several basic sizes (or none) it is the cheapest COMPLETE trial's MACs.

    Args:
        trials: The tidy trials table.
        factors: Multiples of the base.
        max_macs: The study's MACs ceiling, added as a budget when finite.

    Returns:
        The budgets (ascending, "no limit" last) and a sentence stating how they were chosen.
    """
    cand = candidates(trials, ["val_acc", "macs"])
    if cand.empty:
        return [Budget("no limit", math.inf)], "no COMPLETE trial with MACs, so no budgets"
    basic = cand[cand["is_basic"].fillna(False).astype(bool)] if "is_basic" in cand else cand.iloc[:0]
    basic_macs = sorted(set(np.round(basic["macs"].to_numpy(dtype=float))))
    if len(basic_macs) == 1:
        base, base_name = basic_macs[0], "the basic (all-conv) network"
    else:
        base, base_name = float(cand["macs"].min()), "the cheapest COMPLETE trial"
    budgets = [Budget(f"{f:.2f}x", f * base) for f in factors]
    if max_macs is not None and math.isfinite(float(max_macs)):
        budgets.append(Budget("ceiling", float(max_macs)))
    budgets = sorted(budgets, key=lambda b: b.macs) + [Budget("no limit", math.inf)]
    text = (
        f"MACs budgets are {', '.join(f'{f:g}x' for f in factors)} the MACs of {base_name} "
        f"({base:,.0f} MACs)"
        + (", the study's MACs ceiling" if any(b.label == "ceiling" for b in budgets) else "")
        + ", and no limit"
    )
    return budgets, text


def _median_delta(group: pd.DataFrame) -> float:
    """Median unit liveness δ of the rows that recorded one (NaN if none did)."""
    if "unit_delta" not in group:
        return math.nan
    values = group["unit_delta"].dropna().astype(float)
    return float(values.median()) if len(values) else math.nan


def _key(value: Any) -> Any:
    """A hashable, printable group key (NaN/None become UNSPECIFIED)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return UNSPECIFIED
    return value


def placement_stats(trials: pd.DataFrame, by: Sequence[str], budgets: Sequence[Budget]) -> pd.DataFrame:
    """Per group (e.g. strategy, unit): trial counts and the best validation accuracy within each budget.

    Args:
        trials: The tidy trials table.
        by: Grouping columns; missing columns group as UNSPECIFIED.
        budgets: MACs budgets; a group with no COMPLETE trial within one gets NaN.

    Returns:
        Columns: the `by` columns, trials, complete, pruned, failed (FAIL, rejected included), then
        `best_<label>` per budget (validation accuracy), `best_trial` (number of the best trial
        without a budget) and `unit_delta` (median over the COMPLETE trials' unit liveness δ; NaN where
        none recorded one).
    """
    import pandas as pd

    table = trials.copy()
    for col in by:
        # str keys: groups sort even when a column mixes types (e.g. bools and UNSPECIFIED)
        table[col] = table[col].map(lambda v: str(_key(v))) if col in table else UNSPECIFIED
    rows = []
    for keys, group in table.groupby(list(by), sort=True, dropna=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        row: dict[str, Any] = dict(zip(by, keys, strict=True))
        row["trials"] = len(group)
        row["complete"] = int((group["state"] == "COMPLETE").sum())
        row["pruned"] = int((group["state"] == "PRUNED").sum())
        row["failed"] = int((group["state"] == "FAIL").sum())
        cand = candidates(group, ["val_acc", "macs"])
        for b in budgets:
            within = cand[cand["macs"] <= b.macs]
            row[f"best_{b.label}"] = float(within["val_acc"].max()) if len(within) else math.nan
        row["best_trial"] = int(cand.loc[cand["val_acc"].idxmax(), "number"]) if len(cand) else None
        row["unit_delta"] = _median_delta(cand)
        rows.append(row)
    return pd.DataFrame(rows)


def config_columns(trials: pd.DataFrame) -> list[str]:
    """Columns that identify a configuration apart from its seed."""
    base = [c for c in ("family", "size", "unit", "placement", "wld") if c in trials]
    params = [c for c in trials.columns if c.startswith("param_") and c != "param_seed"]
    return base + sorted(params)


def seed_repeats(trials: pd.DataFrame) -> pd.DataFrame:
    """COMPLETE configurations run with more than one seed: mean and std of accuracy over the seeds.

    Returns:
        Columns: strategy, unit, placement, wld, n_seeds, val_acc_mean, val_acc_std, macs, unit_delta
        (median of the seeds' unit liveness δ, NaN where none recorded); empty when the
        study repeated no configuration.
    """
    import pandas as pd

    columns = [
        "strategy", "unit", "placement", "wld", "n_seeds", "val_acc_mean", "val_acc_std", "macs", "unit_delta",
    ]  # fmt: skip
    cand = candidates(trials, ["val_acc"])
    if cand.empty or "seed" not in cand:
        return pd.DataFrame(columns=columns)
    keys = config_columns(cand)
    table = cand.copy()
    for col in keys:
        table[col] = table[col].map(lambda v: repr(_key(v)))  # repr: hashable, bool vs str stays apart
    rows = []
    for _, group in table.groupby(keys, sort=False, dropna=False):
        seeds = group["seed"].dropna().unique()
        if len(seeds) < 2:
            continue
        first = cand.loc[group.index[0]]
        rows.append(
            {
                "strategy": _key(first.get("strategy")),
                "unit": _key(first.get("unit")),
                "placement": _key(first.get("placement")),
                "wld": _key(first.get("wld")),
                "n_seeds": len(seeds),
                "val_acc_mean": float(group["val_acc"].mean()),
                "val_acc_std": float(group["val_acc"].std(ddof=1)),
                "macs": float(cand.loc[group.index, "macs"].mean()),
                "unit_delta": _median_delta(cand.loc[group.index]),
            }
        )
    return pd.DataFrame(rows, columns=columns)


def ablation_factors(trials: pd.DataFrame, is_grid: bool) -> list[str]:
    """The factors of an ablation table.

    A grid study's factors are its sampled parameters that vary among COMPLETE trials, the seed aside.
    Other studies fall back to `unit` and `wld` where they vary (cells then pool placements).
    """
    cand = candidates(trials, ["val_acc"])
    if is_grid:
        cols = [c for c in cand.columns if c.startswith("param_") and c != "param_seed"]
    else:
        cols = [c for c in ("unit", "wld") if c in cand]
    return [c for c in cols if cand[c].map(lambda v: repr(_key(v))).nunique() > 1]


def epochs_to_target(curve: Sequence[dict[str, Any]], target: float) -> float:
    """Epochs trained until validation accuracy first reached `target` (1 = after the first), else NaN."""
    for i, record in enumerate(curve):
        acc = record.get("val_acc") if isinstance(record, dict) else None
        if acc is not None and float(acc) >= target:
            return float(i + 1)
    return math.nan


def _true(value: Any) -> bool:
    """A table flag that is set (None and NaN: unknown, not set)."""
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and bool(value)


def _cell_label(factors: Sequence[str], keys: Sequence[Any]) -> str:
    if not factors:
        return "all trials"
    return ", ".join(f"{f.removeprefix('param_')}={k}" for f, k in zip(factors, keys, strict=True))


def _cells(trials: pd.DataFrame, factors: Sequence[str]) -> list[tuple[tuple[Any, ...], pd.DataFrame]]:
    cand = candidates(trials, ["val_acc"])
    if cand.empty:
        return []
    if not factors:
        return [((), cand)]
    table = cand.copy()
    for f in factors:
        table[f] = table[f].map(lambda v: str(_key(v)))
    out = []
    for keys, group in table.groupby(list(factors), sort=True, dropna=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        out.append((keys, cand.loc[group.index]))
    return out


def default_target(trials: pd.DataFrame, factors: Sequence[str]) -> float:
    """`DEFAULT_TARGET_FRACTION` x the lowest cell mean of final validation accuracy (NaN if no cell)."""
    means = [float(g["val_acc"].mean()) for _, g in _cells(trials, factors)]
    return DEFAULT_TARGET_FRACTION * min(means) if means else math.nan


def _mean_std(values: pd.Series) -> tuple[float, float]:
    vals = values.dropna().astype(float)
    if vals.empty:
        return math.nan, math.nan
    return float(vals.mean()), float(vals.std(ddof=1)) if len(vals) > 1 else math.nan


def ablation_cells(trials: pd.DataFrame, factors: Sequence[str], target: float) -> pd.DataFrame:
    """One row per factor cell over COMPLETE trials: mean and std over seeds of the cell's metrics.

    Returns:
        Columns: the factors, cell (a label), n (trials), seeds, val_acc_mean/std, test_acc_mean/std
        (over the cell's trials evaluated on the test split), test_n (how many were), macs, params,
        epochs_to_target_mean/std, reached (trials that reached `target`), unit_delta_mean/std (unit
        liveness δ over the trials that recorded it; NaN for the basic network).
    """
    import pandas as pd

    rows = []
    for keys, group in _cells(trials, factors):
        row: dict[str, Any] = dict(zip(factors, keys, strict=True))
        row["cell"] = _cell_label(factors, keys)
        row["n"] = len(group)
        row["seeds"] = int(group["seed"].nunique()) if "seed" in group else 0
        for metric in ("val_acc", "test_acc"):
            row[f"{metric}_mean"], row[f"{metric}_std"] = _mean_std(group[metric])
        row["test_n"] = int(group["test_acc"].notna().sum())
        row["macs"] = float(group["macs"].mean())
        row["params"] = float(group["params"].mean())
        ett = group["curve"].map(lambda c: epochs_to_target(c, target))
        row["epochs_to_target_mean"], row["epochs_to_target_std"] = _mean_std(ett)
        row["reached"] = int(ett.notna().sum())
        row["unit_delta_mean"], row["unit_delta_std"] = (
            _mean_std(group["unit_delta"]) if "unit_delta" in group else (math.nan, math.nan)
        )
        rows.append(row)
    columns = [
        *factors,
        "cell",
        "n",
        "seeds",
        "val_acc_mean",
        "val_acc_std",
        "test_acc_mean",
        "test_acc_std",
        "test_n",
        "macs",
        "params",
        "epochs_to_target_mean",
        "epochs_to_target_std",
        "reached",
        "unit_delta_mean",
        "unit_delta_std",
    ]
    return pd.DataFrame(rows, columns=columns)


@dataclass
class CellCurve:
    """Mean and std of validation accuracy per epoch over a cell's trials; `warm` of its `trials` (with a
    curve) started from the teacher's weights (WLD's warm start)."""

    label: str
    epochs: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    n: np.ndarray
    warm: int = 0
    trials: int = 0


def cell_curves(trials: pd.DataFrame, factors: Sequence[str]) -> list[CellCurve]:
    """Per factor cell, validation accuracy per epoch (epoch i = after i epochs), mean and std over trials.

    Trials of different lengths contribute to the epochs they have; cells without any curve are left out.
    """
    out = []
    for keys, group in _cells(trials, factors):
        series = [
            [float(r["val_acc"]) for r in c if isinstance(r, dict) and r.get("val_acc") is not None]
            for c in group["curve"]
        ]
        flags = list(group["warm_start"]) if "warm_start" in group else [None] * len(group)
        warm = sum(_true(w) for w, s in zip(flags, series, strict=True) if s)
        series = [s for s in series if s]
        if not series:
            continue
        length = max(len(s) for s in series)
        grid = np.full((len(series), length), np.nan)
        for i, s in enumerate(series):
            grid[i, : len(s)] = s
        n = (~np.isnan(grid)).sum(axis=0)
        mean = np.nanmean(grid, axis=0)
        std = np.array(
            [np.nanstd(grid[:, j], ddof=1) if n[j] > 1 else 0.0 for j in range(length)], dtype=float
        )
        out.append(
            CellCurve(_cell_label(factors, keys), np.arange(1, length + 1), mean, std, n, warm, len(series))
        )
    return out


# --------------------------------------------------------------------------------------------------
# Paired comparisons over seeds


@dataclass
class PairedTable:
    """Paired comparisons of one report table, Holm-corrected together.

    Attributes:
        metric: the compared column (`test_acc` when every compared trial has one, else `val_acc`).
        rows: one comparison per row, `p_adjusted` by Holm's correction over `rows`.
        note: why there are no rows, or what was left out (empty when nothing needs saying).
    """

    metric: str
    rows: list[stats.Paired]
    note: str = ""


def comparison_metric(frames: Sequence[pd.DataFrame]) -> str:
    """`test_acc` when every trial of every frame was evaluated on the test split, else `val_acc`."""
    tested = all("test_acc" in f and f["test_acc"].notna().all() for f in frames)
    return "test_acc" if tested and frames else "val_acc"


def seed_values(group: pd.DataFrame, metric: str) -> dict[Any, float] | None:
    """Seed -> metric of a configuration's trials; None when a seed occurs twice (not one configuration)."""
    if "seed" not in group:
        return None
    seeds = group["seed"].map(_key)
    if seeds.duplicated().any():
        return None
    return {s: float(v) for s, v in zip(seeds, group[metric].astype(float), strict=True)}


def _paired_rows(
    items: Sequence[tuple[str, pd.DataFrame]], refs: Sequence[tuple[str, pd.DataFrame]], metric: str
) -> list[stats.Paired]:
    rows = []
    for (label, group), (ref_label, ref) in zip(items, refs, strict=True):
        a, b = seed_values(group, metric), seed_values(ref, metric)
        rows.append(stats.paired(label, a or {}, ref_label, b or {}))
    return stats.holm_table(rows)


def _is_basic(group: pd.DataFrame) -> bool:
    return "is_basic" in group and bool(group["is_basic"].fillna(False).astype(bool).all())


def _plain(group: pd.DataFrame) -> bool:
    """No WLD in any trial of the group (a basic network trained on its own)."""
    return "wld" not in group or not group["wld"].fillna(False).astype(bool).any()


def ablation_paired(trials: pd.DataFrame, factors: Sequence[str]) -> PairedTable:
    """Each ablation cell against the basic cell (all-conv; without WLD where WLD is a factor), paired by
    seed. Cells that pool several trials per seed (a non-grid study) are not paired."""
    cells = _cells(trials, factors)
    metric = comparison_metric([g for _, g in cells])
    if not cells:
        return PairedTable(metric, [], "no COMPLETE trial, so no comparison")
    labelled = [(_cell_label(factors, keys), g) for keys, g in cells]
    pooled = [label for label, g in labelled if seed_values(g, metric) is None]
    if pooled:
        return PairedTable(
            metric,
            [],
            "no paired comparison: a cell holds several trials with one seed (it pools different "
            "configurations, each trained once), so there are no per-seed pairs",
        )
    basic = [(label, g) for label, g in labelled if _is_basic(g)]
    if not basic:
        return PairedTable(metric, [], "no paired comparison: no cell is the basic (all-conv) network")
    ref = next(((label, g) for label, g in basic if _plain(g)), basic[0])
    others = [(label, g) for label, g in labelled if label != ref[0]]
    return PairedTable(metric, _paired_rows(others, [ref] * len(others), metric))


def _config_label(row: pd.Series, with_size: bool) -> str:
    label = str(_key(row.get("placement")))
    if bool(_key(row.get("wld")) is True):
        label += " + WLD"
    if with_size:
        width = row.get("width")
        label += (
            f" ({_key(row.get('size'))}" + (f" x{float(width):g}" if _key(width) != UNSPECIFIED else "") + ")"
        )
    return label


def _configurations(trials: pd.DataFrame, min_seeds: int = 2) -> list[pd.DataFrame]:
    """COMPLETE configurations (identical apart from the seed) run with at least `min_seeds` seeds."""
    cand = candidates(trials, ["val_acc"])
    if cand.empty or "seed" not in cand:
        return []
    keys = config_columns(cand)
    table = cand.copy()
    for col in keys:
        table[col] = table[col].map(lambda v: repr(_key(v)))
    return [
        cand.loc[g.index]
        for _, g in table.groupby(keys, sort=False, dropna=False)
        if g["seed"].dropna().nunique() >= min_seeds
    ]


def _net_key(row: pd.Series) -> tuple[str, ...]:
    return tuple(str(_key(row.get(k))) for k in ("family", "size", "width"))


def repeats_paired(trials: pd.DataFrame) -> PairedTable:
    """Each configuration run with several seeds against the basic network of the same family, size and
    width run with several seeds (the one with most seeds, plain training preferred), paired by seed."""
    configs = _configurations(trials)
    metric = comparison_metric(configs)
    if not configs:
        return PairedTable(metric, [], "no configuration was run with more than one seed")
    sizes = {_net_key(g.iloc[0]) for g in configs}
    refs: dict[tuple[str, ...], pd.DataFrame] = {}
    for g in sorted(configs, key=lambda g: (not _plain(g), -len(g))):
        if _is_basic(g):
            refs.setdefault(_net_key(g.iloc[0]), g)
    items, ref_items, missing = [], [], 0
    for g in configs:
        ref = refs.get(_net_key(g.iloc[0]))
        if ref is None:
            missing += 1
        elif ref is not g:
            items.append((_config_label(g.iloc[0], len(sizes) > 1), g))
            ref_items.append((_config_label(ref.iloc[0], len(sizes) > 1), ref))
    note = (
        f"{missing} repeated configuration(s) have no basic network of their size run with several seeds"
        if missing
        else ""
    )
    if not items and not note:
        note = "only basic networks were run with more than one seed"
    return PairedTable(metric, _paired_rows(items, ref_items, metric), note)


def cross_paired(a: pd.DataFrame, b: pd.DataFrame, label_a: str, label_b: str) -> PairedTable:
    """Configurations present in both studies (same family, size, width, placement and WLD), A against B,
    paired by seed."""
    match = ("family", "size", "width", "placement", "wld")
    configs_a, configs_b = _configurations(a), _configurations(b)

    def key(g: pd.DataFrame) -> tuple[str, ...]:
        return tuple(str(_key(g.iloc[0].get(k))) for k in match)

    by_b = {key(g): g for g in configs_b}
    items, refs = [], []
    for g in configs_a:
        other = by_b.get(key(g))
        if other is not None:
            label = _config_label(g.iloc[0], True)
            items.append((f"{label} in {label_a}", g))
            refs.append((f"{label} in {label_b}", other))
    metric = comparison_metric([g for _, g in items] + [g for _, g in refs])
    if not items:
        return PairedTable(
            metric, [], "no configuration was run with several seeds in both studies, so none is paired"
        )
    return PairedTable(metric, _paired_rows(items, refs, metric))
