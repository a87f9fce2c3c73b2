"""The table report: what a benchmark table (IC-Bench) says about a unit on one problem.

`build_bench_report(table, out_dir)` reads one table (`table.py`) and writes `bench.md` (plain language:
does the unit help, and at which sites?), `bench_effects.csv` (every comparison with its numbers),
`bench_front.csv` (every candidate: mean accuracy, MACs, on the front or how far from it) and
`bench_front.png`. It never trains; everything after reading the file is a pure function of its rows.

Choices, and why:
- A candidate is (placement, WLD on/off); its seeds are its replicates. Only `complete` rows with a
  validation accuracy count; the others are counted in the header.
- Every comparison is paired by seed (`stats.paired`): two candidates trained with seed s share the data
  order, so the per-seed difference removes the part of the seed noise both share.
- Single-site effects compare against the basic network *without* WLD, so a WLD-on row measures the unit
  and WLD together; the WLD section separates the two.
- The WLD effect of a unit is averaged over its placements within each seed first, so the unit of
  replication is the seed (the placements of one seed share that seed's noise and are not independent).
- Holm's correction is applied per table: the single-site table (validation and test separately) and the
  WLD table. The front comparisons are per-candidate 95% intervals, not corrected: a narrower interval
  calls fewer candidates "indistinguishable", so the count is not inflated by the correction.
"""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from icbench.liveness import INERT_DELTA, LIVENESS_BATCH
from icbench.report import signal, stats
from icbench.report.build import _atomic, _write_text, check_out_dir
from icbench.report.environment import MACHINE_COLUMNS, machine_label, machine_rows, parse_machine
from icbench.report.evaluation import END_OF_TRAINING
from icbench.report.pareto import pareto_mask
from icbench.report.plots import _figure, _maybe_log, _save, _step_front, dodge  # reads like pareto.png
from icbench.report.table import read_table
from icbench.report.tables import fmt_num, fmt_p, macs_unit, markdown_table, missing

if TYPE_CHECKING:
    import pandas as pd

#: Files the table report writes, in the order bench.md lists them.
BENCH_FILES: tuple[str, ...] = (
    "bench.md", "bench_signal.csv", "bench_effects.csv", "bench_front.csv", "bench_front.png",
)  # fmt: skip
#: Accuracies are stored as fractions; the report shows points (percent).
FACTOR = 100.0
#: Unit name of the basic network's placement.
BASIC_UNIT = "conv"
#: How many off-front candidates bench.md lists by name (bench_front.csv has them all).
LIST_OFF_FRONT = 15
#: Experiment fields the header names first, in this order (the rest follow alphabetically).
_EXPERIMENT_ORDER = (
    "dataset", "dataset_kwargs", "family", "size", "width", "family_kwargs", "epochs", "time_budget_s",
    "batch_size", "lr", "momentum", "nesterov", "weight_decay", "schedule",
)  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Candidates


@dataclass(frozen=True)
class Candidate:
    """One (placement, WLD) of a table with its per-seed results (complete rows only).

    Attributes:
        placement: canonical `unit:bits` string (one bit per site, the stem's first).
        val, test: seed -> validation / test accuracy (fractions; test NaN where not measured).
        macs, params: cost of one forward pass (the same for every seed).
    """

    placement: str
    wld: bool
    macs: float
    params: float
    val: dict[int, float]
    test: dict[int, float]

    @property
    def unit(self) -> str:
        return self.placement.split(":", 1)[0]

    @property
    def bits(self) -> str:
        return self.placement.split(":", 1)[1] if ":" in self.placement else ""

    @property
    def sites(self) -> tuple[int, ...]:
        return tuple(i for i, b in enumerate(self.bits) if b == "1")

    @property
    def is_basic(self) -> bool:
        return not self.sites

    @property
    def label(self) -> str:
        return f"{self.placement}{' +WLD' if self.wld else ''}"

    @property
    def val_interval(self) -> stats.Interval:
        return stats.mean_interval(list(self.val.values()))

    @property
    def test_interval(self) -> stats.Interval:
        return stats.mean_interval(list(self.test.values()))


Key = tuple[str, bool]


def table_candidates(frame: pd.DataFrame) -> dict[Key, Candidate]:
    """(placement, wld) -> Candidate over the table's complete rows with a validation accuracy.

    Every basic placement (no bit set, any unit) is one network and is keyed as `conv:000...`.
    """
    ok = frame[(frame["status"] == "complete") & frame["val_acc"].notna()]
    out: dict[Key, Candidate] = {}
    for (placement, wld), group in ok.groupby(["placement", "wld"], sort=True):
        placement = str(placement)
        bits = placement.split(":", 1)[1] if ":" in placement else ""
        if "1" not in bits:
            placement = f"{BASIC_UNIT}:{bits}"
        key = (placement, bool(wld))
        old = out.get(key)
        val, test = dict(old.val) if old else {}, dict(old.test) if old else {}
        for seed, v, t in zip(group["seed"], group["val_acc"], group["test_acc"], strict=True):
            val[int(seed)] = float(v)
            test[int(seed)] = math.nan if missing(t) else float(t)
        out[key] = Candidate(
            placement, bool(wld), float(group["macs"].iloc[0]), float(group["params"].iloc[0]), val, test
        )
    return out


