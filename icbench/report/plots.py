"""Figures for the report (matplotlib, Agg canvas).

Figures are built on `matplotlib.figure.Figure` with an Agg canvas instead of pyplot: no global
backend switch and no pyplot state, so building a report inside a notebook or a study process leaves
their plotting alone. matplotlib is imported lazily.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from icbench.report.tables import acc_factor, fmt_num, macs_unit

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from icbench.report.aggregate import CellCurve

#: Log-scale the MACs axis when the largest value is at least this multiple of the smallest.
LOG_RATIO = 10.0


def _figure(width: float = 7.0, height: float = 4.8, ncols: int = 1) -> tuple[Figure, list[Axes]]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=150, layout="constrained")
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, axes


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    fig.savefig(path)
    return path


def _maybe_log(ax: Axes, values: Sequence[float]) -> None:
    vals = [v for v in values if v > 0 and math.isfinite(v)]
    if vals and max(vals) / min(vals) >= LOG_RATIO:
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        ax.set_xscale("log")
        # Plain numbers at 1-2-5 steps: "0.2" reads faster than "2 x 10^-1" when judging a cost.
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{x:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())


def dodge(x: Sequence[float] | np.ndarray, width: float = 0.025) -> np.ndarray:
    """x positions for markers that share an x value, set side by side so none hides another: a group of
    k equal values gets offsets (i - (k - 1) / 2) x `width`, relative to the value (the same look on a
    linear and a log axis). Values that are not shared are unchanged."""
    x = np.asarray(x, dtype=float)
    out = x.copy()
    for value in np.unique(x[np.isfinite(x)]):
        idx = np.flatnonzero(x == value)
        if len(idx) > 1:
            out[idx] = value * (1.0 + (np.arange(len(idx)) - (len(idx) - 1) / 2.0) * width)
    return out


def _ties(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per distinct `keys` value with `count` (trials at that point) and `numbers` (their trial
    numbers, when the frame has them): tied trials share one marker, sized by their count."""
    have = [k for k in keys if k in frame]
    grouped = frame.groupby(have, sort=False, dropna=False)
    out = grouped.size().rename("count").reset_index()
    if "number" in frame:
        out["numbers"] = list(grouped["number"].apply(list))
    return out


def _step_front(
    ax: Axes, front: pd.DataFrame, x_right: float, scale: float, factor: float, **kw: Any
) -> None:
    """Draw a (max accuracy, min MACs) front as its attainment staircase, extended to `x_right`."""
    pts = front.sort_values("macs")[["macs", "val_acc"]].to_numpy(dtype=float)
    if len(pts) == 0:
        return
    xs = np.append(pts[:, 0], max(x_right, pts[-1, 0])) / scale
    ys = np.append(pts[:, 1], pts[-1, 1]) * factor
    ax.step(xs, ys, where="post", **kw)


