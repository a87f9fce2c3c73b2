"""What the figures say: warm-started WLD students labelled in curves.png, front markers that cannot hide
each other (pareto.png, bench_front.png), the hypervolume on a full 0..1 axis."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from icbench.report import aggregate, plots
from icbench.report.load import _info


def test_dodge_sets_markers_that_share_an_x_side_by_side() -> None:
    x = plots.dodge([2.0, 2.0, 2.0, 5.0, 9.0, 9.0])
    assert x[3] == 5.0  # alone: unchanged
    assert len(set(x[:3])) == 3 and x[1] == pytest.approx(2.0) and x[0] < 2.0 < x[2]
    assert x[4] < 9.0 < x[5]
    assert np.all(np.abs(x / np.array([2, 2, 2, 5, 9, 9]) - 1) <= 0.05)  # close to where they belong


def test_tied_front_trials_share_one_marker_with_their_count() -> None:
    front = pd.DataFrame({"number": [5, 14, 19, 1], "macs": [2.3e6, 2.3e6, 2.3e6, 2.3e6],
                          "val_acc": [0.9733, 0.9733, 0.9733, 0.964], "unit": ["ic", "ic", "ic", "conv"]})  # fmt: skip
    ties = plots._ties(front, ["macs", "val_acc", "unit"]).set_index("unit")
    assert ties.loc["ic", "count"] == 3 and ties.loc["ic", "numbers"] == [5, 14, 19]
    assert ties.loc["conv", "count"] == 1


def test_warm_started_students_are_counted_and_labelled_in_curves() -> None:
    curve = [{"epoch": 1, "val_acc": 0.9}, {"epoch": 2, "val_acc": 0.95}]
    trials = pd.DataFrame({
        "number": [0, 1, 2, 3], "state": ["COMPLETE"] * 4, "val_acc": [0.95] * 4, "macs": [1.0] * 4,
        "wld": [True, True, False, False], "warm_start": [True, True, False, None],
        "curve": [curve] * 4,
    })  # fmt: skip
    curves = aggregate.cell_curves(trials, ["wld"])
    by_label = {c.label: c for c in curves}
    assert (by_label["wld=True"].warm, by_label["wld=True"].trials) == (2, 2)
    assert by_label["wld=False"].warm == 0
    fig = plots.curves_figure(curves, title="t", target=None, acc_values=trials["val_acc"])
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("wld=True" in s and "[warm start]" in s for s in labels)
    assert not any("wld=False" in s and "warm" in s for s in labels)
    assert "teacher's accuracy (not a faster start)" in ax.get_title()
    styles = {line.get_label(): line.get_linestyle() for line in ax.get_lines()}
    assert [s for label, s in styles.items() if "wld=True" in label] == ["--"]

    mixed = aggregate.cell_curves(trials, [])  # one cell: 2 of 4 warm-started
    fig = plots.curves_figure(mixed, title="t", target=None, acc_values=trials["val_acc"])
    assert "[2 of 4 warm start]" in fig.axes[0].get_legend().get_texts()[0].get_text()


def test_a_trial_records_its_warm_start_through_its_candidate() -> None:
    assert _info("warm_start", {}, {}, {"wld": {"enabled": True}}) is True  # on by default
    assert _info("warm_start", {}, {}, {"wld": {"enabled": True, "warm_start": False}}) is False
    assert _info("warm_start", {}, {}, {"wld": {"enabled": False}}) is False
    assert _info("warm_start", {}, {}, {}) is None  # not recorded
