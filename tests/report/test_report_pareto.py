"""Pareto extraction and the 2-D hypervolume against hand-computed fronts."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from report_fixtures import SEARCH_FRONT

from icbench.errors import IcbenchError
from icbench.report import load_trials
from icbench.report.pareto import (
    default_reference,
    hypervolume_2d,
    hypervolume_history,
    pareto_front,
    pareto_mask,
)

MAX_MIN = ["maximize", "minimize"]


def test_mask_simple_front() -> None:
    # (acc, MACs): (0.9, 10) and (0.95, 20) trade off; (0.85, 15) is dominated by (0.9, 10).
    pts = [(0.9, 10), (0.85, 15), (0.95, 20)]
    assert pareto_mask(pts, MAX_MIN).tolist() == [True, False, True]


def test_mask_ties_are_all_kept() -> None:
    pts = [(0.9, 10), (0.9, 10), (0.95, 20), (0.8, 30)]
    assert pareto_mask(pts, MAX_MIN).tolist() == [True, True, True, False]


def test_mask_dominated_duplicates_all_dropped() -> None:
    pts = [(0.9, 10), (0.85, 12), (0.85, 12), (0.85, 12)]
    assert pareto_mask(pts, MAX_MIN).tolist() == [True, False, False, False]


def test_mask_equal_in_one_objective_is_dominated() -> None:
    # Same MACs, lower accuracy: dominated (weakly worse everywhere, strictly worse once).
    assert pareto_mask([(0.9, 10), (0.8, 10)], MAX_MIN).tolist() == [True, False]
    assert pareto_mask([(0.9, 10), (0.9, 11)], MAX_MIN).tolist() == [True, False]


def test_mask_nan_rows_never_optimal() -> None:
    pts = [(math.nan, 1), (0.5, 10), (0.99, math.nan)]
    assert pareto_mask(pts, MAX_MIN).tolist() == [False, True, False]


def test_mask_three_objectives() -> None:
    # (acc max, MACs min, latency min): c trades latency for MACs, d is dominated by a.
    pts = [(0.9, 10, 5.0), (0.95, 20, 6.0), (0.9, 12, 3.0), (0.89, 11, 5.0)]
    assert pareto_mask(pts, ["maximize", "minimize", "minimize"]).tolist() == [True, True, True, False]


def test_mask_all_minimize_and_empty() -> None:
    assert pareto_mask([(1, 2), (2, 1), (2, 2)], ["minimize", "minimize"]).tolist() == [True, True, False]
    assert pareto_mask(np.empty((0, 2)), MAX_MIN).tolist() == []


def test_mask_bad_direction_and_shape() -> None:
    with pytest.raises(IcbenchError, match="maximize"):
        pareto_mask([(1, 2)], ["up", "down"])
    with pytest.raises(IcbenchError, match="shape"):
        pareto_mask([(1, 2, 3)], MAX_MIN)


def test_hypervolume_single_point() -> None:
    # Box from (acc 0.8 .. 0) x (MACs 10 .. 20): 0.8 * 10.
    assert hypervolume_2d([(0.8, 10)], MAX_MIN, (0.0, 20.0)) == pytest.approx(8.0)


def test_hypervolume_staircase_by_hand() -> None:
    # Front (0.93,10), (0.94,12), (0.95,15), (0.97,20), reference (0, 22):
    # 0.93*(12-10) + 0.94*(15-12) + 0.95*(20-15) + 0.97*(22-20) = 11.37.
    pts = [(0.95, 15), (0.93, 10), (0.97, 20), (0.94, 12)]
    assert hypervolume_2d(pts, MAX_MIN, (0.0, 22.0)) == pytest.approx(11.37)


def test_hypervolume_ignores_dominated_duplicates_and_outside_points() -> None:
    base = [(0.93, 10), (0.97, 20)]
    ref = (0.0, 22.0)
    expected = 0.93 * 10 + 0.97 * 2
    assert hypervolume_2d(base, MAX_MIN, ref) == pytest.approx(expected)
    noisy = base + [(0.93, 10), (0.9, 15), (0.9, 15), (0.99, 30), (math.nan, 5)]  # 30 > ref: outside
    assert hypervolume_2d(noisy, MAX_MIN, ref) == pytest.approx(expected)
    assert hypervolume_2d([], MAX_MIN, ref) == 0.0


def test_hypervolume_minimize_minimize_by_hand() -> None:
    # Two boxes [1,4]x[3,4] (area 3) and [2,4]x[1,4] (area 6) overlap on [2,4]x[3,4] (area 2): 7.
    assert hypervolume_2d([(1, 3), (2, 1)], ["minimize", "minimize"], (4, 4)) == pytest.approx(7.0)


def test_front_of_fixture_study(search_url: str) -> None:
    trials = load_trials(search_url, "search")
    front = pareto_front(trials)
    assert front["number"].tolist() == SEARCH_FRONT
    assert set(front["state"]) == {"COMPLETE"}


def test_pruned_failed_rejected_never_on_front_or_in_hypervolume(search_url: str) -> None:
    trials = load_trials(search_url, "search")
    excluded = trials[trials["state"] != "COMPLETE"]
    # The fixture's PRUNED and FAIL trials would dominate every COMPLETE one if they were counted.
    assert {"PRUNED", "FAIL"} <= set(excluded["state"]) and excluded["rejected"].any()
    front = pareto_front(trials, [("val_acc", "maximize"), ("macs", "minimize"), ("latency_ms", "minimize")])
    assert not set(front["number"]) & set(excluded["number"])

    history, ref = hypervolume_history(trials)
    only_complete, ref_c = hypervolume_history(trials[trials["state"] == "COMPLETE"])
    # Just worse than the worst COMPLETE values: 0.90 - 0.1 x (0.97 - 0.90), and 1.1 x the largest COMPLETE
    # MACs (not the rejected 60M, nor the better PRUNED and FAIL accuracies).
    assert ref == ref_c == (pytest.approx(0.893), pytest.approx(22e6))
    # Front (0.93,10M), (0.94,12M), (0.95,15M), (0.97,20M) against (0.893, 22M):
    expected = 0.037 * 2e6 + 0.047 * 3e6 + 0.057 * 5e6 + 0.077 * 2e6
    assert history["hypervolume"].iloc[-1] == pytest.approx(expected)
    assert history["hypervolume"].iloc[-1] == pytest.approx(only_complete["hypervolume"].iloc[-1])
    assert not history.loc[history["state"] != "COMPLETE", "counted"].any()


def test_history_by_number_and_time(search_url: str) -> None:
    trials = load_trials(search_url, "search")
    history, (ref_acc, ref_macs) = hypervolume_history(trials)
    assert history["number"].tolist() == sorted(trials["number"])
    hv = history["hypervolume"].to_numpy()
    assert (np.diff(hv) >= -1e-9).all()  # never decreases
    # After trial 0 only the basic network (0.90, 10M) counts: (0.90 - 0.893) * (22M - 10M).
    assert hv[0] == pytest.approx(0.007 * 12e6)
    assert history["ref_macs"].eq(ref_macs).all() and history["ref_val_acc"].eq(ref_acc).all()
    # Normalised by the box from the reference to the best values seen: acc 0.97, MACs 10M.
    box = (0.97 - 0.893) * (22e6 - 10e6)
    assert history["hypervolume_norm"].iloc[-1] == pytest.approx(hv[-1] / box)
    assert 0.5 < history["hypervolume_norm"].iloc[-1] < 1.0  # not the ~0.8-for-everything of accuracy 0
    # Trials finish in number order here, so both views agree.
    assert np.allclose(history["hypervolume_by_time"], hv)


def test_history_by_time_follows_end_times() -> None:
    # Trial 1 finishes before trial 0: by time, the hypervolume at trial 1's end counts only trial 1.
    trials = pd.DataFrame(
        {
            "number": [0, 1],
            "state": ["COMPLETE", "COMPLETE"],
            "val_acc": [0.9, 0.5],
            "macs": [10.0, 5.0],
            "elapsed_s": [100.0, 50.0],
        }
    )
    history, ref = hypervolume_history(trials, reference=(0.0, 20.0))
    assert ref == (0.0, 20.0)
    assert history["hypervolume"].tolist() == pytest.approx([9.0, 9.0 + 0.5 * 5])
    assert history["hypervolume_by_time"].tolist() == pytest.approx([9.0 + 0.5 * 5, 0.5 * 15])


def test_default_reference_is_just_worse_than_the_worst_seen() -> None:
    trials = pd.DataFrame(
        {"number": [0, 1, 2], "state": ["COMPLETE", "COMPLETE", "PRUNED"], "val_acc": [96.0, 98.0, 10.0],
         "macs": [10.0, 20.0, 1.0]}
    )  # fmt: skip
    assert default_reference(trials) == (pytest.approx(95.8), pytest.approx(22.0))
    same = trials.assign(val_acc=[0.9, 0.9, 0.1])  # one accuracy seen: 1 % of the scale below it
    assert default_reference(same) == (pytest.approx(0.89), pytest.approx(22.0))


def test_default_reference_without_complete_trials() -> None:
    trials = pd.DataFrame({"number": [0], "state": ["PRUNED"], "val_acc": [0.9], "macs": [10.0]})
    acc, macs = default_reference(trials)
    assert acc == 0.0 and math.isnan(macs)
