"""Signal diagnostics (`icbench.report.signal`) on hand-made tables with known variance components."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from icbench.report import bench, signal

HERE = Path(__file__).resolve()


def _matrix(n: int, k: int, sd_cand: float, sd_seed: float, sd_noise: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (
        0.9
        + rng.normal(0, sd_cand, (n, 1))
        + rng.normal(0, sd_seed, (1, k))
        + rng.normal(0, sd_noise, (n, k))
    )


def test_no_signal_is_called_no_signal() -> None:
    s = signal.matrix_signal(_matrix(60, 5, 0.0, 0.004, 0.003))
    assert not s.separable
    assert s.icc_low < 0 < s.icc_high
    assert s.ceiling_low < 0 < s.ceiling_high
    assert abs(s.ceiling) < 0.2
    assert s.verdict().startswith("no signal")


def test_strong_signal_is_called_strong() -> None:
    s = signal.matrix_signal(_matrix(60, 5, 0.01, 0.004, 0.002))
    assert s.separable and s.p_value < 1e-10
    expected_icc = 0.01**2 / (0.01**2 + 0.002**2)  # 0.96
    assert s.icc_low <= expected_icc <= s.icc_high
    assert s.ceiling > 0.85 and s.ceiling_low > 0.7
    assert s.verdict().startswith("strong signal")
    assert 0.5 < s.pairs_resolved <= 1


def test_variance_components_are_recovered() -> None:
    s = signal.matrix_signal(_matrix(400, 30, 0.005, 0.004, 0.003, seed=1))
    assert math.sqrt(s.between_var) == pytest.approx(0.005, rel=0.1)
    assert math.sqrt(s.seed_var) == pytest.approx(0.004, rel=0.35)  # 30 seed draws: a coarse estimate
    assert math.sqrt(s.within_var) == pytest.approx(0.003, rel=0.05)
    assert s.resolvable == pytest.approx(1.96 * math.sqrt(2 * s.within_var / 30), rel=0.01)


def test_a_shift_shared_by_every_candidate_of_a_seed_changes_nothing() -> None:
    """Seed s gives every candidate the same data order: a per-seed shift cancels in paired comparisons
    and rankings, so it must not count as noise (nor as signal)."""
    base = _matrix(30, 5, 0.002, 0.0, 0.002)
    shifted = base + np.array([[0.05, -0.03, 0.02, 0.0, -0.04]])
    a, b = signal.matrix_signal(base), signal.matrix_signal(shifted)
    for field in ("f_stat", "p_value", "icc", "ceiling", "within_var", "between_var", "resolvable"):
        assert getattr(a, field) == pytest.approx(getattr(b, field), rel=1e-9, abs=1e-12), field
    assert b.seed_var > a.seed_var


def test_exact_matrix_without_noise() -> None:
    m = np.array([[0.9, 0.9], [0.8, 0.8], [0.7, 0.7]])
    s = signal.matrix_signal(m)
    assert s.separable and s.icc == 1.0 and s.ceiling == pytest.approx(1.0)
    flat = signal.matrix_signal(np.full((3, 2), 0.9))
    assert not flat.separable and math.isnan(flat.ceiling)


def test_split_seed_ceiling_by_hand() -> None:
    # seed 0 ranks a>b>c, seeds 1 and 2 rank a>b>c too: ceiling 1; reversing seed 0 gives (-1 + 1 + 1)/3
    m = np.array([[3.0, 3.0, 3.0], [2.0, 2.0, 2.0], [1.0, 1.0, 1.0]])
    assert signal.split_seed_ceiling(m) == pytest.approx(1.0)
    m[:, 0] = [1.0, 2.0, 3.0]
    # seed 0 vs mean(1,2) = (3,2,1): -1; seed 1 vs mean(0,2) = (2, 2, 2): constant, skipped
    assert signal.split_seed_ceiling(m) == pytest.approx(-1.0)


def _frame(effects: dict[str, list[float]], seeds: int, noise: float, rng_seed: int = 0) -> pd.DataFrame:
    """A table frame: unit -> per-placement effects (fraction), WLD off and on, plus the basic network."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for s in range(seeds):
        rows.append({"placement": "conv:000", "unit": "conv", "wld": False, "seed": s, "status": "complete",
                     "val_acc": 0.9, "param_seed": s})  # fmt: skip
        for unit, eff in effects.items():
            for i, e in enumerate(eff):
                bits = format(i + 1, "03b")
                for wld in (False, True):
                    rows.append({
                        "placement": f"{unit}:{bits}", "unit": unit, "wld": wld, "seed": s,
                        "status": "complete", "val_acc": 0.9 + e + rng.normal(0, noise), "param_seed": s,
                        "param_sites_0": bits[0] == "1", "param_sites_1": bits[1] == "1",
                    })  # fmt: skip
    return pd.DataFrame(rows)