def basic_key(cands: Mapping[Key, Candidate], wld: bool = False) -> Key | None:
    """The key of the basic network (with or without WLD), or None when the table has none."""
    return next((k for k, c in sorted(cands.items()) if c.is_basic and c.wld == wld), None)


def eligible_sites(cands: Mapping[Key, Candidate]) -> list[int]:
    """Sites that hold the unit in at least one row (the stem never does)."""
    return sorted({i for c in cands.values() for i in c.sites})


def _units(cands: Mapping[Key, Candidate]) -> list[str]:
    return sorted({c.unit for c in cands.values() if not c.is_basic})


# --------------------------------------------------------------------------------------------------
# Effects


@dataclass(frozen=True)
class Effect:
    """One comparison of a report table: validation and test, each a paired-by-seed difference.

    Attributes:
        section: "single-site" or "wld".
        unit: the unit compared (`conv` for the basic network's WLD effect).
        wld: "off", "on", or "on - off" (a WLD effect).
        where: "site i", "all eligible sites", "k placements" or "basic network".
        n_placements: placements averaged within each seed (1 for a single candidate).
    """

    section: str
    unit: str
    wld: str
    where: str
    val: stats.Paired
    test: stats.Paired
    n_placements: int = 1


def _with_holm(effects: Sequence[Effect]) -> list[Effect]:
    """Holm's correction over the table, validation and test as separate families."""
    from dataclasses import replace

    vals = stats.holm_table([e.val for e in effects])
    tests = stats.holm_table([e.test for e in effects])
    return [replace(e, val=v, test=t) for e, v, t in zip(effects, vals, tests, strict=True)]


def single_site_effects(cands: Mapping[Key, Candidate]) -> list[Effect]:
    """Each unit x WLD x eligible site (exactly that bit set), and every eligible site at once, against
    the basic network without WLD (same seed), Holm-corrected over the table. Empty without a basic
    network."""
    ref_key = basic_key(cands)
    if ref_key is None:
        return []
    ref = cands[ref_key]
    sites = eligible_sites(cands)
    n_bits = len(ref.bits)
    where: list[tuple[str, tuple[int, ...]]] = [(f"site {i}", (i,)) for i in sites]
    if len(sites) > 1:
        where.append(("all eligible sites", tuple(sites)))
    out = []
    for unit in _units(cands):
        for wld in (False, True):
            for name, on in where:
                bits = "".join("1" if i in on else "0" for i in range(n_bits))
                c = cands.get((f"{unit}:{bits}", wld))
                if c is None:
                    continue
                out.append(
                    Effect(
                        "single-site",
                        unit,
                        "on" if wld else "off",
                        name,
                        stats.paired(c.label, c.val, "the basic network", ref.val),
                        stats.paired(c.label, c.test, "the basic network", ref.test),
                    )  # fmt: skip
                )
    return _with_holm(out)


def _per_seed_means(
    cands: Mapping[Key, Candidate], placements: Sequence[str], metric: str
) -> tuple[dict[int, float], dict[int, float], int]:
    """(seed -> mean with WLD, seed -> mean without, placements used) over the placements that have both
    settings at that seed (so each seed's two means are over the same placements)."""
    on: dict[int, list[float]] = {}
    off: dict[int, list[float]] = {}
    used: set[str] = set()
    for p in placements:
        a, b = cands.get((p, True)), cands.get((p, False))
        if a is None or b is None:
            continue
        va, vb = getattr(a, metric), getattr(b, metric)
        for s in va:
            if s in vb and not math.isnan(va[s]) and not math.isnan(vb[s]):
                on.setdefault(s, []).append(va[s])
                off.setdefault(s, []).append(vb[s])
                used.add(p)
    mean = {s: sum(v) / len(v) for s, v in on.items()}
    mean_off = {s: sum(v) / len(v) for s, v in off.items()}
    return mean, mean_off, len(used)


