"""Samplers: the registry, and the informed view (pruned and rejected trials teach the sampler)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from replay_helpers import make_table
from search_helpers import write_study

from icbench.errors import ConfigError
from icbench.search import load_study, run_study
from icbench.search.samplers import SAMPLERS
from icbench.search.samplers.informed import CONSTRAINT, InformedSampler, _StudyView, informed_trial

OBJ = [("val_acc", "maximize"), ("macs", "minimize")]
DIST = {"x": FloatDistribution(0.0, 1.0)}


def _study(sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)


def _add(study: optuna.Study, x: float, state: TrialState, **attrs: object) -> None:
    values = [attrs["val_acc"], attrs["macs"]] if state == TrialState.COMPLETE else None
    study.add_trial(
        create_trial(state=state, params={"x": x}, distributions=DIST, values=values, user_attrs=attrs)
    )


def test_the_view_shows_pruned_at_their_partial_accuracy_and_rejected_as_infeasible() -> None:
    study = _study(optuna.samplers.RandomSampler(seed=0))
    _add(study, 0.1, TrialState.COMPLETE, val_acc=0.9, macs=2.0, status="complete")
    _add(study, 0.2, TrialState.PRUNED, val_acc=0.5, macs=1.0, status="pruned")
    _add(study, 0.3, TrialState.FAIL, macs=9.0, status="rejected")
    _add(study, 0.4, TrialState.FAIL, status="duplicate")
    view = _StudyView(study, OBJ, max_macs=5.0)
    seen = view._get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    assert [t.number for t in seen] == [0, 1, 2]
    assert seen[1].values == [0.5, 1.0] and seen[1].constraints == {"max_macs": -4.0}  # feasible
    assert seen[2].values == [0.0, 9.0] and seen[2].system_attrs[CONSTRAINT] == 4.0
    # The storage is untouched: the study itself still says PRUNED and FAIL.
    assert [t.state for t in study.get_trials()] == [
        TrialState.COMPLETE,
        TrialState.PRUNED,
        TrialState.FAIL,
        TrialState.FAIL,
    ]
    assert informed_trial(study.trials[3], OBJ, 5.0) is None, "duplicates stay out"


@pytest.mark.parametrize("name", ["tpe", "nsga2", "gp", "random"])
def test_every_registered_sampler_runs_through_the_view(name: str, tmp_path: Path) -> None:
    sampler = InformedSampler(SAMPLERS.get(name)(None, 0), OBJ, max_macs=0.5)
    study = _study(sampler)
    for i in range(14):
        t = study.ask()
        x = t.suggest_float("x", 0.0, 1.0)
        if i % 3 == 0:
            t.set_user_attr("val_acc", x / 2)
            t.set_user_attr("macs", x)
            study.tell(t, state=TrialState.PRUNED)
        elif x > 0.5:
            t.set_user_attr("macs", x)
            t.set_user_attr("status", "rejected")
            study.tell(t, state=TrialState.FAIL)
        else:
            study.tell(t, [x, x])
    assert len(study.trials) == 14


def test_a_pruned_trials_partial_result_changes_the_next_proposal() -> None:
    def next_x(informed: bool) -> float:
        base = optuna.samplers.TPESampler(seed=0, n_startup_trials=4)
        study = _study(InformedSampler(base, OBJ, None) if informed else base)
        for x, acc in ((0.1, 0.2), (0.2, 0.25), (0.3, 0.3), (0.4, 0.35)):
            _add(study, x, TrialState.COMPLETE, val_acc=acc, macs=1.0, status="complete")
        for x in (0.85, 0.9, 0.95):  # stopped early, but far better than everything complete
            _add(study, x, TrialState.PRUNED, val_acc=0.9, macs=1.0, status="pruned")
        return study.ask().suggest_float("x", 0.0, 1.0)

    assert next_x(informed=True) != next_x(informed=False)
    assert next_x(informed=True) > 0.6, "the informed sampler goes where the pruned trials were good"


EXPERIMENT = """
dataset: {name: synthetic, kwargs: {n: 400, image_size: 16, in_chans: 1}}
family: {name: resnet_cifar, size: resnet8, width: 0.25}
strategy: mask
budget: {epochs: 1}
"""
SPACE = """
params:
  unit: {type: categorical, choices: [conv, ic, ic_dual]}
  blocks: {type: mask, over: blocks}
"""


def _acc(placement: str, wld: bool, seed: int) -> tuple[list[float], list[float]]:
    bits = placement.split(":")[1]
    return [0.7 + 0.01 * bits.count("1") + 0.001 * seed], [1.0]


@pytest.fixture(scope="module")
def masked_table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("masked")
    live = write_study(folder, EXPERIMENT, SPACE, name="live")
    return make_table(folder / "t.parquet", load_study(live), [0, 1], _acc)


def _replay(folder: Path, table: Path, extra: str, name: str) -> list[optuna.trial.FrozenTrial]:
    body = (
        EXPERIMENT
        + f"execution: {{backend: replay, table: {table}, max_concurrent: 1, max_consecutive_rejections: 10000}}\n"
        + extra
    )
    study = write_study(folder, body, SPACE, name=name)
    run_study(study, report=False, echo=lambda _: None)
    return optuna.load_study(study_name=name, storage=f"sqlite:///{folder}/runs/{name}/study.db").get_trials()


def test_under_a_ceiling_the_informed_sampler_learns_to_avoid_rejection(
    tmp_path: Path, masked_table: Path
) -> None:
    import pandas as pd

    # ic_dual doubles the MACs of every site it holds: a ceiling just above the basic network's MACs
    # rejects all 7 ic_dual placements of the 15 candidates (conv, 7 ic, 7 ic_dual).
    ceiling = int(pd.read_parquet(masked_table)["macs"].min()) + 1
    extra = "n_trials: 6\nsampler: {name: tpe, seed: 2, informed: %s}\nconstraints: {max_macs: %d}\n"
    informed = _replay(tmp_path, masked_table, extra % ("true", ceiling), "informed")
    plain = _replay(tmp_path, masked_table, extra % ("false", ceiling), "plain")
    assert sum(t.state == TrialState.COMPLETE for t in informed) == 6

    def rejected(trials: list) -> int:
        return sum(t.user_attrs.get("status") == "rejected" for t in trials)

    # Before the first rejections teach it, the informed sampler proposes as the plain one does; after,
    # it proposes fewer infeasible candidates for the same 6 trained ones (6 of the 8 feasible: the last
    # ones of a space this small are hard to find for any sampler).
    assert rejected(informed) < rejected(plain), "fewer rejected proposals for the same trained candidates"


def test_duplicates_are_answered_by_a_candidate_not_seen_yet(tmp_path: Path, masked_table: Path) -> None:
    trials = _replay(tmp_path, masked_table, "n_trials: 14\nsampler: {name: tpe, seed: 0}\n", "dups")
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 14
    assert any(t.user_attrs.get("proposed_by") == "fallback" for t in complete)
    keys = [t.user_attrs["candidate_key"] for t in complete]
    assert len(set(keys)) == 14


def test_an_unknown_sampler_lists_the_choices(tmp_path: Path) -> None:
    study = write_study(tmp_path, "sampler: {name: cmaes}\n", SPACE)
    with pytest.raises(
        ConfigError, match="unknown sampler 'cmaes'; known samplers: gp, grid, nsga2, random, tpe"
    ):
        load_study(study)
