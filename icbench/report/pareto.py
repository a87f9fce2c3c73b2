"""Pareto fronts and the 2-D hypervolume (pure functions over arrays and trial tables).

Conventions:
- Only COMPLETE trials with every objective present are candidates: PRUNED trials stopped early and
  FAIL trials (raised, diverged, rejected over the MACs ceiling) never reach a front or a hypervolume.
- Identical points are all kept: a trial is on the front unless another point is at least as good in
  every objective and strictly better in one, so two trials with the same (accuracy, MACs) are both
  Pareto-optimal (this is also what `optuna.Study.best_trials` returns). Duplicates of a dominated
  point are all dropped. Duplicates never change a hypervolume.
- The hypervolume is computed here because Optuna's is private (DESIGN.md §11).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from icbench.errors import IcbenchError

if TYPE_CHECKING:
    import pandas as pd

#: The pair the hypervolume is always reported for: (validation accuracy up, MACs down).
HV_OBJECTIVES: tuple[tuple[str, str], tuple[str, str]] = (("val_acc", "maximize"), ("macs", "minimize"))

#: Default reference point: the worst accuracy seen less this share of the accuracy range seen, and this
#: factor times the largest MACs seen (among COMPLETE trials), so that every COMPLETE trial adds to the
#: hypervolume. Accuracy 0 made every study's value sit near the same number (0.8 to 0.97): the box was
#: almost all accuracy no candidate could ever lack.
DEFAULT_MACS_MARGIN = 1.1
DEFAULT_ACC_MARGIN = 0.1

_DIRECTIONS = ("maximize", "minimize")


def _signs(directions: Sequence[str]) -> np.ndarray:
    for d in directions:
        if d not in _DIRECTIONS:
            raise IcbenchError(
                f"unknown objective direction {d!r}; known directions: {', '.join(_DIRECTIONS)}"
            )
    return np.array([-1.0 if d == "maximize" else 1.0 for d in directions])


def pareto_mask(points: Sequence[Sequence[float]] | np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Which points are Pareto-optimal.

    Args:
        points: Shape (n, k) objective values, k = len(directions) (1 to 3 in practice, any k works).
        directions: "maximize" or "minimize" per objective.

    Returns:
        Boolean array of length n. Rows with a NaN are never optimal; identical optimal points are all
        marked optimal.

    Raises:
        IcbenchError: A direction is neither "maximize" nor "minimize", or the shapes disagree.
    """
    pts = np.asarray(points, dtype=float)
    if pts.size == 0:
        return np.zeros(len(pts), dtype=bool)
    if pts.ndim != 2 or pts.shape[1] != len(directions):
        raise IcbenchError(f"points have shape {pts.shape}, expected (n, {len(directions)})")
    m = pts * _signs(directions)  # all objectives minimised from here on
    valid = ~np.isnan(m).any(axis=1)
    mask = valid.copy()
    cand = m[valid]
    for i in np.flatnonzero(valid):
        no_worse = (cand <= m[i]).all(axis=1)
        better = (cand < m[i]).any(axis=1)
        if (no_worse & better).any():
            mask[i] = False
    return mask


