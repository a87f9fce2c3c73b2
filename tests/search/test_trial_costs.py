"""A trial does not count again what the driver counted: the cost and the basic network's sites travel with
its config (`Proposer`), so a fresh worker builds the candidate without a single MACs count."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from search_helpers import write_study

import icbench.cost
import icbench.placement
from icbench.search import trainable
from icbench.search.checks import check_study
from icbench.search.propose import Proposer
from icbench.search.schema import load_study
from icbench.training import candidate

STUDY = """
dataset: {name: synthetic, kwargs: {n: 120, image_size: 16, in_chans: 1}}
family: {name: resnet_cifar, size: resnet8, width: 0.25}
budget: {epochs: 1}
"""
SPACE = """
params:
  unit: {type: categorical, choices: [ic, conv]}
  strategy: {type: categorical, choices: [all, every_other]}
"""


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every MACs count from here on (the cost model's and the site finder's), and Tune's reports
    caught in this process (`run_trial` outside a Tune session)."""
    from ray import tune

    calls: list[int] = []
    real = icbench.cost.count_macs

    def counting(*args: Any, **kwargs: Any) -> int:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(icbench.cost, "count_macs", counting)
    monkeypatch.setattr(icbench.placement, "count_macs", counting)
    monkeypatch.setattr(tune, "report", lambda metrics, **kw: None)
    return calls


def trial_config(tmp_path: Path, **params: Any) -> dict[str, Any]:
    loaded = load_study(write_study(tmp_path, STUDY, SPACE))
    proposal = Proposer(loaded, check_study(loaded, n_probe=1))(optuna.trial.FixedTrial(params))
    assert proposal.config is not None
    return {**proposal.config, "trial_number": 0}


def run_in_fresh_worker(config: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """`run_trial` as a new worker process runs it: no sites found in this process yet."""
    from ray import tune

    monkeypatch.setattr(candidate, "_SITES", {})
    reports: list[dict[str, Any]] = []
    monkeypatch.setattr(tune, "report", lambda metrics, **kw: reports.append(metrics))
    trainable.run_trial(config)
    return reports[-1]


def test_a_trial_given_cost_and_sites_by_the_driver_counts_no_macs(
    tmp_path: Path, counted: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = trial_config(tmp_path, unit="ic", strategy="every_other")
    assert config["cost"]["macs"] > 0 and len(config["sites"]) == 7  # ResNet-8: stem + 3 blocks x 2
    counted.clear()  # the driver's counts (study check, proposal) are not the trial's
    final = run_in_fresh_worker(config, monkeypatch)
    assert final["status"] == "complete", final.get("reason")
    assert counted == []
    assert final["macs"] == config["cost"]["macs"]


def test_without_the_sites_the_same_trial_counts_once(
    tmp_path: Path, counted: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: the counter sees a trial's own count (finding the sites) when the driver sends none."""
    config = trial_config(tmp_path, unit="ic", strategy="every_other")
    counted.clear()
    final = run_in_fresh_worker({**config, "sites": None}, monkeypatch)
    assert final["status"] == "complete", final.get("reason")
    assert len(counted) == 1


def test_handed_sites_are_the_sites_the_worker_would_find(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = trial_config(tmp_path, unit="ic", strategy="all")
    monkeypatch.setattr(candidate, "_SITES", {})
    found = candidate.build_candidate(config["candidate"])[1]
    own = candidate.known_sites(config["candidate"])
    assert own == config["sites"]
    monkeypatch.setattr(candidate, "_SITES", {})
    candidate.remember_sites(config["candidate"], config["sites"])
    assert candidate.build_candidate(config["candidate"])[1] == found
    assert candidate.known_sites(config["candidate"]) == own
