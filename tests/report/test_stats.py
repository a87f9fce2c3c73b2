"""Paired intervals, verdicts and Holm's correction against values computed by hand."""

from __future__ import annotations

import math

import pytest

from icbench.report import stats

# t quantiles (4 degrees of freedom) from tables: t_0.975 = 2.776445, t_0.80 = 0.940965.
T975_4, T80_4 = 2.776445, 0.940965


def test_clear_difference_hand_computed() -> None:
    # Differences in points: 2, 3, 2.5, 2, 3 -> mean 2.5, sd 0.5, se 0.5 / sqrt(5) = 0.223607.
    a = {s: 90 + d for s, d in enumerate([2.0, 3.0, 2.5, 2.0, 3.0])}
    b = {s: 90.0 for s in range(5)}
    r = stats.paired("ic", a, "basic", b)
    se = 0.5 / math.sqrt(5)
    assert r.n == 5 and r.diff.mean == pytest.approx(2.5) and r.diff.sd == pytest.approx(0.5)
    assert (r.diff.low, r.diff.high) == pytest.approx((2.5 - T975_4 * se, 2.5 + T975_4 * se), abs=1e-5)
    assert r.p == pytest.approx(0.000370, abs=2e-5)  # t = 11.18 on 4 df
    assert stats.verdict(r) == "better than basic by +2.50 points (95% CI [+1.88, +3.12], n = 5)"


def test_no_difference_states_the_smallest_detectable_difference() -> None:
    a = {s: 90 + d for s, d in enumerate([1.0, -1.0, 0.5, -0.5, 0.0])}
    b = {s: 90.0 for s in range(5)}
    r = stats.paired("ic_dual", a, "basic", b)
    se = math.sqrt(0.625) / math.sqrt(5)
    assert r.diff.mean == pytest.approx(0.0, abs=1e-12) and r.p == pytest.approx(1.0)
    assert r.detectable == pytest.approx((T975_4 + T80_4) * se, abs=1e-5)  # 1.3143
    text = stats.verdict(r)
    assert text.startswith("no detectable difference (+0.00 points, 95% CI [-0.98, +0.98], n = 5)")
    assert "smallest difference 5 seeds could detect here is about 1.31 points" in text


def test_too_few_seeds() -> None:
    # Only seed 0 is common to both: no interval, no verdict either way.
    r = stats.paired("ic", {0: 95.0, 1: 96.0}, "basic", {0: 90.0, 2: 91.0})
    assert r.n == 1 and r.seeds == (0,) and math.isnan(r.diff.low) and math.isnan(r.p)
    assert stats.verdict(r) == "too few seeds (one common seed): no interval; confirm with more seeds"
    # Two seeds with a large spread: an interval, but far too wide to call a 3-point difference.
    r2 = stats.paired("ic", {0: 95.0, 1: 91.0}, "basic", {0: 90.0, 1: 90.0})
    assert r2.diff.mean == pytest.approx(3.0) and r2.p > 0.05
    assert "smallest difference 2 seeds could detect" in stats.verdict(r2)


def test_factor_scales_fractions_to_points() -> None:
    a = {s: 0.90 + d / 100 for s, d in enumerate([2.0, 3.0, 2.5, 2.0, 3.0])}
    r = stats.paired("ic", a, "basic", {s: 0.90 for s in range(5)})
    assert stats.verdict(r, factor=100) == "better than basic by +2.50 points (95% CI [+1.88, +3.12], n = 5)"


def test_holm_on_a_constructed_table() -> None:
    # Sorted: 0.005 x4 = 0.02, 0.01 x3 = 0.03, 0.03 x2 = 0.06, 0.04 x1 = 0.04 -> max(0.06, 0.04) = 0.06.
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, math.nan, 0.9])[1] != stats.holm([0.5, math.nan, 0.9])[1]  # NaN stays NaN
    assert stats.holm([0.5, math.nan, 0.9])[0::2] == pytest.approx([1.0, 1.0])


def test_holm_turns_an_uncorrected_discovery_into_no_detectable_difference() -> None:
    base = {s: 90.0 for s in range(5)}
    clear = stats.paired("clear", {s: 90 + d for s, d in enumerate([2.0, 3.0, 2.5, 2.0, 3.0])}, "b", base)
    weak = stats.paired("weak", {s: 90 + d for s, d in enumerate([0.5, 1.5, 0.2, 1.0, 0.9])}, "b", base)
    null = [
        stats.paired(f"n{i}", {s: 90 + d for s, d in enumerate([1.0, -1.0, 0.5, -0.5, 0.0])}, "b", base)
        for i in range(3)
    ]
    assert weak.p < 0.05  # alone it would be called
    rows = stats.holm_table([clear, weak, *null])
    assert rows[0].significant() and rows[0].p_adjusted == pytest.approx(5 * clear.p)
    assert not rows[1].significant() and rows[1].p_adjusted == pytest.approx(4 * weak.p)
    assert stats.verdict(rows[1]).startswith("no detectable difference after Holm's correction")


def test_mean_interval() -> None:
    iv = stats.mean_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    se = math.sqrt(2.5) / math.sqrt(5)
    assert (iv.mean, iv.low, iv.high) == pytest.approx((3.0, 3 - T975_4 * se, 3 + T975_4 * se), abs=1e-5)
    one = stats.mean_interval([0.9])
    assert one.n == 1 and one.mean == 0.9 and math.isnan(one.half_width)
