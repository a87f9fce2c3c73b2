"""Paired comparisons over seeds: t intervals, Holm's correction, the smallest detectable difference.

Everything here is a pure function of numbers. Two configurations trained with the same seeds are
compared by the per-seed differences d_s = a_s - b_s (pairing removes the part of the seed noise that
both share, e.g. the data order). The interval is Student's t interval of the mean difference,
mean ± t_{0.975, n-1} · sd / sqrt(n), with the two-sided paired t-test's p-value. Across a table of
comparisons, p-values are adjusted with Holm's step-down method, which keeps the chance of any false
discovery in the table at or below alpha without assuming independence.

Where a difference is not significant, the *smallest detectable difference* is the true mean difference
the test would detect with 80 % power at that many seeds, given the observed spread of the differences:
(t_{1-alpha/2, n-1} + t_{power, n-1}) · sd / sqrt(n) (the usual normal-approximation formula with t
quantiles, so it is honest about small n).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

#: Two-sided significance level of every interval and test (95 % intervals).
ALPHA = 0.05
#: Power at which the smallest detectable difference is stated.
POWER = 0.80
#: What the intervals are, in words, for report captions.
METHOD = "Student's t interval of the mean per-seed paired difference"


def _t_ppf(q: float, df: int) -> float:
    from scipy.stats import t

    return float(t.ppf(q, df))


def _t_sf(x: float, df: int) -> float:
    from scipy.stats import t

    return float(t.sf(x, df))


@dataclass(frozen=True)
class Interval:
    """Mean of n values with its 95 % t interval (low = high = NaN with fewer than two values)."""

    n: int
    mean: float
    sd: float
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def mean_interval(values: Sequence[float], alpha: float = ALPHA) -> Interval:
    """The mean of `values` and its (1 - alpha) Student's t interval (NaN values are ignored)."""
    vals = [float(v) for v in values if not math.isnan(float(v))]
    n = len(vals)
    if n == 0:
        return Interval(0, math.nan, math.nan, math.nan, math.nan)
    mean = sum(vals) / n
    if n < 2:
        return Interval(1, mean, math.nan, math.nan, math.nan)
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1))
    half = _t_ppf(1 - alpha / 2, n - 1) * sd / math.sqrt(n)
    return Interval(n, mean, sd, mean - half, mean + half)


@dataclass(frozen=True)
class Paired:
    """A paired comparison of `label` against `reference` over the seeds both were trained with.

    Attributes:
        diff: mean of the per-seed differences (label - reference) with its 95 % t interval.
        p: two-sided paired t-test p-value (NaN with fewer than two pairs).
        p_adjusted: p after Holm's correction over the table it is part of (equal to p alone).
        detectable: smallest true difference detectable at 80 % power with these seeds and this spread
            (NaN with fewer than two pairs; 0 when every difference is identical).
        seeds: the paired seeds.
    """

    label: str
    reference: str
    diff: Interval
    p: float
    p_adjusted: float
    detectable: float
    seeds: tuple[object, ...]

    @property
    def n(self) -> int:
        return self.diff.n

    def significant(self, alpha: float = ALPHA) -> bool:
        return not math.isnan(self.p_adjusted) and self.p_adjusted < alpha


def paired(
    label: str,
    values: Mapping[object, float],
    reference: str,
    reference_values: Mapping[object, float],
    alpha: float = ALPHA,
    power: float = POWER,
) -> Paired:
    """Compare two configurations on the seeds both have (seed -> metric value; NaN values are skipped)."""
    seeds = tuple(
        s
        for s in sorted(values, key=str)
        if s in reference_values and not math.isnan(values[s]) and not math.isnan(reference_values[s])
    )
    diffs = [float(values[s]) - float(reference_values[s]) for s in seeds]
    diff = mean_interval(diffs, alpha)
    p = detectable = math.nan
    if diff.n >= 2:
        df = diff.n - 1
        se = diff.sd / math.sqrt(diff.n)
        # Identical differences: no spread, so the test is decided by whether they are zero.
        identical = 0.0 if diff.mean != 0 else 1.0
        p = identical if se == 0 else min(1.0, 2 * _t_sf(abs(diff.mean) / se, df))
        detectable = (_t_ppf(1 - alpha / 2, df) + _t_ppf(power, df)) * se
    return Paired(label, reference, diff, p, p, detectable, seeds)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order (NaN entries are left out and stay NaN).

    Sorted ascending, the i-th smallest of m p-values becomes max over j <= i of min(1, (m - j + 1) p_(j)).
    """
    present = [(p, i) for i, p in enumerate(p_values) if not math.isnan(p)]
    m = len(present)
    out = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(present)):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def holm_table(rows: Sequence[Paired]) -> list[Paired]:
    """`rows` with `p_adjusted` set by Holm's correction over the whole table."""
    adjusted = holm([r.p for r in rows])
    return [replace(r, p_adjusted=a) for r, a in zip(rows, adjusted, strict=True)]


def verdict(row: Paired, *, factor: float = 1.0, unit: str = " points", alpha: float = ALPHA) -> str:
    """A plain-language verdict on one comparison (differences shown times `factor`, e.g. 100 for %).

    Three kinds: a difference (better or worse, with its interval), no detectable difference (with the
    smallest difference these seeds could have detected), and too few seeds for any interval.
    """
    n = row.n
    if n < 2:
        have = "no common seed" if n == 0 else "one common seed"
        return f"too few seeds ({have}): no interval; confirm with more seeds"
    d = row.diff

    def pts(x: float) -> str:
        return f"{x * factor:+.2f}{unit}"

    ci = f"95% CI [{d.low * factor:+.2f}, {d.high * factor:+.2f}], n = {n}"
    if row.significant(alpha):
        word = "better" if d.mean > 0 else "worse"
        return f"{word} than {row.reference} by {pts(d.mean)} ({ci})"
    held = " after Holm's correction" if row.p < alpha <= row.p_adjusted else ""
    return (
        f"no detectable difference{held} ({pts(d.mean)}, {ci}); the smallest difference {n} seeds could "
        f"detect here is about {abs(row.detectable) * factor:.2f}{unit}"
    )
