"""Early-stopping schedulers: ASHA as Ray Tune decides, MO-ASHA by non-dominated rank, under both executors."""

from __future__ import annotations

import random
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from search_helpers import write_study

from icbench.errors import ConfigError
from icbench.search import load_study, run_study
from icbench.search.schedulers import SCHEDULERS
from icbench.search.schedulers.mo_asha import nondominated_ranks

OBJ = [("val_acc", "maximize"), ("macs", "minimize")]


def _make(name: str, **kw: int):
    return SCHEDULERS.get(name)(
        max_t=kw.get("max_t", 4), objectives=OBJ, grace_period=1, reduction_factor=kw.get("rf", 2)
    )


def test_mo_asha_keeps_a_cheaper_non_dominated_candidate_that_asha_stops() -> None:
    arrivals = {"A": (0.90, 10e6), "C": (0.85, 10e6), "B": (0.80, 5e6)}  # B: less accurate, half the MACs
    verdicts = {}
    for name in ("asha", "mo_asha"):
        s = _make(name)
        for tid, (acc, macs) in arrivals.items():
            s.on_start(tid, {"macs": macs})
            verdicts[name, tid] = s.on_result(tid, 1, {"val_acc": acc})
    assert verdicts["asha", "B"] is False, "ASHA: 0.80 is below the median 0.875 of the rung"
    assert verdicts["mo_asha", "B"] is True, "MO-ASHA: B is non-dominated, in the best ceil(3/2) = 2"
    assert verdicts["mo_asha", "C"] is False, "C is dominated by A"
    s = _make("mo_asha")
    for tid, (acc, macs) in arrivals.items():
        s.on_start(tid, {"macs": macs})
        s.on_result(tid, 1, {"val_acc": acc})
    decision = s.decisions("B")[0]
    assert (decision["rank"], decision["position"], decision["kept"], decision["rung"]) == (0, 1, 2, 1)


def test_nondominated_ranks() -> None:
    import numpy as np

    pts = np.array([[0, 0], [1, 1], [0, 2], [2, 0], [3, 3]])  # minimised
    assert nondominated_ranks(pts).tolist() == [0, 1, 1, 1, 2]


def test_asha_decides_as_ray_tunes_asha_scheduler() -> None:
    from ray.tune.schedulers.async_hyperband import _Bracket

    class T:
        def __init__(self, i: str) -> None:
            self.trial_id = i

    rng = random.Random(0)
    for rf, max_t in ((2, 4), (3, 9), (2, 8)):
        ours = _make("asha", rf=rf, max_t=max_t)
        theirs = _Bracket(min_t=1, max_t=max_t, reduction_factor=rf, s=0)
        alive = {f"t{i}": 0 for i in range(30)}
        while alive:
            tid = rng.choice(list(alive))
            alive[tid] += 1
            epoch, value = alive[tid], rng.random()
            mine = ours.on_result(tid, epoch, {"val_acc": value})
            ray_says = theirs.on_result(T(tid), epoch, value) == "CONTINUE"
            assert mine == ray_says, (rf, max_t, tid, epoch)
            if not mine or epoch >= max_t:
                del alive[tid]


def test_an_unknown_scheduler_lists_the_choices(tmp_path: Path) -> None:
    study = write_study(
        tmp_path,
        "execution: {scheduler: hyperband}\n",
        "params:\n  unit: {type: categorical, choices: [ic]}\n",
    )
    with pytest.raises(ConfigError, match="unknown scheduler 'hyperband'; known schedulers: asha, fifo, mo_asha"):
        load_study(study)


def test_the_older_asha_switch_still_means_asha(tmp_path: Path) -> None:
    study = write_study(
        tmp_path,
        "execution: {asha: {enabled: true}}\n",
        "params:\n  unit: {type: categorical, choices: [ic]}\n",
    )
    assert load_study(study).config.execution.scheduler_name == "asha"


@pytest.mark.slow
@pytest.mark.xdist_group("ray")
@pytest.mark.timeout(600)
def test_mo_asha_under_the_live_executor_records_its_rung_decisions(tmp_path: Path, ray_local: None) -> None:
    body = """
dataset: {name: synthetic, kwargs: {n: 400, image_size: 16, in_chans: 1}}
family: {name: resnet_cifar, size: resnet8, width: 0.25}
budget: {epochs: 2}
n_trials: 5
sampler: {name: random, seed: 1}
execution: {max_concurrent: 1, cpus_per_trial: 1, scheduler: mo_asha, asha: {grace_period: 1, reduction_factor: 2}}
"""
    space = """
params:
  unit: {type: categorical, choices: [conv, ic, ic_dual]}
  lr: {type: float, low: 0.01, high: 0.3, log: true}
"""
    study = write_study(tmp_path, body, space)
    run = run_study(study, report=True, echo=lambda _: None)
    assert run.n_complete + run.n_pruned == 5
    trials = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/runs/s/study.db").get_trials()
    trained = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert all(t.user_attrs["executor"] == "ray" for t in trained)
    assert all(t.user_attrs["rung_decisions"][0]["rung"] == 1 for t in trained), "every trial reached rung 1"
    for t in trained:
        assert (t.state == TrialState.PRUNED) == (t.user_attrs["rung_decisions"][-1]["continue"] is False)
