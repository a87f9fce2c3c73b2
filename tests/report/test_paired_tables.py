"""Paired comparisons in ablation.md, placements.md, compare.md and the confirmation report, on
constructed studies whose intervals and verdicts are known by hand (see test_stats.py for the numbers)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState
from report_fixtures import BASIC_MACS, add_trial, metrics, study_attrs

from icbench.report import build_report, compare_studies
from icbench.report.confirm import LINK_ATTR, build_confirm_report

#: Test accuracy offsets (points) from the basic network per seed: a clear gain and no difference.
BASIC = [0.900, 0.910, 0.905, 0.895, 0.915]
GAIN = [0.02, 0.03, 0.025, 0.02, 0.03]  # mean +2.50, 95% CI [+1.88, +3.12]
NULL = [0.01, -0.01, 0.005, -0.005, 0.0]  # mean 0, CI [-0.98, +0.98], detectable about 1.31


def _grid(url: str, name: str = "paired") -> None:
    """unit {conv, ic, ic_dual} x seed 0..4, a grid study; test = val - 0.01."""
    study = optuna.create_study(study_name=name, storage=url, directions=["maximize", "minimize"])
    study_attrs(study, "GridSampler", 15)
    dists = {
        "unit": CategoricalDistribution(("conv", "ic", "ic_dual")),
        "seed": CategoricalDistribution(tuple(range(5))),
    }
    i = 0
    for unit, offsets in (("conv", [0.0] * 5), ("ic", GAIN), ("ic_dual", NULL)):
        for seed in range(5):
            val = BASIC[seed] + offsets[seed] + 0.01
            attrs = metrics(
                val, BASIC_MACS, unit=unit, strategy="all", placement=f"{unit}:111111", seed=seed, wld=False,
                test=val - 0.01,
            )  # fmt: skip
            trial = optuna.trial.create_trial(
                state=TrialState.COMPLETE, values=[val, BASIC_MACS], params={"unit": unit, "seed": seed},
                distributions=dists, user_attrs=attrs,
            )  # fmt: skip
            study.add_trial(trial)
            i += 1


def test_ablation_pairs_each_cell_with_the_basic_cell(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    _grid(url)
    build_report(url, "paired", tmp_path / "r")
    ab = (tmp_path / "r" / "ablation.md").read_text()
    assert "Metric: test accuracy." in ab and "Holm-corrected over the 2 comparisons" in ab
    assert "not a bootstrap" in ab
    assert (
        "| unit=ic | unit=conv | 5 | +2.50 | [+1.88, +3.12] | <0.001 | better than unit=conv by +2.50 points"
        in ab
    )
    assert "| unit=ic_dual | unit=conv | 5 | +0.00 | [-0.98, +0.98] | 1.000 | no detectable difference" in ab
    assert "smallest difference 5 seeds could detect here is about 1.31 points" in ab
    # placements.md pairs the repeated configurations the same way.
    pl = (tmp_path / "r" / "placements.md").read_text()
    assert "`ic:111111` (resnet8)" not in pl  # one size: labels without it
    assert "| ic:111111 | conv:111111 | 5 | +2.50 | [+1.88, +3.12]" in pl
    # pareto tables say that each row is one run with one seed.
    assert "one training run with one seed" in (tmp_path / "r" / "pareto.md").read_text()
    assert "(one seed)" in (tmp_path / "r" / "pareto.tex").read_text()


def test_compare_pairs_configurations_of_both_studies(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    _grid(url, "a")
    _grid(url, "b")
    compare_studies(url, "a", url, "b", tmp_path / "c")
    md = (tmp_path / "c" / "compare.md").read_text()
    assert "## Paired: A against B" in md
    assert "| ic:111111 (resnet8) in a | ic:111111 (resnet8) in b | 5 | +0.00 |" in md
    assert "## Paired within a: against its basic network" in md


def test_non_grid_study_says_why_it_is_not_paired(search_url: str, tmp_path: Path) -> None:
    build_report(search_url, "search", tmp_path / "s")
    ab = (tmp_path / "s" / "ablation.md").read_text()
    assert "No paired comparison: a cell holds several trials with one seed" in ab
    pl = (tmp_path / "s" / "placements.md").read_text()
    assert "No paired comparison: 2 repeated configuration(s) have no basic network" in pl


def _confirmation(url: str, seeds: list[int], failed_seed: int | None = None) -> None:
    """A source search (basic #0, IC #1 on the front) and its confirmation over `seeds`."""
    src = optuna.create_study(study_name="src", storage=url, directions=["maximize", "minimize"])
    study_attrs(src, "TPESampler", 2)
    add_trial(
        src,
        state=TrialState.COMPLETE,
        params={},
        start_s=0,
        duration_s=1,
        attrs=metrics(
            0.905, BASIC_MACS, unit="conv", strategy="none", placement="conv:000000", test=0.9, wld=False
        ),
    )
    add_trial(src, state=TrialState.COMPLETE, params={}, start_s=2, duration_s=1,
              attrs=metrics(0.95, BASIC_MACS, unit="ic", strategy="all", placement="ic:111111", test=0.94))  # fmt: skip
    conf = optuna.create_study(study_name="src.confirm", storage=url, directions=["maximize", "minimize"])
    study_attrs(conf, "RandomSampler", 10)
    conf.set_user_attr(LINK_ATTR, {"study": "src", "trials": [0, 1], "basic_trials": [0], "seeds": seeds})
    for i, seed in enumerate(seeds):
        for source, unit, offset in ((0, "conv", 0.0), (1, "ic", GAIN[i])):
            acc = BASIC[i] + offset
            state = TrialState.FAIL if (seed == failed_seed and source == 1) else TrialState.COMPLETE
            attrs = metrics(
                acc if state == TrialState.COMPLETE else None, BASIC_MACS, unit=unit, strategy="all",
                placement="conv:000000" if unit == "conv" else "ic:111111", seed=seed, test=acc,
                source_trial=source, confirm_seed=seed,
                **({"status": "diverged"} if state == TrialState.FAIL else {}),
            )  # fmt: skip
            add_trial(conf, state=state, params={}, attrs=attrs, start_s=10 * i, duration_s=5)


def test_confirmation_report_sets_search_values_beside_confirmed_intervals(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    _confirmation(url, [1000, 1001, 1002, 1003, 1004])
    files = build_confirm_report(url, "src", url, "src.confirm", tmp_path / "conf")
    assert set(files) == {"confirm.md", "confirm.tex", "confirm.csv", "paired.csv", "trials.csv"}
    md = files["confirm.md"].read_text()
    # Basic: test = BASIC, mean 90.50, sd 0.79 -> 90.50 [89.52, 91.48]; IC: BASIC + GAIN, sd 1.27 ->
    # 93.00 [91.42, 94.58]. Paired, the seed noise both share cancels: +2.50 [+1.88, +3.12].
    assert (
        "| #0 (basic) | resnet8 | conv | `conv:000000` | no | - | 10.00 | 90.50 | 90.50 [89.52, 91.48] (n = 5) | +0.00 |"
        in md
    )
    assert (
        "| #1 | resnet8 | ic | `ic:111111` | yes | - | 10.00 | 95.00 | 93.00 [91.42, 94.58] (n = 5) | +2.00 |"
        in md
    )
    assert (
        "| #1 ic:111111 + WLD (resnet8) | basic #0 | 5 | +2.50 | [+1.88, +3.12] | <0.001 | better than basic #0"
        in md
    )
    assert "5 fresh seeds each (1000, 1001, 1002, 1003, 1004;" in md
    tex = files["confirm.tex"].read_text()
    assert r"93.00 $\pm$ 1.58" in tex and "Seeds" in tex
    csv = pd.read_csv(files["confirm.csv"])
    assert csv["n_seeds"].tolist() == [5, 5] and csv["on_confirmed_front"].tolist() == [False, True]


def test_confirmation_with_too_few_seeds_and_a_failed_seed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    _confirmation(url, [1000, 1001], failed_seed=1001)
    md = build_confirm_report(url, "src", url, "src.confirm", tmp_path / "conf")["confirm.md"].read_text()
    assert "too few seeds (one common seed): no interval" in md
    assert "| #1 | resnet8 | ic | `ic:111111` | yes | - | 10.00 | 95.00 | 92.00 (n = 1) |" in md
    assert "| 1 | no |" in md or "| 1 | yes |" in md  # one failed seed counted
