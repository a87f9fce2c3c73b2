"""Unit liveness as plain numbers (no torch): the inert floor and the median over sites.

δ of a unit site is ‖unit(x) − conv(x)‖ / ‖conv(x)‖ on a fixed batch of validation images (conv: the same
weight and bias without the unit's own parameters), measured by `icbench.units.unit_deltas`. Every unit
starts at δ = 0; one whose δ stays near 0 after training is a plain convolution in all but name, and a
comparison with it says nothing about the unit (DESIGN.md §3).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping

__all__ = ["INERT_DELTA", "LIVENESS_BATCH", "is_inert", "median_delta"]

#: Median δ below which a trained network's units count as inert (reports say so in words). On the
#: quickstart network after 4 epochs (benchmarks/results/units_learn_sweep.txt) units stuck at the
#: identity reach a median δ of 0.000 (`ic_dual`) to 0.005 (`ic`, `se`), units that learn 0.04 and more:
#: 0.02 lies between the two, and a unit that changes its sites' outputs by under 2 % is too close to a
#: plain convolution for a comparison to test the unit.
INERT_DELTA = 0.02
#: Validation images δ is measured on (the first ones of the split, the same for every trial).
LIVENESS_BATCH = 256


def median_delta(deltas: Mapping[str, float]) -> float | None:
    """The median δ over sites (None without unit sites; NaN if any δ is NaN)."""
    values = [float(v) for v in deltas.values()]
    if not values:
        return None
    if any(math.isnan(v) for v in values):
        return math.nan
    return float(statistics.median(values))


def is_inert(delta: float | None) -> bool:
    """Whether a network's median δ says its units stayed (nearly) the plain convolution."""
    return delta is not None and not math.isnan(float(delta)) and float(delta) < INERT_DELTA
