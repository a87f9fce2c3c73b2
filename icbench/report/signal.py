"""Signal diagnostics of a benchmark table: can its seeds tell its candidates apart?

A table is a ground truth only where the candidates differ by more than one seed's noise. Per *stratum*
(the rows that share everything but the placement: unit x WLD, and any other parameter the table varies),
the candidates are the placements and the seeds their replicates. Seed s gives every candidate the same
data order, so the seed is *crossed* with the candidates and the rows form a two-way layout without
replication. From it, all pure functions of the numbers:

- the variance components of validation accuracy: between candidates (σ²_b, the signal), the seed's
  shift shared by every candidate (cancels in paired comparisons and rankings), and the residual
  (σ²_w, the noise that reorders candidates), from the two-way ANOVA mean squares;
- the consistency intraclass correlation ICC(C,1) = σ²_b / (σ²_b + σ²_w): the share of one row's
  variance (net of the shared seed shift) that is the candidate's, with its exact F-based 95 % interval
  and the F test of "no candidate differs" (McGraw & Wong 1996);
- the **noise ceiling**: for each seed, the Spearman correlation over candidates of that seed's accuracies
  with the mean of the other seeds, averaged over seeds (split-seed reliability). An estimator or a search
  scored by one seed cannot rank the candidates better than the seeds agree with each other. Its 95 %
  interval is a percentile bootstrap over candidates;
- the *resolvable difference*: the smallest difference between two candidates' k-seed means that a
  two-sided paired t test at the pooled residual spread calls significant, t_{0.975, df_w}·sqrt(2σ²_w/k),
  and the share of candidate pairs whose observed means differ by more than that.

The verdict follows the F test (p < 0.05: the candidates can be told apart) and the noise ceiling.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

#: Two-sided level of every interval and test here.
ALPHA = 0.05
#: Bootstrap resamples of the noise ceiling's interval (fixed generator: the report is reproducible).
BOOTSTRAP = 1000
#: A noise ceiling at or above this ranks candidates well enough to search or score estimators within
#: the stratum; under WEAK_CEILING a within-stratum ranking is mostly seed noise.
STRONG_CEILING = 0.5
WEAK_CEILING = 0.3
#: Table columns that are never a stratum factor (the placement is the candidate, the seed the replicate).
_NOT_FACTORS = {"param_seed"}


@dataclass(frozen=True)
class StratumSignal:
    """The signal diagnostics of one stratum (accuracies as fractions, variances in fraction²).

    Attributes:
        stratum: the fixed factors, e.g. `{"unit": "ic", "wld": False}`.
        n_candidates, n_seeds: the balanced layout used (candidates with every one of `seeds`).
        dropped: candidates left out because they lack one of those seeds.
        mean: grand mean accuracy.
        between_var, seed_var, within_var: the candidate component σ²_b, the seed component shared by
            every candidate (cancels in paired comparisons and rankings), both clipped at 0, and the
            residual σ²_w (the noise that reorders candidates).
        spread_means: standard deviation of the candidates' seed means (what a reader sees as "spread").
        icc, icc_low, icc_high: ICC(1) and its 95 % interval.
        f_stat, p_value: the F test (candidates against the residual) of "every candidate has the same
            mean".
        ceiling, ceiling_low, ceiling_high: split-seed Spearman (one seed against the mean of the others)
            and its bootstrap interval; NaN with fewer than 3 candidates or 2 seeds.
        resolvable: smallest difference of k-seed means a paired t test resolves (fraction).
        pairs_resolved: share of candidate pairs whose means differ by more than `resolvable`.
    """

    stratum: dict[str, Any]
    n_candidates: int
    n_seeds: int
    seeds: tuple[int, ...]
    dropped: int
    mean: float
    between_var: float
    seed_var: float
    within_var: float
    spread_means: float
    icc: float
    icc_low: float
    icc_high: float
    f_stat: float
    p_value: float
    ceiling: float
    ceiling_low: float
    ceiling_high: float
    resolvable: float
    pairs_resolved: float

    @property
    def label(self) -> str:
        return ", ".join(f"{k} {_fmt_factor(k, v)}" for k, v in self.stratum.items()) or "all"

    @property
    def separable(self) -> bool:
        """Whether the F test says the candidates differ (p < ALPHA)."""
        return not math.isnan(self.p_value) and self.p_value < ALPHA

    def verdict(self) -> str:
        """Plain words: can the candidates be told apart, and which differences can the seeds resolve?"""
        if self.n_candidates < 2 or self.n_seeds < 2:
            return "too few candidates or seeds to say"
        pts = 100 * self.resolvable
        if not self.separable:
            return (
                f"no signal: the candidates cannot be told apart with {self.n_seeds} seeds (F test p = "
                f"{self.p_value:.2g}); a ranking within this stratum is seed noise"
            )
        strength = (
            "strong" if self.ceiling >= STRONG_CEILING else "weak" if self.ceiling < WEAK_CEILING else "moderate"
        )
        return (
            f"{strength} signal: the candidates differ (p = {self.p_value:.2g}); one seed ranks them like the "
            f"others at ρ = {self.ceiling:.2f}; {self.n_seeds}-seed means resolve differences above "
            f"{pts:.2f} points ({100 * self.pairs_resolved:.0f} % of candidate pairs)"
        )

    def record(self) -> dict[str, Any]:
        """A flat dict for a CSV row (the stratum's factors as columns)."""
        out = {f"stratum_{k}": v for k, v in self.stratum.items()}
        out.update({k: v for k, v in asdict(self).items() if k != "stratum"})
        out["seeds"] = " ".join(map(str, self.seeds))
        out["verdict"] = self.verdict()
        return out


def _fmt_factor(key: str, value: Any) -> str:
    if key == "wld":
        return "on" if bool(value) else "off"
    return str(value)


# --------------------------------------------------------------------------------------------------
# Pure statistics on a candidates x seeds matrix


def _row_spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row of `a` with the same row of `b` (ties get average ranks; NaN
    where a row is constant)."""
    from scipy.stats import rankdata

    ra, rb = rankdata(a, axis=-1), rankdata(b, axis=-1)
    ra -= ra.mean(axis=-1, keepdims=True)
    rb -= rb.mean(axis=-1, keepdims=True)
    den = np.sqrt((ra**2).sum(axis=-1) * (rb**2).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (ra * rb).sum(axis=-1) / np.where(den > 0, den, 1.0), np.nan)


def _ceilings(stack: np.ndarray) -> np.ndarray:
    """`split_seed_ceiling` of each matrix of a (reps, candidates, seeds) stack."""
    # the others' mean is taken afresh for each seed (not total - own): accuracies are multiples of 1/N and
    # tie often, and a subtraction's rounding would break those ties at random
    k = stack.shape[-1]
    rhos = np.stack(
        [_row_spearman(stack[..., s], np.delete(stack, s, axis=-1).mean(axis=-1)) for s in range(k)], -1
    )
    with warnings.catch_warnings():  # a stack whose every seed is constant has no ceiling: NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(rhos, axis=-1)


def split_seed_ceiling(matrix: np.ndarray) -> float:
    """Mean over seeds (columns) of Spearman(that seed, mean of the other seeds) over candidates (rows);
    a seed whose values (or the others' mean) are constant is skipped."""
    n, k = matrix.shape
    if n < 3 or k < 2:
        return math.nan
    return float(_ceilings(matrix[None])[0])


def ceiling_interval(matrix: np.ndarray, reps: int = BOOTSTRAP, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap (over candidates) 95 % interval of `split_seed_ceiling`."""
    n, k = matrix.shape
    if n < 3 or k < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    draws = _ceilings(matrix[rng.integers(0, n, (reps, n))])
    draws = draws[~np.isnan(draws)]
    if not len(draws):
        return math.nan, math.nan
    return float(np.quantile(draws, ALPHA / 2)), float(np.quantile(draws, 1 - ALPHA / 2))


def two_way(matrix: np.ndarray) -> dict[str, float]:
    """Two-way ANOVA (candidate x seed, one row per cell) of a balanced candidates x seeds matrix.

    A seed is crossed with the candidates: seed s gives every candidate the same data order, so part of
    the seed noise is shared and cancels in any paired comparison or ranking. That part is the seed
    component; the noise that does reorder candidates is the residual. Returns the mean squares, F of the
    candidates against the residual with its p-value, the variance components (candidate, seed, residual)
    and the consistency ICC(C,1) = (MSC - MSE) / (MSC + (k-1) MSE) with its exact 95 % interval (McGraw &
    Wong 1996: F_L = F / F_{1-α/2}(n-1, (n-1)(k-1)), F_U = F · F_{1-α/2}((n-1)(k-1), n-1), bound
    (F_b - 1) / (F_b + k - 1)).
    """
    from scipy.stats import f as f_dist

    n, k = matrix.shape
    nan = math.nan
    keys = ("msc", "mss", "mse", "f", "p", "between", "seed", "within", "icc", "icc_low", "icc_high")
    out = dict.fromkeys(keys, nan)
    if n < 2 or k < 2:
        return out
    grand = float(matrix.mean())
    cand, seed = matrix.mean(axis=1), matrix.mean(axis=0)
    resid = matrix - cand[:, None] - seed[None, :] + grand
    df1, df2 = n - 1, (n - 1) * (k - 1)
    msc = k * float(np.sum((cand - grand) ** 2)) / df1
    mss = n * float(np.sum((seed - grand) ** 2)) / (k - 1)
    mse = float(np.sum(resid**2)) / df2
    out.update(msc=msc, mss=mss, mse=mse, within=mse)
    out.update(between=max(0.0, (msc - mse) / k), seed=max(0.0, (mss - mse) / n))
    if mse <= 1e-15:
        # no residual noise: any spread of the means is signal, none is no signal
        sig = msc > 1e-15
        out.update(f=math.inf if sig else nan, p=0.0 if sig else 1.0)
        out.update(icc=1.0 if sig else nan, icc_low=1.0 if sig else nan, icc_high=1.0 if sig else nan)
        return out
    f = msc / mse
    out.update(f=f, p=float(f_dist.sf(f, df1, df2)), icc=(msc - mse) / (msc + (k - 1) * mse))
    fl = f / float(f_dist.ppf(1 - ALPHA / 2, df1, df2))
    fu = f * float(f_dist.ppf(1 - ALPHA / 2, df2, df1))
    out.update(icc_low=(fl - 1) / (fl + k - 1), icc_high=(fu - 1) / (fu + k - 1))
    return out


def resolvable_difference(within_var: float, n_candidates: int, k: int) -> float:
    """Smallest difference of two k-seed means that a two-sided paired t test at the pooled residual
    variance σ²_w resolves."""
    from scipy.stats import t

    df = (n_candidates - 1) * (k - 1)
    if df < 1 or math.isnan(within_var):
        return math.nan
    return float(t.ppf(1 - ALPHA / 2, df)) * math.sqrt(2 * within_var / k)


def matrix_signal(matrix: np.ndarray, stratum: Mapping[str, Any] | None = None, *,
                  seeds: Sequence[int] = (), dropped: int = 0) -> StratumSignal:  # fmt: skip
    """Every diagnostic of one candidates x seeds matrix of accuracies (rows: candidates)."""
    matrix = np.asarray(matrix, dtype=float)
    n, k = matrix.shape
    a = two_way(matrix)
    means = matrix.mean(axis=1) if n else np.array([])
    res = resolvable_difference(a["within"], n, k)
    if n >= 2 and not math.isnan(res):
        diffs = np.abs(means[:, None] - means[None, :])[np.triu_indices(n, 1)]
        pairs = float(np.mean(diffs > res))
    else:
        pairs = math.nan
    low, high = ceiling_interval(matrix)
    return StratumSignal(
        stratum=dict(stratum or {}),
        n_candidates=n,
        n_seeds=k,
        seeds=tuple(int(s) for s in seeds) or tuple(range(k)),
        dropped=dropped,
        mean=float(matrix.mean()) if matrix.size else math.nan,
        between_var=a["between"],
        seed_var=a["seed"],
        within_var=a["within"],
        spread_means=float(np.std(means, ddof=1)) if n >= 2 else math.nan,
        icc=a["icc"],
        icc_low=a["icc_low"],
        icc_high=a["icc_high"],
        f_stat=a["f"],
        p_value=a["p"],
        ceiling=split_seed_ceiling(matrix),
        ceiling_low=low,
        ceiling_high=high,
        resolvable=res,
        pairs_resolved=pairs,
    )


# --------------------------------------------------------------------------------------------------
# From a table


def _bits(placement: str) -> str:
    return placement.split(":", 1)[1] if ":" in placement else ""


def stratum_factors(frame: pd.DataFrame) -> list[str]:
    """The columns that define a stratum: unit, WLD and any other search parameter the table varies
    (not the seed, not the mask's per-site booleans, which make up the placement)."""
    factors = ["unit", "wld"]
    for col in frame.columns:
        if not col.startswith("param_") or col in _NOT_FACTORS or col in ("param_unit", "param_wld"):
            continue
        values = frame[col].dropna()
        if values.map(lambda v: isinstance(v, bool | np.bool_)).all() and col[-1].isdigit():
            continue  # one site of a mask
        if values.astype(str).nunique() > 1:
            factors.append(col)
    return factors


def _matrix(group: pd.DataFrame) -> tuple[np.ndarray, tuple[int, ...], int]:
    """The balanced candidates x seeds matrix of one stratum: the seeds most candidates have, and the
    candidates that have all of them (a candidate's duplicate rows for one seed are averaged)."""
    pivot = group.pivot_table(index="placement", columns="seed", values="val_acc", aggfunc="mean")
    counts = pivot.notna().sum(axis=0)
    if pivot.empty:
        return np.zeros((0, 0)), (), 0
    seeds = [s for s in pivot.columns if counts[s] >= 0.5 * len(pivot)] or list(pivot.columns)
    full = pivot[seeds].dropna(axis=0, how="any")
    return full.to_numpy(dtype=float), tuple(int(s) for s in seeds), len(pivot) - len(full)


def table_signal(frame: pd.DataFrame) -> list[StratumSignal]:
    """The diagnostics of every stratum with at least two candidates, then of all unit candidates pooled
    (stratum `{"pooled": "all units x WLD"}`: what a ranking across strata can rely on).

    Only `complete` rows with a validation accuracy count; the basic network (no unit anywhere) is its own
    single candidate and belongs to no placement stratum.
    """
    ok = frame[(frame["status"] == "complete") & frame["val_acc"].notna()].copy()
    ok["unit"] = ok["unit"].astype(str)
    ok = ok[ok["placement"].map(lambda p: "1" in _bits(str(p)))]
    if ok.empty:
        return []
    factors = stratum_factors(ok)
    out: list[StratumSignal] = []
    for key, group in ok.groupby([ok[f].astype(str) if f.startswith("param_") else ok[f] for f in factors],
                                 sort=True):  # fmt: skip
        key = key if isinstance(key, tuple) else (key,)
        matrix, seeds, dropped = _matrix(group)
        if matrix.shape[0] >= 2:
            stratum = {f.removeprefix("param_"): v for f, v in zip(factors, key, strict=True)}
            stratum["wld"] = bool(stratum["wld"])
            out.append(matrix_signal(matrix, stratum, seeds=seeds, dropped=dropped))
    if len(out) > 1:
        ok["placement"] = ok["placement"].astype(str) + "|" + ok[factors].astype(str).agg("|".join, axis=1)
        matrix, seeds, dropped = _matrix(ok)
        out.append(matrix_signal(matrix, {"pooled": "all strata"}, seeds=seeds, dropped=dropped))
    return out


def signal_frame(signals: Sequence[StratumSignal]) -> pd.DataFrame:
    """One CSV row per stratum."""
    import pandas as pd

    return pd.DataFrame([s.record() for s in signals])


def signal_markdown(signals: Sequence[StratumSignal]) -> str:
    """The signal section of a table report: a table per stratum and a verdict per stratum."""
    from icbench.report.tables import markdown_table

    if not signals:
        return "No stratum has two candidates with complete rows: nothing to diagnose.\n"

    def iv(lo: float, hi: float) -> str:
        return "-" if math.isnan(lo) else f"[{lo:.2f}, {hi:.2f}]"

    def pts(var: float) -> str:
        return "-" if math.isnan(var) else f"{100 * math.sqrt(var):.2f}"

    rows = [
        [s.label, str(s.n_candidates), str(s.n_seeds), f"{100 * s.mean:.2f}", pts(s.between_var),
         pts(s.seed_var), pts(s.within_var), f"{s.icc:.2f} {iv(s.icc_low, s.icc_high)}", f"{s.p_value:.2g}",
         f"{s.ceiling:.2f} {iv(s.ceiling_low, s.ceiling_high)}",
         "-" if math.isnan(s.resolvable) else f"{100 * s.resolvable:.2f}"]
        for s in signals
    ]  # fmt: skip
    headers = ["Stratum", "Cands", "Seeds", "Mean (%)", "σ_b (pts)", "σ_seed (pts)", "σ_w (pts)", "ICC [95%]",
               "F p",
               "Noise ceiling ρ [95%]", "Resolvable (pts)"]  # fmt: skip
    text = (
        "Per stratum (rows that share everything but the placement), the candidates' validation accuracies "
        "split into the spread between candidates (σ_b, the signal), the shift a seed gives every candidate "
        "alike (σ_seed: it cancels in paired comparisons and rankings) and the residual seed noise that "
        "reorders candidates (σ_w); ICC = σ²_b / (σ²_b + σ²_w) with its exact 95% interval and the F test of "
        "no difference; the **noise ceiling**: each seed's Spearman correlation over candidates with the "
        "mean of the other seeds, averaged (bootstrap 95% interval over candidates). No estimator or search "
        "scored by one seed can rank the candidates better than that. *Resolvable*: the smallest "
        "difference of two candidates' seed means a paired t test at σ_w calls significant. Candidates missing a "
        "seed are left out of their stratum.\n\n"
    )
    text += markdown_table(headers, rows, "lrrrrrrrrrr") + "\n"
    text += "\n".join(f"- **{s.label}**: {s.verdict()}." for s in signals) + "\n"
    return text
