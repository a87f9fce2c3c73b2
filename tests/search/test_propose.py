"""The driver's side of a trial: candidate keys, normalised basic placements, the MACs ceiling."""

from __future__ import annotations

from pathlib import Path

import optuna
from search_helpers import write_study

from icbench.search.checks import check_study
from icbench.search.propose import Proposer
from icbench.search.schema import load_study

STUDY = """
dataset: {name: mnist5k}
family: {name: resnet_cifar, size: resnet8, width: 0.5}
budget: {epochs: 1}
"""
SPACE = """
params:
  unit: {type: categorical, choices: [ic, conv]}
  strategy: {type: categorical, choices: [all, last_k]}
  k: {type: int, low: 1, high: 2, target: strategy_args.k, when: {strategy: [last_k]}}
  lr: {type: categorical, choices: [0.1, 0.05]}
"""


def proposer(tmp_path: Path) -> Proposer:
    loaded = load_study(write_study(tmp_path, STUDY, SPACE))
    return Proposer(loaded, check_study(loaded, n_probe=1))


def propose(p: Proposer, **params: object) -> dict:
    return p(optuna.trial.FixedTrial(params)).attrs


def test_every_basic_placement_is_one_candidate(tmp_path: Path) -> None:
    p = proposer(tmp_path)
    a = propose(p, unit="conv", strategy="all", lr=0.1)
    b = propose(p, unit="conv", strategy="last_k", k=1, lr=0.1)
    assert a["placement"] == b["placement"] == "conv:0000000"
    assert a["candidate_key"] == b["candidate_key"]
    assert a["macs"] == b["macs"]


def test_different_networks_or_training_are_different_candidates(tmp_path: Path) -> None:
    p = proposer(tmp_path)
    keys = {
        propose(p, unit="ic", strategy="all", lr=0.1)["candidate_key"],
        propose(p, unit="ic", strategy="last_k", k=1, lr=0.1)["candidate_key"],
        propose(p, unit="ic", strategy="all", lr=0.05)["candidate_key"],
        propose(p, unit="conv", strategy="all", lr=0.1)["candidate_key"],
    }
    assert len(keys) == 4


def test_ic_placement_is_recorded_with_its_sites(tmp_path: Path) -> None:
    attrs = propose(proposer(tmp_path), unit="ic", strategy="last_k", k=1, lr=0.1)
    assert attrs["placement"] == "ic:0000011" and attrs["unit"] == "ic" and attrs["rejected"] is False
    assert attrs["seed"] == 0 and attrs["candidate"]["lr"] == 0.1
    assert {"torch", "optuna", "ray", "icbench"} <= set(attrs["versions"])


def test_the_trial_that_trains_a_teacher_may_use_the_waiting_trials_cpus(tmp_path: Path) -> None:
    wld = STUDY + "wld: {enabled: true}\nexecution: {cpus_per_trial: 2, max_concurrent: 3}\n"
    loaded = load_study(write_study(tmp_path / "wld", wld, SPACE))
    base = Proposer(loaded, check_study(loaded, n_probe=1)).base
    assert base["num_threads"] == 2 and base["teacher_threads"] == 6
    assert "teacher_threads" not in proposer(tmp_path / "plain").base  # no teacher, nothing to share
