"""A replay with `replay_seed: study` reproduces a live search: same proposals, same values, exactly.

The table is made in the test by `tabulate` (real training); the live search trains every trial with
the study's `training.seed`, and the replay of the same sampler seed reads that seed's rows.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from search_helpers import write_study

from icbench.errors import ConfigError
from icbench.search import load_study, run_study
from icbench.search.tabulate import tabulate

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray"), pytest.mark.timeout(600)]

EXPERIMENT = """
dataset: {name: synthetic, kwargs: {n: 600, image_size: 16, in_chans: 1, num_classes: 4, signal: 0.6}}
family: {name: resnet_cifar, size: resnet8, width: 0.25}
objectives: [val_acc, macs]
sampler: {name: random, seed: 3}
budget: {epochs: 3}
training: {batch_size: 32, seed: 1}
execution: {max_concurrent: 2, cpus_per_trial: 1}
"""
SPACE = """
params:
  unit: {type: categorical, choices: [conv, ic, se]}
  strategy: {type: categorical, choices: [all, every_other], when: {unit: [ic, se]}}
"""


def _values(study: Path) -> list[tuple[str, float]]:
    loaded = load_study(study)
    s = optuna.load_study(
        study_name=loaded.config.name, storage=f"sqlite:///{study.parent}/runs/{study.stem}/study.db"
    )
    done = [t for t in s.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]
    return [(t.user_attrs["placement"], t.values[0]) for t in sorted(done, key=lambda t: t.number)]


def _seeds(study: Path) -> list[int]:
    loaded = load_study(study)
    s = optuna.load_study(
        study_name=loaded.config.name, storage=f"sqlite:///{study.parent}/runs/{study.stem}/study.db"
    )
    return [int(t.user_attrs["seed"]) for t in s.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]


def test_a_study_seed_replay_reproduces_the_live_search_exactly(tmp_path: Path, ray_local: None) -> None:
    table = tmp_path / "t.parquet"
    seeds = SPACE + "  seed: {type: categorical, choices: [0, 1]}\n"
    body = EXPERIMENT.replace("training: {batch_size: 32, seed: 1}", "training: {batch_size: 32}") + "evaluation: {test: all}\n"
    run = tabulate(write_study(tmp_path, body, seeds, name="tab"), out=table, report=False, echo=lambda _: None)
    assert run.stop_reason is None

    live = write_study(tmp_path, EXPERIMENT + "n_trials: 4\n", SPACE, name="live")
    assert run_study(live, report=False).n_complete == 4
    execution = f"execution: {{backend: replay, table: {table}, max_concurrent: 2, replay_seed: study}}\n"
    replay = write_study(tmp_path, EXPERIMENT.replace("execution: {max_concurrent: 2, cpus_per_trial: 1}\n",
                                                      execution) + "n_trials: 4\n", SPACE, name="replay")  # fmt: skip
    assert run_study(replay, report=False).n_complete == 4
    live_values, replay_values = _values(live), _values(replay)
    assert len(live_values) == 4 and live_values == replay_values
    import pandas as pd

    rows = pd.read_parquet(table)
    by_seed = rows.pivot_table(index="placement", columns="seed", values="val_acc")
    assert (by_seed[0] != by_seed[1]).any(), "the seeds differ, so matching values mean the same seed's rows"
    assert len({v for _, v in live_values}) > 1

    assert _seeds(replay) == [1, 1, 1, 1]
    drawn = write_study(tmp_path, EXPERIMENT.replace("execution: {max_concurrent: 2, cpus_per_trial: 1}\n",
                        execution.replace("replay_seed: study", "replay_seed: drawn")) + "n_trials: 4\n", SPACE,
                        name="drawn")  # fmt: skip
    run_study(drawn, report=False)
    assert 0 in _seeds(drawn)  # a drawn seed per trial reads the table's other seed for some trials


def test_a_study_seed_the_table_lacks_is_refused(tmp_path: Path) -> None:
    from replay_helpers import make_table

    live = write_study(tmp_path, EXPERIMENT, SPACE, name="live")
    table = make_table(tmp_path / "t.parquet", load_study(live), [0, 2], lambda p, w, s: ([0.5, 0.6], [1.0, 1.0]))
    execution = f"execution: {{backend: replay, table: {table}, replay_seed: study}}\n"
    study = write_study(tmp_path, EXPERIMENT.replace("execution: {max_concurrent: 2, cpus_per_trial: 1}\n",
                                                     execution) + "n_trials: 2\n", SPACE, name="r")  # fmt: skip
    with pytest.raises(ConfigError, match="seed=1"):
        run_study(study, report=False)
    assert not (tmp_path / "runs" / "r").exists()