def candidates(trials: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """COMPLETE trials with every one of `columns` present (finite): the only front/hypervolume input."""
    ok = trials["state"] == "COMPLETE"
    for c in columns:
        ok &= trials[c].notna() if c in trials else False
    return trials[ok]


def pareto_front(trials: pd.DataFrame, objectives: Sequence[tuple[str, str]] = HV_OBJECTIVES) -> pd.DataFrame:
    """The Pareto-optimal COMPLETE trials of a trials table.

    Args:
        trials: The tidy trials table (`state` plus one column per objective).
        objectives: (column, direction) pairs, e.g. (("val_acc", "maximize"), ("macs", "minimize")).

    Returns:
        The optimal rows, sorted by MACs when that column exists (else by the first objective), then
        by trial number.
    """
    names = [n for n, _ in objectives]
    cand = candidates(trials, names)
    mask = pareto_mask(cand[names].to_numpy(dtype=float), [d for _, d in objectives])
    front = cand[mask]
    key = "macs" if "macs" in front.columns else names[0]
    return front.sort_values([key, "number"], kind="stable")


def hypervolume_2d(
    points: Sequence[Sequence[float]] | np.ndarray,
    directions: Sequence[str],
    reference: Sequence[float],
) -> float:
    """Area dominated by `points` and bounded by `reference` (2 objectives).

    Points that do not strictly improve on the reference in both objectives add nothing; NaN rows are
    ignored.

    Args:
        points: Shape (n, 2) objective values.
        directions: "maximize"/"minimize" for the two objectives.
        reference: The reference point (worst acceptable value of each objective).

    Returns:
        The hypervolume, in the product of the two objectives' units (0.0 for no useful point).
    """
    if len(directions) != 2 or len(reference) != 2:
        raise IcbenchError("hypervolume_2d needs exactly two objectives and a 2-D reference point")
    pts = np.asarray(points, dtype=float).reshape(-1, 2)
    signs = _signs(directions)
    m = pts * signs
    ref = np.asarray(reference, dtype=float) * signs
    m = m[~np.isnan(m).any(axis=1)]
    m = m[(m[:, 0] < ref[0]) & (m[:, 1] < ref[1])]
    if len(m) == 0:
        return 0.0
    order = np.lexsort((m[:, 1], m[:, 0]))  # by first objective, ties by the second
    area, best_y = 0.0, ref[1]
    for x, y in m[order]:
        if y < best_y:  # a new step of the staircase
            area += (ref[0] - x) * (best_y - y)
            best_y = y
    return float(area)


def accuracy_top(values: pd.Series | np.ndarray) -> float:
    """The best possible accuracy on the scale in use: 1.0 for fractions, 100.0 for percentages."""
    arr = np.asarray(values, dtype=float)
    arr = arr[~np.isnan(arr)]
    return 100.0 if len(arr) and arr.max() > 1.0 + 1e-9 else 1.0


def default_reference(
    trials: pd.DataFrame, margin: float = DEFAULT_MACS_MARGIN, acc_margin: float = DEFAULT_ACC_MARGIN
) -> tuple[float, float]:
    """The default (accuracy, MACs) reference point, just worse than the worst values seen: the lowest
    accuracy less `acc_margin` x the accuracy range (1 % of the scale when every accuracy is equal; never
    below 0), and `margin` x the largest MACs.

    "Seen" means among the COMPLETE trials with both values, so a rejected or pruned trial cannot move
    the reference point either. Returns (0.0, nan) when there is no such trial.
    """
    cand = candidates(trials, ["val_acc", "macs"])
    if cand.empty:
        return 0.0, math.nan
    lo, hi = float(cand["val_acc"].min()), float(cand["val_acc"].max())
    below = acc_margin * (hi - lo) if hi > lo else 0.01 * accuracy_top(cand["val_acc"])
    return max(0.0, lo - below), float(cand["macs"].max()) * margin


def hypervolume_history(
    trials: pd.DataFrame, reference: tuple[float, float] | None = None
) -> tuple[pd.DataFrame, tuple[float, float]]:
    """The (val_acc, MACs) hypervolume after each trial, by trial number and by wall-clock.

    Args:
        trials: The tidy trials table (`number`, `state`, `val_acc`, `macs`, `elapsed_s`).
        reference: (accuracy, MACs) reference point; default `default_reference(trials)`.

    Returns:
        A table with one row per trial sorted by number, and the reference point used. Columns:
        number, state, counted (whether this trial enters the hypervolume), elapsed_s (its end since the
        study's first start), hypervolume (of the COMPLETE trials numbered up to this one),
        hypervolume_by_time (of the COMPLETE trials finished by this trial's end), the same two divided
        by the box between the reference and the ideal point seen (`*_norm`, 0..1: accuracy from the
        reference to the best seen, MACs from the least seen to the reference; 1 would be one trial that
        is both the most accurate and the cheapest), front_size, ref_val_acc and ref_macs.
    """
    import pandas as pd

    if reference is None:
        reference = default_reference(trials)
    ref_acc, ref_macs = float(reference[0]), float(reference[1])
    table = trials.sort_values("number", kind="stable")
    counted = ((table["state"] == "COMPLETE") & table["val_acc"].notna() & table["macs"].notna()).to_numpy()
    pts = table[["val_acc", "macs"]].to_numpy(dtype=float)
    ends = table["elapsed_s"].to_numpy(dtype=float) if "elapsed_s" in table else np.full(len(table), np.nan)
    seen = table[counted]
    best_acc = float(seen["val_acc"].max()) if len(seen) else math.nan
    least_macs = float(seen["macs"].min()) if len(seen) else math.nan
    box = (best_acc - ref_acc) * (ref_macs - least_macs) if len(seen) else 0.0
    directions = [d for _, d in HV_OBJECTIVES]

    def hv(select: np.ndarray) -> float:
        if math.isnan(ref_macs) or not select.any():
            return 0.0
        return hypervolume_2d(pts[select], directions, (ref_acc, ref_macs))

    rows = []
    for i in range(len(table)):
        upto = counted.copy()
        upto[i + 1 :] = False
        by_time = counted & (ends <= ends[i]) if not math.isnan(ends[i]) else np.zeros_like(counted)
        h, ht = hv(upto), hv(by_time)
        front = int(pareto_mask(pts[upto], directions).sum()) if upto.any() else 0
        rows.append(
            {
                "number": int(table["number"].iloc[i]),
                "state": table["state"].iloc[i],
                "counted": bool(counted[i]),
                "elapsed_s": ends[i],
                "hypervolume": h,
                "hypervolume_norm": h / box if box > 0 else math.nan,
                "hypervolume_by_time": ht if not math.isnan(ends[i]) else math.nan,
                "hypervolume_by_time_norm": (ht / box if box > 0 else math.nan)
                if not math.isnan(ends[i])
                else math.nan,
                "front_size": front,
                "ref_val_acc": ref_acc,
                "ref_macs": ref_macs,
            }
        )
    columns = [
        "number",
        "state",
        "counted",
        "elapsed_s",
        "hypervolume",
        "hypervolume_norm",
        "hypervolume_by_time",
        "hypervolume_by_time_norm",
        "front_size",
        "ref_val_acc",
        "ref_macs",
    ]
    return pd.DataFrame(rows, columns=columns), (ref_acc, ref_macs)
