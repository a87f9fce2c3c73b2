"""`seed_with`: a cheap estimator's top candidates enqueued before a live search."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from search_helpers import write_study

from icbench.errors import ConfigError
from icbench.search import load_study, run_study

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray"), pytest.mark.timeout(600)]

EXPERIMENT = """
dataset: {name: synthetic, kwargs: {n: 300, image_size: 16, in_chans: 1, num_classes: 4, signal: 0.6}}
family: {name: resnet_cifar, size: resnet8, width: 0.25}
strategy: mask
objectives: [val_acc, macs]
sampler: {name: tpe, seed: 0}
budget: {epochs: 1}
execution: {max_concurrent: 2, cpus_per_trial: 1}
n_trials: 5
"""
SPACE = """
params:
  unit: {type: categorical, choices: [conv, ic]}
  blocks: {type: mask, over: blocks}
"""


def test_the_estimators_top_candidates_are_trained_first_and_recorded(tmp_path: Path, ray_local: None) -> None:
    study = write_study(tmp_path, EXPERIMENT + "seed_with: {estimator: params, top: 3}\n", SPACE, name="s")
    log: list[str] = []
    run = run_study(study, echo=log.append)
    assert run.n_complete == 5
    assert any(line.startswith("seed_with: params scored 8 candidates") for line in log), log
    loaded = load_study(study)
    s = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/runs/s/study.db")
    rec = s.user_attrs["seeded_by"]
    assert rec["estimator"] == "params" and len(rec["enqueued"]) == 3 and rec["seconds"] >= 0
    first = sorted(s.get_trials(), key=lambda t: t.number)[:3]
    assert all(t.user_attrs.get("proposed_by") == "estimator:params" for t in first)
    # params ranks the placements with the most unit sites first: all three blocks, then two of them
    assert [t.user_attrs["placement"].count("1") for t in first][0] == max(
        t.user_attrs["placement"].count("1") for t in s.get_trials() if t.user_attrs.get("placement")
    )
    summary = (tmp_path / "reports" / "s" / "summary.md").read_text()
    assert "Seeded by the estimator `params`" in summary
    # a resume does not seed again
    run_study(study, report=False, echo=log.append, overrides={"n_trials": 6})
    assert sum(line.startswith("seed_with:") for line in log) == 1
    del loaded


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("seed_with: {estimator: val_acc_e1}\n", "reads a benchmark table"),
        ("seed_with: {estimator: nope}\n", "cannot seed a live search"),
        ("seed_with: {estimator: params, top: 0}\n", "top"),
    ],
)
def test_a_bad_seed_with_is_refused_before_anything_is_written(tmp_path: Path, body: str, match: str) -> None:
    study = write_study(tmp_path, EXPERIMENT + body, SPACE, name="b")
    with pytest.raises(ConfigError, match=match):
        run_study(study)
    assert not (tmp_path / "runs").exists()


def test_seed_with_needs_a_finite_space(tmp_path: Path) -> None:
    space = SPACE + "  lr: {type: float, low: 0.01, high: 0.1}\n"
    study = write_study(tmp_path, EXPERIMENT + "seed_with: {estimator: params}\n", space, name="f")
    with pytest.raises(ConfigError, match="give this float parameter a `step`") as e:
        run_study(study)
    assert e.value.field == "params.lr"
