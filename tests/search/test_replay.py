"""The replay executor on hand-made tables: values, seeds, simulated clock, early stopping, refusals."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from replay_helpers import make_table
from search_helpers import write_study

from icbench.errors import ConfigError
from icbench.search import load_study, run_study
from icbench.search.executors.replay import replay_seed

EXPERIMENT = """
dataset: {name: synthetic, kwargs: {n: 400, image_size: 16, in_chans: 1}}
family: {name: resnet_cifar, size: resnet8, width: 0.25}
objectives: [val_acc, macs]
budget: {epochs: 4}
"""
SPACE = """
params:
  unit: {type: categorical, choices: [conv, ic, ic_dual]}
  wld: {type: categorical, choices: [false, true], when: {unit: [ic, ic_dual]}}
"""
SEEDS = [0, 1, 2]


def _acc(placement: str, wld: bool, seed: int) -> list[float]:
    base = {"conv": 0.80, "ic": 0.82, "ic_dual": 0.60}[placement.split(":")[0]] + 0.02 * wld + 0.001 * seed
    return [round(base - 0.3 + 0.1 * e, 4) for e in range(4)]  # rises 0.1 per epoch to `base`


def _curve(placement: str, wld: bool, seed: int) -> tuple[list[float], list[float]]:
    return _acc(placement, wld, seed), [1.0, 1.0, 1.0, 1.0]


@pytest.fixture
def table(tmp_path: Path) -> Path:
    live = write_study(tmp_path, EXPERIMENT, SPACE, name="live")
    return make_table(tmp_path / "t.parquet", load_study(live), SEEDS, _curve, setup_s=1.0)


def _replay(
    tmp_path: Path, table: Path, extra: str = "", space: str = SPACE, name: str = "r", execution: str = ""
) -> Path:
    body = (
        EXPERIMENT + f"execution: {{backend: replay, table: {table}, max_concurrent: 2{execution}}}\n" + extra
    )
    return write_study(tmp_path, body, space, name=name)


def _trials(study: Path) -> list[optuna.trial.FrozenTrial]:
    loaded = load_study(study)
    s = optuna.load_study(
        study_name=loaded.config.name, storage=f"sqlite:///{study.parent}/runs/{study.stem}/study.db"
    )
    return s.get_trials()


def test_replayed_values_are_the_table_entries_of_the_chosen_seed(tmp_path: Path, table: Path) -> None:
    import pandas as pd

    study = _replay(
        tmp_path, table, "n_trials: 5\nsampler: {name: random, seed: 3}\nevaluation: {test: all}\n"
    )
    run = run_study(study, report=True, echo=lambda _: None)
    assert run.n_complete == 5 and run.stop_reason is None
    rows = pd.read_parquet(table).set_index(["placement", "wld", "seed"])
    complete = [t for t in _trials(study) if t.state == TrialState.COMPLETE]
    assert len(complete) == 5
    for t in complete:
        a = t.user_attrs
        assert a["executor"] == "replay"
        assert a["seed"] == replay_seed(3, t.number, SEEDS)
        row = rows.loc[(a["placement"], a["wld"], a["seed"])]
        assert t.values == [row["val_acc"], row["macs"]]
        assert a["test_acc"] == row["test_acc"]
        assert [e["val_acc"] for e in a["curve"]] == list(row["val_acc_curve"])
    assert (tmp_path / "reports" / "r" / "summary.md").exists(), "the report of a replayed study builds"


def test_with_test_chosen_only_the_shown_trials_get_the_tables_test_accuracy(
    tmp_path: Path, table: Path
) -> None:
    import pandas as pd

    from icbench.report.evaluation import shown_trials
    from icbench.report.load import load_study as read_study

    study = _replay(tmp_path, table, "n_trials: 5\nsampler: {name: random, seed: 3}\n")
    run_study(study, report=False, echo=lambda _: None)
    data = read_study(f"sqlite:///{tmp_path}/runs/r/study.db", "r")
    shown = set(shown_trials(data.trials, data.objectives))
    for t in _trials(study):  # no trial reads the test column; the driver writes the shown ones' afterwards
        if "test_acc" in t.user_attrs:
            assert t.number in shown and "benchmark table" in t.user_attrs["test_evaluated"], t.number
    rows = pd.read_parquet(table).set_index(["placement", "wld", "seed"])
    for _, t in data.trials[data.trials["state"] == "COMPLETE"].iterrows():
        if t["number"] in shown:
            assert t["test_acc"] == rows.loc[(t["placement"], t["wld"], t["seed"]), "test_acc"]
            assert "benchmark table" in t["test_evaluated"]
        else:
            assert pd.isna(t["test_acc"])


def test_replay_seeds_are_deterministic_and_cover_the_table() -> None:
    drawn = [replay_seed(0, n, SEEDS) for n in range(200)]
    assert drawn == [replay_seed(0, n, SEEDS) for n in range(200)]
    assert set(drawn) == set(SEEDS)
    assert drawn != [replay_seed(1, n, SEEDS) for n in range(200)]


def test_the_simulated_clock_runs_max_concurrent_workers(tmp_path: Path, table: Path) -> None:
    # Every row: 1 s set-up + 4 x 1 s epochs = 5 s; two workers, five trials -> three waves.
    study = _replay(tmp_path, table, "n_trials: 5\nsampler: {name: random, seed: 0}\n")
    run_study(study, report=False, echo=lambda _: None)
    trained = sorted(
        (t.user_attrs["sim_start_s"], t.user_attrs["sim_end_s"])
        for t in _trials(study)
        if t.state == TrialState.COMPLETE
    )
    assert trained == [(0.0, 5.0), (0.0, 5.0), (5.0, 10.0), (5.0, 10.0), (10.0, 15.0)]


def test_early_stopping_in_replay_prunes_at_the_rung_in_simulated_time(tmp_path: Path, table: Path) -> None:
    # One worker, so trials run in the enqueue order. Rung 1: conv 0.50 (first, goes on), ic+WLD 0.54
    # (above the median of [0.50]), ic_dual 0.30 (below the median of [0.50, 0.54]: stopped there, at its
    # start 10 s + 1 s set-up + 1 s epoch).
    body = "n_trials: 3\nsampler: {name: random, seed: 0}\nenqueue: [{unit: conv}, {unit: ic, wld: true}, {unit: ic_dual, wld: false}]\n"
    study = _replay(tmp_path, table, body, execution=", scheduler: asha")
    study.write_text(study.read_text().replace("max_concurrent: 2", "max_concurrent: 1"))
    run_study(study, report=True, echo=lambda _: None)
    trials = {t.user_attrs["placement"].split(":")[0]: t for t in _trials(study)}
    pruned = trials["ic_dual"]
    assert pruned.state == TrialState.PRUNED
    assert pruned.user_attrs["epoch"] == 1 and pruned.user_attrs["status"] == "pruned"
    assert (pruned.user_attrs["sim_start_s"], pruned.user_attrs["sim_end_s"]) == (10.0, 12.0)
    decision = pruned.user_attrs["rung_decisions"][0]
    assert (
        decision["continue"] is False
        and decision["rung"] == 1
        and decision["cutoff"] == pytest.approx(0.52, abs=2e-3)
    )
    assert trials["ic"].state == TrialState.COMPLETE and trials["conv"].state == TrialState.COMPLETE
    assert (trials["conv"].user_attrs["sim_start_s"], trials["ic"].user_attrs["sim_start_s"]) == (0.0, 5.0)


def test_a_space_the_table_does_not_hold_is_refused_before_storage_exists(
    tmp_path: Path, table: Path
) -> None:
    space = SPACE.replace("[conv, ic, ic_dual]", "[conv, ic, ic_dual, se]")
    study = _replay(tmp_path, table, "n_trials: 3\n", space=space)
    with pytest.raises(ConfigError, match="does not hold: se:0111111 wld=False"):
        run_study(study, report=False, echo=lambda _: None)
    assert not (tmp_path / "runs" / "r").exists()


def test_another_experiment_than_the_table_is_refused_naming_the_field(tmp_path: Path, table: Path) -> None:
    study = _replay(tmp_path, table, "n_trials: 3\ntraining: {lr: 0.05}\n")
    with pytest.raises(ConfigError, match="made with another experiment.*lr: table 0.1, study 0.05"):
        run_study(study, report=False, echo=lambda _: None)
    assert not (tmp_path / "runs" / "r").exists()


def test_a_continuous_space_cannot_be_replayed(tmp_path: Path, table: Path) -> None:
    space = SPACE + "  lr: {type: float, low: 0.01, high: 0.1}\n"
    with pytest.raises(ConfigError, match="needs a step"):
        run_study(_replay(tmp_path, table, "n_trials: 3\n", space=space), report=False, echo=lambda _: None)


def test_a_missing_table_names_the_field(tmp_path: Path) -> None:
    study = _replay(tmp_path, tmp_path / "nope.parquet", "n_trials: 3\n")
    with pytest.raises(ConfigError, match="benchmark table not found") as e:
        load_study(study)
    assert e.value.field == "execution.table"


def test_a_replay_resumes_like_a_live_study(tmp_path: Path, table: Path) -> None:
    study = _replay(tmp_path, table, "n_trials: 3\nsampler: {name: tpe, seed: 0}\n")
    run_study(study, report=False, echo=lambda _: None)
    first = {t.number: t.values for t in _trials(study) if t.state == TrialState.COMPLETE}
    run_study(study, report=False, overrides={"n_trials": 5}, echo=lambda _: None)
    after = {t.number: t.values for t in _trials(study) if t.state == TrialState.COMPLETE}
    assert len(after) == 5 and all(after[n] == v for n, v in first.items())