def wld_effects(cands: Mapping[Key, Candidate]) -> list[Effect]:
    """Per unit: WLD on minus off over the same placement and seed, averaged over placements within each
    seed (the seed is the unit of replication); and the basic network's, when a basic+WLD row exists.
    Holm-corrected over the table."""
    out = []
    for unit in _units(cands):
        placements = sorted({c.placement for c in cands.values() if c.unit == unit and not c.is_basic})
        v_on, v_off, n = _per_seed_means(cands, placements, "val")
        if n == 0:
            continue
        t_on, t_off, _ = _per_seed_means(cands, placements, "test")
        label = f"{unit}, WLD on"
        out.append(
            Effect(
                "wld",
                unit,
                "on - off",
                f"{n} placements",
                stats.paired(label, v_on, "WLD off", v_off),
                stats.paired(label, t_on, "WLD off", t_off),
                n,
            )  # fmt: skip
        )
    on_key, off_key = basic_key(cands, True), basic_key(cands)
    if on_key is not None and off_key is not None:
        a, b = cands[on_key], cands[off_key]
        out.append(
            Effect(
                "wld",
                BASIC_UNIT,
                "on - off",
                "basic network",
                stats.paired("basic, WLD on", a.val, "WLD off", b.val),
                stats.paired("basic, WLD on", a.test, "WLD off", b.test),
            )  # fmt: skip
        )
    return _with_holm(out)


def _paired_columns(prefix: str, row: stats.Paired) -> dict[str, Any]:
    d = row.diff
    return {
        f"{prefix}_n_seeds": row.n,
        f"{prefix}_diff_pts": d.mean * FACTOR,
        f"{prefix}_ci_low_pts": d.low * FACTOR,
        f"{prefix}_ci_high_pts": d.high * FACTOR,
        f"{prefix}_p": row.p,
        f"{prefix}_p_holm": row.p_adjusted,
        f"{prefix}_detectable_pts": row.detectable * FACTOR,
        f"{prefix}_significant": row.significant(),
        f"{prefix}_verdict": stats.verdict(row, factor=FACTOR),
    }


def effects_frame(effects: Sequence[Effect]) -> pd.DataFrame:
    """bench_effects.csv: one row per comparison, differences in accuracy points (x100)."""
    import pandas as pd

    rows = [
        {
            "section": e.section,
            "unit": e.unit,
            "wld": e.wld,
            "where": e.where,
            "label": e.val.label,
            "against": e.val.reference,
            "n_placements": e.n_placements,
            "seeds": " ".join(map(str, e.val.seeds)),
            **_paired_columns("val", e.val),
            **_paired_columns("test", e.test),
        }  # fmt: skip
        for e in effects
    ]
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------
# Front


@dataclass(frozen=True)
class FrontEntry:
    """A candidate's place relative to the (mean val acc up, MACs down) front.

    Attributes:
        on_front: Pareto-optimal on the means.
        against: for an off-front candidate, the front member with the highest mean accuracy among those
            with MACs <= its MACs (the one that dominates it most); None on the front.
        diff: paired-by-seed (candidate - against) validation difference; None on the front.
        status: "front", "indistinguishable" (the 95% interval contains 0), "differs", or "too few seeds".
    """

    candidate: Candidate
    on_front: bool
    against: Candidate | None = None
    diff: stats.Paired | None = None
    status: str = "front"


def front_entries(cands: Mapping[Key, Candidate]) -> list[FrontEntry]:
    """Every candidate with its front status: front members by MACs, then the rest by MACs."""
    items = sorted(cands.values(), key=lambda c: (c.macs, -c.val_interval.mean, c.label))
    points = [(c.val_interval.mean, c.macs) for c in items]
    mask = pareto_mask(points, ["maximize", "minimize"]) if items else []
    front = [c for c, m in zip(items, mask, strict=True) if m]
    out = [FrontEntry(c, True) for c in front]
    for c, on in zip(items, mask, strict=True):
        if on:
            continue
        cheaper = [f for f in front if f.macs <= c.macs]
        if not cheaper:  # only a NaN candidate can be off the front with no cheaper member
            out.append(FrontEntry(c, False, status="too few seeds"))
            continue
        ref = max(cheaper, key=lambda f: (f.val_interval.mean, -f.macs))
        d = stats.paired(c.label, c.val, ref.label, ref.val)
        if d.n < 2:
            status = "too few seeds"
        elif d.diff.low <= 0 <= d.diff.high:
            status = "indistinguishable"
        else:
            status = "differs"
        out.append(FrontEntry(c, False, ref, d, status))
    return out


def front_frame(entries: Sequence[FrontEntry]) -> pd.DataFrame:
    """bench_front.csv: every candidate, front members first; accuracies and differences in points."""
    import pandas as pd

    rows = []
    for e in entries:
        c, v, t = e.candidate, e.candidate.val_interval, e.candidate.test_interval
        d = e.diff.diff if e.diff is not None else None
        rows.append({
            "placement": c.placement, "unit": c.unit, "wld": c.wld, "n_sites_with_unit": len(c.sites),
            "on_front": e.on_front, "status": e.status, "n_seeds": v.n, "val_acc_pts": v.mean * FACTOR,
            "val_ci_low_pts": v.low * FACTOR, "val_ci_high_pts": v.high * FACTOR,
            "test_acc_pts": t.mean * FACTOR, "macs": c.macs, "params": c.params,
            "against": e.against.label if e.against else "",
            "diff_pts": d.mean * FACTOR if d else math.nan, "diff_ci_low_pts": d.low * FACTOR if d else math.nan,
            "diff_ci_high_pts": d.high * FACTOR if d else math.nan,
        })  # fmt: skip
    return pd.DataFrame(rows)