def plot_pareto(
    candidates: pd.DataFrame,
    front: pd.DataFrame,
    out_path: str | Path,
    *,
    title: str,
    excluded: str = "",
) -> Path:
    """pareto.png: validation accuracy against MACs.

    Args:
        candidates: COMPLETE trials with val_acc and macs (PRUNED/FAIL must be left out by the caller).
        front: Their (val_acc, macs) Pareto front.
        out_path: PNG file to write.
        title: Figure title.
        excluded: A note on what is not shown (e.g. "3 PRUNED, 2 FAIL not shown").

    Returns:
        The path written.
    """
    factor = acc_factor(candidates["val_acc"])
    mname, mscale = macs_unit(candidates["macs"])
    fig, (ax,) = _figure()
    units = sorted({str(u) for u in candidates["unit"].fillna("?")}) if "unit" in candidates else ["?"]
    colors = {u: f"C{i % 10}" for i, u in enumerate(units)}
    for unit in units:
        sel = (
            candidates[candidates["unit"].fillna("?").astype(str) == unit]
            if "unit" in candidates
            else candidates
        )
        ax.scatter(
            sel["macs"] / mscale,
            sel["val_acc"] * factor,
            s=24,
            alpha=0.45,
            color=colors[unit],
            linewidths=0,
            label=f"COMPLETE, unit {unit} ({len(sel)})",
        )
    x_right = float(candidates["macs"].max()) if len(candidates) else 0.0
    _step_front(ax, front, x_right, mscale, factor, color="black", linewidth=1.4, label="Pareto front")
    # Tied front trials share one marker (area by count, "xk" beside it); distinct front points at the
    # same MACs are set side by side (`dodge`), so no front marker hides another.
    fpts = _ties(front.assign(unit=front["unit"].fillna("?").astype(str)) if "unit" in front else front,
                 ["macs", "val_acc", "unit"])  # fmt: skip
    fx = dodge(fpts["macs"].to_numpy(dtype=float) / mscale)
    ax.scatter(
        fx,
        fpts["val_acc"] * factor,
        s=np.minimum(40 * fpts["count"] ** 0.8, 220),
        facecolors=[colors.get(str(u), "C0") for u in fpts["unit"]] if "unit" in fpts else "C0",
        edgecolors="black",
        linewidths=0.9,
        zorder=3,
        label=f"on the front ({len(front)}; area: trials at one point)",
    )
    if 0 < len(fpts) <= 12:
        # One label per distinct point: tied trials share a point and would overprint each other.
        for x, (_, row) in zip(fx, fpts.iterrows(), strict=True):
            numbers = row.get("numbers", [])
            text = ", ".join(f"#{n}" for n in numbers[:3]) + (f" +{len(numbers) - 3}" if len(numbers) > 3 else "")
            if row["count"] > 1:
                text += f" (x{int(row['count'])})"
            ax.annotate(text, (x, row["val_acc"] * factor), textcoords="offset points", xytext=(6, -11), fontsize=7)
    if "is_basic" in candidates:
        basic = candidates[candidates["is_basic"].fillna(False).astype(bool)]
        if len(basic):
            ax.scatter(
                basic["macs"] / mscale,
                basic["val_acc"] * factor,
                marker="*",
                s=90,  # smaller than a front marker: a basic network on the front leaves its ring visible
                color="gold",
                edgecolors="black",
                linewidths=0.8,
                zorder=4,
                label="basic (all-conv) network",
            )
    _maybe_log(ax, list(candidates["macs"] / mscale))
    ax.set_xlabel(f"MACs per image ({mname}; FLOPs = 2 x MACs)")
    ax.set_ylabel("Validation accuracy (%)")
    ax.set_title(title + (f"\n{excluded}" if excluded else ""), fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    legend = ax.legend(loc="best", fontsize=8)
    for handle in legend.legend_handles:  # one size in the legend, whatever the count of its first point
        if hasattr(handle, "set_sizes"):
            handle.set_sizes([30])
    return _save(fig, out_path)


def _time_axis(seconds: np.ndarray) -> tuple[np.ndarray, str]:
    finite = seconds[np.isfinite(seconds)]
    top = finite.max() if len(finite) else 0.0
    if top >= 2 * 3600:
        return seconds / 3600, "hours"
    if top >= 120:
        return seconds / 60, "minutes"
    return seconds, "seconds"


def plot_hypervolume(
    history: pd.DataFrame, reference: tuple[float, float], out_path: str | Path, *, title: str, rule: str = ""
) -> Path:
    """hypervolume.png: normalised hypervolume by trial number (left) and by wall-clock (right), both on
    the full 0..1 scale of the box between the reference point and the best values seen.

    Args:
        history: `pareto.hypervolume_history` output.
        reference: The (accuracy, MACs) reference point, stated on the figure.
        out_path: PNG file to write.
        title: Figure title.
        rule: How the reference point was chosen, stated on the figure ("" : not stated).
    """
    fig, (left, right) = _figure(width=10.0, height=4.2, ncols=2)
    h = history.sort_values("number")
    left.step(h["number"], h["hypervolume_norm"], where="post", color="C0", label="hypervolume after trial")
    counted = h[h["counted"]]
    left.scatter(
        counted["number"], counted["hypervolume_norm"], s=12, color="C0", zorder=3, label="COMPLETE trial"
    )
    from matplotlib.ticker import MaxNLocator

    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_xlabel("Trial number")
    left.set_ylabel("Hypervolume (fraction of the box)")
    left.set_title("By trial", fontsize=10)
    t = h[np.isfinite(h["elapsed_s"].to_numpy(dtype=float))].sort_values("elapsed_s")
    xs, unit = _time_axis(t["elapsed_s"].to_numpy(dtype=float))
    right.step(xs, t["hypervolume_by_time_norm"], where="post", color="C1", label="hypervolume at time")
    done = t["counted"].to_numpy(dtype=bool)
    right.scatter(
        xs[done], t["hypervolume_by_time_norm"][done], s=12, color="C1", zorder=3, label="COMPLETE trial"
    )
    right.set_xlabel(f"Wall-clock since study start ({unit})")
    right.set_ylabel("Hypervolume (fraction of the box)")
    right.set_title("By wall-clock", fontsize=10)
    for ax in (left, right):
        # The same full 0..1 scale on both panels: the box spans the reference point to the best values
        # seen, so the gains of a study show without zooming into a sliver of the axis.
        ax.set_ylim(0.0, 1.02)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    acc_ref, macs_ref = reference
    mname, mscale = macs_unit([macs_ref])
    acc_scale = 100.0 if acc_ref > 1.0 + 1e-9 else 1.0
    how = f" ({rule})" if rule else ""
    fig.suptitle(
        f"{title}; objectives: max val acc, min MACs\nreference point: val acc {acc_ref * 100 / acc_scale:.2f} %, "
        f"MACs {fmt_num(macs_ref, mscale)} {mname}{how}\n1.0: one trial both the most accurate and the cheapest seen",
        fontsize=9,
    )
    return _save(fig, out_path)


def plot_curves(
    curves: Sequence[CellCurve], out_path: str | Path, *, title: str, target: float | None, acc_values: Any
) -> Path:
    """curves.png: validation accuracy per epoch for each cell, mean line with a ± 1 std band.

    Args:
        curves: `aggregate.cell_curves` output.
        out_path: PNG file to write.
        title: Figure title.
        target: Epochs-to-target accuracy drawn as a dashed line (None: not drawn).
        acc_values: Accuracy values used to decide fraction vs percent.
    """
    return _save(curves_figure(curves, title=title, target=target, acc_values=acc_values), out_path)


def curves_figure(curves: Sequence[CellCurve], *, title: str, target: float | None, acc_values: Any) -> Figure:
    """The figure of `plot_curves`."""
    factor = acc_factor(acc_values)
    fig, (ax,) = _figure()
    any_warm = False
    for i, c in enumerate(curves):
        color = f"C{i % 10}"
        # A WLD student warm-started from the teacher's weights begins at the teacher's accuracy: its
        # epoch 1 is not a speed-up. Dashed and labelled, so the figure cannot be read as one.
        warm = c.warm > 0
        any_warm |= warm
        share = "" if not warm else (" [warm start]" if c.warm == c.trials else f" [{c.warm} of {c.trials} warm start]")
        ax.plot(
            c.epochs,
            c.mean * factor,
            color=color,
            marker="o",
            markersize=3,
            linestyle="--" if warm else "-",
            label=f"{c.label} (n={c.n.max()}){share}",
        )
        # An accuracy cannot leave [0, 100 %]: the ± std band is clipped to it.
        top = 100.0 / factor
        low, high = (c.mean - c.std).clip(0.0, top), (c.mean + c.std).clip(0.0, top)
        ax.fill_between(c.epochs, low * factor, high * factor, color=color, alpha=0.2)
    if target is not None and math.isfinite(target):
        ax.axhline(
            target * factor,
            color="gray",
            linestyle="--",
            linewidth=1,
            label=f"target {target * factor:.2f} %",
        )
    if not curves:
        ax.text(0.5, 0.5, "no learning curves recorded", transform=ax.transAxes, ha="center", va="center")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("Epoch")
    ax.set_ylabel("Validation accuracy (%)")
    note = (
        "\ndashed, [warm start]: WLD students start from the teacher's trained weights,\nso their epoch 1 "
        "begins at the teacher's accuracy (not a faster start)"
        if any_warm
        else ""
    )
    ax.set_title(
        title + "\nmean over the trials of each cell (seeds in a grid study), band: ± 1 std" + note,
        fontsize=10 if not any_warm else 8,
    )
    ax.grid(True, alpha=0.3)
    if curves or target is not None:
        ax.legend(loc="lower right", fontsize=8)
    return fig


def plot_compare(
    series: Sequence[tuple[str, pd.DataFrame, pd.DataFrame]], out_path: str | Path, *, title: str
) -> Path:
    """compare.png: several studies' COMPLETE trials (faint) and fronts (step lines) on one axis.

    Args:
        series: (label, COMPLETE candidates, front) per study.
        out_path: PNG file to write.
        title: Figure title.
    """
    import pandas as pd

    every = pd.concat([c for _, c, _ in series]) if series else pd.DataFrame(columns=["macs", "val_acc"])
    factor = acc_factor(every["val_acc"])
    mname, mscale = macs_unit(every["macs"])
    x_right = float(every["macs"].max()) if len(every) else 0.0
    fig, (ax,) = _figure()
    markers = ["o", "s", "^", "D", "v", "P"]
    for i, (label, cand, front) in enumerate(series):
        color = f"C{i % 10}"
        ax.scatter(
            cand["macs"] / mscale, cand["val_acc"] * factor, s=14, alpha=0.25, color=color, linewidths=0
        )
        _step_front(ax, front, x_right, mscale, factor, color=color, linewidth=1.6)
        ax.scatter(
            front["macs"] / mscale,
            front["val_acc"] * factor,
            s=34,
            marker=markers[i % len(markers)],
            color=color,
            edgecolors="black",
            linewidths=0.7,
            zorder=3,
            label=f"{label}: front ({len(front)} of {len(cand)} COMPLETE)",
        )
    _maybe_log(ax, list(every["macs"] / mscale))
    ax.set_xlabel(f"MACs per image ({mname}; FLOPs = 2 x MACs)")
    ax.set_ylabel("Validation accuracy (%)")
    ax.set_title(title + "\nfaint: all COMPLETE trials; lines: Pareto fronts", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, out_path)