def test_table_signal_strata_and_pooled() -> None:
    frame = _frame({"ic": [0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06], "se": [0.0] * 7}, seeds=5, noise=0.002)
    sig = {s.label: s for s in signal.table_signal(frame)}
    assert set(sig) == {"unit ic, wld off", "unit ic, wld on", "unit se, wld off", "unit se, wld on",
                        "pooled all strata"}  # fmt: skip
    assert sig["unit ic, wld off"].separable and sig["unit ic, wld off"].ceiling > 0.9
    assert not sig["unit se, wld on"].separable
    assert all(s.n_candidates == 7 and s.n_seeds == 5 for k, s in sig.items() if "pooled" not in k)
    assert sig["pooled all strata"].n_candidates == 28


def test_candidate_missing_a_seed_is_dropped_and_counted() -> None:
    frame = _frame({"ic": [0.0, 0.01, 0.02, 0.03]}, seeds=4, noise=0.002)
    frame.loc[(frame["placement"] == "ic:010") & (frame["seed"] == 2), "status"] = "diverged"
    off = next(s for s in signal.table_signal(frame) if s.stratum == {"unit": "ic", "wld": False})
    assert off.n_candidates == 3 and off.dropped == 1 and off.seeds == (0, 1, 2, 3)


def test_other_varied_parameter_is_a_stratum_factor() -> None:
    a = _frame({"ic": [0.0, 0.01, 0.02]}, seeds=3, noise=0.001).assign(param_width=0.5)
    b = _frame({"ic": [0.0, 0.01, 0.02]}, seeds=3, noise=0.001).assign(param_width=1.0)
    labels = {s.label for s in signal.table_signal(pd.concat([a, b]))}
    assert "unit ic, wld off, width 0.5" in labels and "unit ic, wld on, width 1.0" in labels


def test_bench_report_writes_the_signal_section(tmp_path: Path) -> None:
    from tests.report.test_bench_report import make_table

    table = make_table(tmp_path / "hand.parquet")
    md = bench.build_bench_report(table, tmp_path / "out").read_text()
    assert "## Signal: can the seeds tell the candidates apart?" in md
    assert "- Signal: the seeds tell the placements apart in" in md
    csv = pd.read_csv(tmp_path / "out" / "bench_signal.csv")
    assert {"stratum_unit", "stratum_wld", "icc", "ceiling", "verdict"} <= set(csv.columns)
    # the hand table designs 7 ic placements with effects 0..3 points at 0.1-point noise: told apart
    ic_off = csv[(csv["stratum_unit"] == "ic") & (~csv["stratum_wld"].astype(bool))].iloc[0]
    assert ic_off["p_value"] < 0.01 and ic_off["ceiling"] > 0.5


def test_ceiling_keeps_ties_of_quantised_accuracies() -> None:
    """Accuracies are multiples of 1/N: equal means must stay tied (scipy's Spearman per seed is the
    reference)."""
    from scipy.stats import spearmanr

    rng = np.random.default_rng(3)
    m = rng.integers(700, 750, (63, 3)) / 750
    ref = np.mean([spearmanr(m[:, s], np.delete(m, s, 1).mean(1)).statistic for s in range(3)])
    assert signal.split_seed_ceiling(m) == pytest.approx(ref, abs=1e-12)