def plot_front(entries: Sequence[FrontEntry], out_path: Path, title: str) -> Path:
    """bench_front.png: every candidate's mean validation accuracy against MACs, the front as a staircase
    with 95% intervals, the basic network as a star."""
    import pandas as pd

    frame = front_frame(entries)
    frame["val_acc"] = frame["val_acc_pts"] / FACTOR
    mname, mscale = macs_unit(frame["macs"])
    fig, (ax,) = _figure()
    for i, unit in enumerate(sorted(set(frame["unit"]))):
        for wld in (False, True):
            sel = frame[(frame["unit"] == unit) & (frame["wld"] == wld)]
            if sel.empty:
                continue
            color = f"C{i % 10}"
            ax.scatter(
                sel["macs"] / mscale, sel["val_acc_pts"], s=22, alpha=0.5, linewidths=0.8,
                facecolors="none" if wld else color, edgecolors=color,
                label=f"{unit}{', WLD' if wld else ''} ({len(sel)})",
            )  # fmt: skip
    front = frame[frame["on_front"]]
    _step_front(ax, front, float(frame["macs"].max()), mscale, FACTOR, color="black", linewidth=1.3)
    basic = frame[frame["n_sites_with_unit"] == 0]
    # Front points and basic networks often share a MACs value (a 1x-MACs unit costs what the basic network
    # costs): set side by side (`dodge`), none hides another; the staircase keeps the true MACs.
    xs = dodge([*(front["macs"] / mscale), *(basic["macs"] / mscale)])
    front_x, basic_x = xs[: len(front)], xs[len(front) :]
    ax.errorbar(
        front_x, front["val_acc_pts"],
        yerr=[
            (front["val_acc_pts"] - front["val_ci_low_pts"]).fillna(0),
            (front["val_ci_high_pts"] - front["val_acc_pts"]).fillna(0),
        ],
        fmt="o", ms=5, color="black", mfc="white", capsize=2, zorder=3, label=f"front, 95% CI ({len(front)}; side by side at equal MACs)",
    )  # fmt: skip
    ax.scatter(
        basic_x, basic["val_acc_pts"], marker="*", s=150, color="gold", edgecolors="black",
        linewidths=0.8, zorder=4, label="basic network (WLD off and on)",
    )  # fmt: skip
    _maybe_log(ax, list(pd.to_numeric(frame["macs"]) / mscale))
    ax.set_xlabel(f"MACs per image ({mname}; FLOPs = 2 x MACs)")
    ax.set_ylabel("Mean validation accuracy over seeds (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="best", fontsize=7)
    return _save(fig, out_path)


# --------------------------------------------------------------------------------------------------
# Markdown


def _pts(x: float) -> str:
    return "-" if missing(x) else f"{x * FACTOR:+.2f}"


def _ci(row: stats.Paired) -> str:
    d = row.diff
    return "-" if missing(d.low) else f"[{d.low * FACTOR:+.2f}, {d.high * FACTOR:+.2f}]"


def _p(row: stats.Paired) -> str:
    return "-" if missing(row.p_adjusted) else fmt_p(row.p_adjusted)


def _acc(interval: stats.Interval) -> str:
    if interval.n == 0:
        return "-"
    if interval.n < 2:
        return f"{interval.mean * FACTOR:.2f} (n = 1)"
    return f"{interval.mean * FACTOR:.2f} ± {interval.half_width * FACTOR:.2f}"


def _effect_rows(effects: Sequence[Effect]) -> list[list[str]]:
    return [
        [
            e.unit,
            e.wld,
            e.where,
            e.val.label,
            str(e.val.n),
            _pts(e.val.diff.mean),
            _ci(e.val),
            _p(e.val),
            stats.verdict(e.val, factor=FACTOR),
            _pts(e.test.diff.mean),
            _ci(e.test),
            _p(e.test),
        ]  # fmt: skip
        for e in effects
    ]


_EFFECT_HEADERS = [
    "Unit", "WLD", "Where", "Candidate", "Seeds", "Val diff (pts)", "Val 95% CI", "Val p (Holm)",
    "Verdict (validation)", "Test diff (pts)", "Test 95% CI", "Test p (Holm)",
]  # fmt: skip


def _detectable_range(rows: Sequence[stats.Paired]) -> str:
    vals = sorted(r.detectable * FACTOR for r in rows if not missing(r.detectable))
    if not vals:
        return ""
    mid = vals[len(vals) // 2]
    if vals[0] == vals[-1]:
        return f"about {mid:.2f} points"
    return f"between {vals[0]:.2f} and {vals[-1]:.2f} points (median {mid:.2f})"


def effects_summary(effects: Sequence[Effect], what: str) -> str:
    """One paragraph on a table of effects: which differ after Holm's correction, and the design's limit."""
    if not effects:
        return f"No {what} comparison: the table has no such rows (or no basic network)."
    found = [e for e in effects if e.val.significant()]
    quiet = [e.val for e in effects if not e.val.significant()]
    seeds = sorted({r.n for r in (e.val for e in effects)})
    n_text = "/".join(map(str, seeds))
    parts = []
    better = [e for e in found if e.val.diff.mean > 0]
    worse = [e for e in found if e.val.diff.mean < 0]
    if better:
        parts.append(
            "Better than the reference after Holm's correction: "
            + "; ".join(
                f"{e.val.label} ({_pts(e.val.diff.mean)} points, 95% CI {_ci(e.val)})" for e in better
            )
            + "."
        )
    if worse:
        parts.append(
            "Worse than the reference after Holm's correction: "
            + "; ".join(f"{e.val.label} ({_pts(e.val.diff.mean)} points, 95% CI {_ci(e.val)})" for e in worse)
            + "."
        )
    if not found:
        parts.append(f"None of the {len(effects)} {what} comparisons shows a detectable difference.")
    if quiet:
        limit = _detectable_range(quiet)
        parts.append(
            f"{len(quiet)} of {len(effects)} show no detectable difference at n = {n_text} seeds"
            + (
                f"; the smallest difference this design detects there (80% power) is {limit}."
                if limit
                else "."
            )
        )
    return " ".join(parts)


def _experiment_lines(experiment: Mapping[str, Any] | None) -> list[str]:
    if not experiment:
        return [
            "The rows do not share one experiment record (`experiment` is empty in the table's metadata).\n"
        ]
    keys = [k for k in _EXPERIMENT_ORDER if k in experiment]
    keys += sorted(k for k in experiment if k not in keys and k != "wld")
    shown = [(k, experiment[k]) for k in keys if experiment[k] not in (None, {}, [])]
    lines = [f"- `{k}`: {json.dumps(v, default=str)}" for k, v in shown]
    wld = {k: v for k, v in (experiment.get("wld") or {}).items() if k != "teacher_recipe"}
    if wld:
        lines.append(f"- `wld` (for the rows with WLD on): {json.dumps(wld, sort_keys=True, default=str)}")
    return [*lines, ""]


def _machine_lines(frame: pd.DataFrame) -> list[str]:
    machines: dict[str, dict[str, Any]] = {}
    counts: dict[str, int] = {}
    for value in frame["machine"]:
        m = parse_machine(value)
        if m is None:
            continue
        label = machine_label(m)
        machines[label] = m
        counts[label] = counts.get(label, 0) + 1
    unrecorded = len(frame) - sum(counts.values())
    if not machines:
        return ["No row recorded its machine.\n"]
    lines = [
        f"Rows trained on {len(machines)} distinct machine{'s' if len(machines) != 1 else ''}"
        + (f" ({unrecorded} row(s) recorded none)" if unrecorded else "")
        + "; full descriptions are the table's `machine` column. Latencies are only comparable within one "
        "machine.\n"
    ]
    headers = ["Machine", *(title for _, title in MACHINE_COLUMNS), "Rows"]
    lines.append(markdown_table(headers, machine_rows(machines, counts), "l" * (len(headers) - 1) + "r"))
    return lines


def statement_on_test(frame: pd.DataFrame) -> str:
    """What the test column is, read from the rows' `test_evaluated` (so the sentence is what happened)."""
    done = frame[frame["status"] == "complete"]
    has = done[done["test_acc"].notna()]
    how = has["test_evaluated"].map(lambda v: END_OF_TRAINING if missing(v) else str(v)).value_counts()
    lacking = len(done) - len(has)
    if len(has) == 0:
        return "No complete row has a test accuracy: the test columns below are empty."
    if set(how.index) == {END_OF_TRAINING}:
        text = (
            f"The test accuracy is the test split evaluated once at the end of each row's training "
            f"({len(has)} of {len(done)} complete rows"
            + (f"; {lacking} have none" if lacking else ", i.e. every one")
            + ")."
        )
    else:
        text = "Test accuracies were measured: " + ", ".join(f"{n} rows {k}" for k, n in how.items()) + "."
    return (
        "Every comparison, the front and every verdict use the validation accuracy after the last epoch; "
        f"nothing here selects on the test split. {text} The test columns are shown beside for reference, "
        "paired and Holm-corrected the same way."
    )


def liveness_headline(frame: pd.DataFrame) -> str:
    """One sentence for the short answer: whether the rows' units moved, so the effects above mean anything."""
    units = frame[(frame["unit"].astype(str) != "conv") & (frame["status"] == "complete")]
    if units.empty:
        return "no row holds a unit."
    if "unit_delta" not in units or units["unit_delta"].isna().all():
        return (
            "**not recorded, and the units were trained the legacy way, which leaves them (nearly) the plain "
            "convolution: read every unit effect above as a comparison of the plain convolution with itself** "
            "(section Unit liveness)."
        )
    d = units["unit_delta"].dropna().astype(float)
    inert = int((d < INERT_DELTA).sum())
    return (
        f"median δ {d.median():.3f} over {len(d)} rows with units; {inert} of them inert (δ < {INERT_DELTA:g})"
        + (": the effects of those rows say nothing about the unit." if inert else ".")
    )


def signal_headline(signals: Sequence[signal.StratumSignal]) -> str:
    """One sentence for the short answer: the noise ceilings of the placement strata."""
    strata = [s for s in signals if "pooled" not in s.stratum]
    if not strata:
        return "no stratum has two candidates to tell apart."
    told = [s for s in strata if s.separable]
    ceilings = [s.ceiling for s in strata if not math.isnan(s.ceiling)]
    span = f"{min(ceilings):.2f} to {max(ceilings):.2f}" if ceilings else "not measurable"
    return (
        f"the seeds tell the placements apart in {len(told)} of {len(strata)} strata (F test p < "
        f"{signal.ALPHA:g}); noise ceilings (one seed's ranking against the other seeds') {span}"
        + (": within-stratum rankings here are mostly seed noise." if not told else ".")
    )


def liveness_lines(frame: pd.DataFrame) -> str:
    """Per unit and WLD, how far the rows' trained units moved (δ), or that the table did not record it."""
    units = frame[(frame["unit"].astype(str) != "conv") & (frame["status"] == "complete")]
    if units.empty:
        return "No complete row holds a unit.\n"
    if "unit_delta" not in units or units["unit_delta"].isna().all():
        return (
            "This table's rows do not record δ (the table was made before unit liveness was measured). Its "
            "units were trained the legacy way (`unit_lr_mult: 1`, `unit_init: zero`), which leaves `ic_dual` "
            'exactly the plain convolution and `ic` and `se` within about 1 % of it (docs/units.md, "Units that '
            'learn"): every unit effect here compares the plain convolution with (almost) itself.\n'
        )
    rows = []
    for (unit, wld), group in units.groupby(
        [units["unit"].astype(str), units["wld"].astype(bool)], sort=True
    ):
        d = group["unit_delta"].dropna().astype(float)
        inert = int((d < INERT_DELTA).sum())
        rows.append(
            [unit, "on" if wld else "off", str(len(d)), f"{d.median():.3f}" if len(d) else "-",
             f"{d.min():.3f}" if len(d) else "-", f"{d.max():.3f}" if len(d) else "-", f"{inert}/{len(d)}"]
        )  # fmt: skip
    text = (
        f"δ per row: how much the trained units change their sites' outputs (median over the row's unit "
        f"sites of ‖unit(x) − conv(x)‖ / ‖conv(x)‖ on the first {LIVENESS_BATCH} validation images). Rows "
        f"under {INERT_DELTA:g} count as inert.\n\n"
    )
    return (
        text
        + markdown_table(["Unit", "WLD", "Rows", "Median δ", "Min δ", "Max δ", "Inert"], rows, "llrrrrr")
        + "\n"
    )


def bench_markdown(
    table_path: Path,
    frame: pd.DataFrame,
    shared: Mapping[str, Any],
    cands: Mapping[Key, Candidate],
    single: Sequence[Effect],
    wld: Sequence[Effect],
    entries: Sequence[FrontEntry],
    signals: Sequence[signal.StratumSignal] = (),
) -> str:
    """bench.md: the header, a short answer, the signal diagnostics, the three sections and the file list."""
    seeds = sorted({int(s) for s in frame["seed"]}) if len(frame) else []
    complete = int((frame["status"] == "complete").sum()) if len(frame) else 0
    sites = eligible_sites(cands)
    ref = basic_key(cands)
    n_bits = max((len(str(p).split(":", 1)[-1]) for p in frame["placement"]), default=0)
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# IC-Bench table report: {table_path.stem}\n"]
    lines.append(
        f"Generated {generated} from the table `{table_path}` (study file `{shared.get('study')}`): "
        f"{len(frame)} rows, {complete} complete; {len(cands)} candidates (placement x WLD) with a "
        f"complete row; seeds {seeds}. Eligible sites (holding the unit in some row): "
        f"{', '.join(map(str, sites)) or 'none'} of {n_bits} "
        "(site 0, the stem convolution, never holds it). Accuracies are in percent; differences in "
        "accuracy points.\n"
    )
    if complete < len(frame):
        bad = frame[frame["status"] != "complete"]["status"].value_counts()
        lines.append(
            "Left out (not complete): " + ", ".join(f"{n} {k}" for k, n in bad.items()) + ". A candidate's "
            "comparisons use the seeds it completed.\n"
        )
    lines.append("## Shared experiment\n")
    lines += _experiment_lines(shared.get("experiment"))
    lines.append("## Machines\n")
    lines += _machine_lines(frame)
    lines.append("## What the accuracies are\n")
    lines.append(statement_on_test(frame) + "\n")

    lines.append("## Does the unit help, and where?\n")
    if ref is None:
        lines.append(
            "The table has no basic network (`conv:000...` without WLD): no effect can be measured.\n"
        )
    lines.append(
        "- Single sites and all sites, against the basic network: " + effects_summary(single, "single-site")
    )
    lines.append("- WLD: " + effects_summary(wld, "WLD"))
    lines.append("- Unit liveness: " + liveness_headline(frame))
    lines.append("- Signal: " + signal_headline(signals))
    n_front = sum(e.on_front for e in entries)
    n_ind = sum(e.status == "indistinguishable" for e in entries)
    lines.append(
        f"- Front: {n_front} candidate{'s' if n_front != 1 else ''} on the (accuracy, MACs) front; the "
        f"table cannot tell {n_ind} other{'s' if n_ind != 1 else ''} apart from the front with "
        f"{len(seeds)} seeds.\n"
    )

    lines.append("## Signal: can the seeds tell the candidates apart?\n")
    lines.append(signal.signal_markdown(signals))
    lines.append("## Unit liveness\n")
    lines.append(liveness_lines(frame))
    lines.append("## Single-site effects\n")
    lines.append(
        "Each row: the candidate with the unit at exactly the named site(s) (WLD off or on) minus the basic "
        "network without WLD, per seed, then the mean of those differences with its 95% Student's t "
        "interval (n - 1 degrees of freedom). p-values are Holm-corrected over the "
        f"{len(single)} rows of this table (validation and test as separate families). A WLD-on row "
        "measures the unit and WLD together (see the WLD section). Where no difference is detected, the "
        "verdict gives the smallest true difference these seeds would detect with 80% power.\n"
    )
    if single:
        lines.append(markdown_table(_EFFECT_HEADERS, _effect_rows(single), "llllrrrrlrrr"))
    else:
        lines.append("No single-site row in the table.\n")

    lines.append("## WLD effect\n")
    lines.append(
        "Each row: WLD on minus WLD off, over the same placement and seed. For a unit, the per-seed "
        "differences are averaged over its placements within each seed first, so the seed is the unit of "
        "replication and the interval has n - 1 = seeds - 1 degrees of freedom. Holm-corrected over the "
        f"{len(wld)} rows of this table.\n"
    )
    if wld:
        lines.append(markdown_table(_EFFECT_HEADERS, _effect_rows(wld), "llllrrrrlrrr"))
    else:
        lines.append("No candidate has both WLD settings.\n")

    lines += _front_section(entries, len(seeds))
    lines.append("## Files\n")
    desc = {
        "bench_signal.csv": "the signal diagnostics of every stratum (variance components, ICC, noise "
        "ceiling, resolvable difference, verdict)",
        "bench_effects.csv": "every comparison above with all its numbers (points, p, Holm p, detectable "
        "difference, verdicts)",
        "bench_front.csv": "every candidate: mean accuracies with 95% intervals, MACs, params, front status",
        "bench_front.png": "mean validation accuracy against MACs, front highlighted, basic network starred",
    }
    lines += [f"- [{n}]({n}): {desc[n]}" for n in BENCH_FILES[1:] if n != "bench_front.png" or entries]
    lines.append(f"\nReport built with Python {platform.python_version()}.\n")
    return "\n".join(lines)


def _front_section(entries: Sequence[FrontEntry], n_seeds: int) -> list[str]:
    front = [e for e in entries if e.on_front]
    off = [e for e in entries if not e.on_front]
    ind = [e for e in off if e.status == "indistinguishable"]
    few = [e for e in off if e.status == "too few seeds"]
    mname, mscale = macs_unit([e.candidate.macs for e in entries]) if entries else ("MMac", 1e6)
    lines = ["## Pareto front (mean validation accuracy up, MACs down)\n"]
    if not entries:
        return [*lines, "No complete candidate.\n"]
    lines.append(
        f"The front of the {len(entries)} candidates' mean validation accuracies over seeds against their "
        f"MACs. Accuracy: mean ± half-width of the 95% t interval over seeds. MACs per image ({mname}; "
        "FLOPs = 2 x MACs).\n"
    )
    rows = [
        [e.candidate.placement, "on" if e.candidate.wld else "off", _acc(e.candidate.val_interval),
         _acc(e.candidate.test_interval), fmt_num(e.candidate.macs, mscale), str(e.candidate.val_interval.n)]
        for e in front
    ]  # fmt: skip
    headers = ["Placement", "WLD", "Val acc (%)", "Test acc (%)", f"MACs ({mname})", "Seeds"]
    lines.append(markdown_table(headers, rows, "llrrrr"))
    lines.append(
        "An off-front candidate is compared with the front member of highest mean accuracy among those with "
        "no more MACs than it (the member that dominates it most): the paired-by-seed 95% interval of "
        "(candidate - that member) validation accuracy. It is *indistinguishable* from the front when that "
        "interval contains 0 (per-candidate intervals, not Holm-corrected: correcting would widen them and "
        "call more candidates indistinguishable).\n"
    )
    lines.append(
        f"**{len(ind)} of {len(off)} off-front candidates are statistically indistinguishable from the "
        f"front**: the table cannot tell {len(ind)} candidate{'s' if len(ind) != 1 else ''} apart from the "
        f"front with {n_seeds} seeds"
        + (f"; {len(few)} more have fewer than two seeds in common with their front member" if few else "")
        + ". Their place off the front may be seed noise; more seeds would be needed to rank them.\n"
    )
    if ind:
        ind = sorted(ind, key=lambda e: (-e.diff.diff.mean if e.diff else 0, e.candidate.macs))
        shown = ind[:LIST_OFF_FRONT]
        rows = [
            [e.candidate.placement, "on" if e.candidate.wld else "off", _acc(e.candidate.val_interval),
             fmt_num(e.candidate.macs, mscale), e.against.label if e.against else "-",
             _pts(e.diff.diff.mean) if e.diff else "-", _ci(e.diff) if e.diff else "-"]
            for e in shown
        ]  # fmt: skip
        headers = ["Placement", "WLD", "Val acc (%)", f"MACs ({mname})", "Against", "Diff (pts)", "95% CI"]
        lines.append(
            f"The {len(shown)} closest (largest mean difference first"
            + (f"; all {len(ind)} are in bench_front.csv" if len(ind) > len(shown) else "")
            + "):\n"
        )
        lines.append(markdown_table(headers, rows, "llrrlrr"))
    lines.append("![Mean validation accuracy against MACs](bench_front.png)\n")
    return lines


# --------------------------------------------------------------------------------------------------
# Build


@dataclass
class BenchReport:
    """What `bench_report` computed (for callers and tests; `build_bench_report` writes it)."""

    candidates: dict[Key, Candidate]
    single: list[Effect]
    wld: list[Effect]
    front: list[FrontEntry] = field(default_factory=list)


def bench_report(frame: pd.DataFrame) -> BenchReport:
    """Every number of the table report, from a table's rows (pure)."""
    cands = table_candidates(frame)
    return BenchReport(cands, single_site_effects(cands), wld_effects(cands), front_entries(cands))


def build_bench_report(table_path: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> Path:
    """Write the table report (`BENCH_FILES`) of one benchmark table into `out_dir`.

    Args:
        table_path: a table written by `run_study.py tabulate` (`table.write_frame`).
        out_dir: the report folder (created if missing); each file is written atomically.

    Returns:
        The path of bench.md.

    Raises:
        IcbenchError: the file is missing or not an icbench table.
    """
    table_path = Path(table_path)
    check_out_dir(out_dir)
    frame, shared = read_table(table_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rep = bench_report(frame)
    signals = signal.table_signal(frame)
    sig = signal.signal_frame(signals)
    _atomic(out / "bench_signal.csv", lambda p: sig.to_csv(p, index=False))
    effects = effects_frame([*rep.single, *rep.wld])
    _atomic(out / "bench_effects.csv", lambda p: effects.to_csv(p, index=False))
    fronts = front_frame(rep.front)
    _atomic(out / "bench_front.csv", lambda p: fronts.to_csv(p, index=False))
    if rep.front:
        title = f"{table_path.stem}: mean validation accuracy over seeds against MACs"
        _atomic(out / "bench_front.png", lambda p: plot_front(rep.front, p, title))
    else:  # no candidate to plot: a figure left by an earlier build would contradict bench.md
        (out / "bench_front.png").unlink(missing_ok=True)
    text = bench_markdown(table_path, frame, shared, rep.candidates, rep.single, rep.wld, rep.front, signals)
    return _write_text(out / "bench.md", text)
