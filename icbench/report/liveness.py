"""Unit liveness in reports: did the trained units leave the identity they start at?

Every unit is the plain convolution at initialisation. A trial records δ, the median over its unit sites
of ‖unit(x) − conv(x)‖ / ‖conv(x)‖ after training (`icbench.units.unit_deltas`); a trial whose δ is under
`INERT_DELTA` trained a plain convolution in all but name, and a comparison built on it compares the
plain convolution with itself. This module states that in words, next to the accuracies.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from icbench.liveness import INERT_DELTA, LIVENESS_BATCH

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["fmt_delta", "inert_numbers", "liveness_markdown"]


def fmt_delta(value: object) -> str:
    """δ with three decimals, "-" when missing (the basic network, or a trial that did not record it)."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "-"
    return "-" if math.isnan(v) else f"{v:.3f}"


def _unit_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """COMPLETE trials that hold at least one non-conv unit."""
    done = trials[trials["state"] == "COMPLETE"]
    units = done["unit"].astype(str) != "conv"
    if "n_unit_sites" in done:
        units &= done["n_unit_sites"].astype(float) != 0  # NaN (not recorded) keeps the trial
    return done[units]


def inert_numbers(trials: pd.DataFrame) -> list[int]:
    """Numbers of the COMPLETE trials with units whose recorded δ is under the inert floor."""
    t = _unit_trials(trials)
    if "unit_delta" not in t:
        return []
    d = t["unit_delta"].astype(float)
    return [int(n) for n in t.loc[d.notna() & (d < INERT_DELTA), "number"]]


def liveness_markdown(trials: pd.DataFrame, heading: str = "## Unit liveness") -> str:
    """A report section: per unit, how far the trained units moved (δ), and every inert trial named."""
    t = _unit_trials(trials)
    intro = (
        f"{heading}\n\n"
        f"δ: how much a trained unit changes its site's output, ‖unit(x) − conv(x)‖ / ‖conv(x)‖ on the first "
        f"{LIVENESS_BATCH} validation images, median over the trial's unit sites (0 at initialisation, where "
        f"every unit is the plain convolution). Under {INERT_DELTA:g} the units count as inert: the trial "
        "trained a plain convolution in all but name.\n"
    )
    if t.empty:
        return intro + "\nNo COMPLETE trial holds a unit other than the plain convolution.\n"
    if "unit_delta" not in t or t["unit_delta"].isna().all():
        return intro + (
            f"\nNone of the {len(t)} COMPLETE trials with units recorded δ (they were made before liveness was "
            "measured): whether their units left the identity is unknown, and every comparison of units "
            "here should be read as possibly comparing the plain convolution with itself.\n"
        )
    lines = [
        intro,
        "| Unit | Trials with δ | Median δ | Min δ | Max δ | Inert |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for unit, group in t.groupby(t["unit"].astype(str), sort=True):
        d = group["unit_delta"].dropna().astype(float)
        if d.empty:
            lines.append(f"| {unit} | 0 | - | - | - | - |")
            continue
        inert = int((d < INERT_DELTA).sum())
        lines.append(
            f"| {unit} | {len(d)} | {d.median():.3f} | {d.min():.3f} | {d.max():.3f} | {inert}/{len(d)} |"
        )
    inert = inert_numbers(trials)
    missing = int(t["unit_delta"].isna().sum())
    lines.append("")
    if inert:
        shown = ", ".join(f"#{n}" for n in inert[:20]) + (
            f" and {len(inert) - 20} more" if len(inert) > 20 else ""
        )
        lines.append(
            f"**{len(inert)} of {len(t)} trials with units stayed inert** (δ < {INERT_DELTA:g}): {shown}. "
            "Their accuracy is that of a plain convolution trained slightly differently; it says nothing "
            "about the unit."
        )
    else:
        lines.append(
            f"Every trial with units that recorded δ moved its units beyond the inert floor ({INERT_DELTA:g})."
        )
    if missing:
        lines.append(f" {missing} trial(s) with units did not record δ (made before liveness was measured).")
    return "\n".join(lines) + "\n"
