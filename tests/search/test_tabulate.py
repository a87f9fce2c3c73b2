"""`run_study.py tabulate`: every distinct candidate x seed of a finite space, once, as a Parquet table."""

from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState
from search_helpers import write_study

from icbench.errors import ConfigError
from icbench.report.table import COLUMNS, read_table
from icbench.search import load_study, run_study
from icbench.search.checks import check_study
from icbench.search.propose import Proposer
from icbench.search.tabulate import pilot_rows, table_rows, tabulate

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray"), pytest.mark.timeout(600)]

EXPERIMENT = """
dataset: {name: synthetic, kwargs: {n: 400, image_size: 16, in_chans: 1}}
family: {name: resnet_cifar, size: resnet8, width: 0.25}
budget: {epochs: 1}
evaluation: {test: all}
execution: {max_concurrent: 2, cpus_per_trial: 1}
"""
#: conv+all and conv+every_other are one network (the basic one): 3 candidates x 2 seeds = 6 rows.
SPACE = """
params:
  unit: {type: categorical, choices: [conv, ic]}
  strategy: {type: categorical, choices: [all, every_other]}
  seed: {type: categorical, choices: [0, 1]}
"""


def test_rows_are_distinct_experiments_in_seed_major_order(tmp_path: Path) -> None:
    loaded = load_study(write_study(tmp_path, EXPERIMENT, SPACE, name="t"))
    rows = table_rows(loaded, Proposer(loaded, check_study(loaded)), None)
    assert [r.params["seed"] for r in rows] == [0, 0, 0, 1, 1, 1]
    assert [(r.params["unit"], r.params["strategy"]) for r in rows[:3]] == [
        ("conv", "all"), ("ic", "all"), ("ic", "every_other"),
    ]  # fmt: skip


def test_an_infinite_space_or_a_test_setting_other_than_all_is_refused(tmp_path: Path) -> None:
    space = SPACE + "  lr: {type: float, low: 0.01, high: 0.1}\n"
    with pytest.raises(ConfigError, match="finite search space") as e:
        tabulate(write_study(tmp_path, EXPERIMENT, space, name="a"), echo=lambda _: None)
    assert e.value.field == "params.lr"
    study = write_study(tmp_path, EXPERIMENT.replace("test: all", "test: chosen"), SPACE, name="b")
    with pytest.raises(ConfigError, match="evaluation: {test: all}"):
        tabulate(study, echo=lambda _: None)
    assert not (tmp_path / "runs").exists()


def test_tabulate_writes_every_row_and_column_then_replays_and_resumes(
    tmp_path: Path, ray_local: None
) -> None:
    study = write_study(tmp_path, EXPERIMENT, SPACE, name="t")
    out = tmp_path / "t.parquet"
    run = tabulate(study, out=out, echo=lambda _: None)
    assert run.stop_reason is None and run.n_complete == 6

    frame = pd.read_parquet(out)  # plain pandas, no icbench
    assert len(frame) == 6
    assert set(COLUMNS) <= set(frame.columns)
    assert {"param_unit", "param_strategy", "param_seed"} <= set(frame.columns)
    assert frame[["placement", "wld", "seed"]].drop_duplicates().shape[0] == 6
    assert (frame["status"] == "complete").all() and frame["test_acc"].notna().all()
    assert all(len(c) == 1 for c in frame["val_acc_curve"]) and all(
        len(c) == 1 for c in frame["epoch_time_s_curve"]
    )
    assert frame["macs"].gt(0).all() and frame["latency_ms"].gt(0).all()
    assert "AMD" in frame["machine"][0] or '"cpu"' in frame["machine"][0]
    assert '"torch"' in frame["versions"][0]
    _, shared = read_table(out)
    assert shared["experiment"]["family"] == "resnet_cifar" and shared["experiment"]["epochs"] == 1
    assert "| `val_acc_curve` |" in out.with_suffix(".md").read_text()

    # Run again: nothing is retrained.
    db = f"sqlite:///{tmp_path}/runs/t/study.db"
    before = len(optuna.load_study(study_name="t", storage=db).get_trials())
    again = tabulate(study, out=out, report=False, echo=lambda _: None)
    assert again.stop_reason is None
    assert len(optuna.load_study(study_name="t", storage=db).get_trials()) == before

    # A replayed study on this real table: each trial's values are the table's for the seed it drew.
    replay = write_study(
        tmp_path,
        EXPERIMENT.replace("test: all", "test: chosen").replace(
            "execution: {",
            f"n_trials: 3\nsampler: {{name: random, seed: 0}}\nexecution: {{backend: replay, table: {out}, ",
        ),
        SPACE.replace("  seed: {type: categorical, choices: [0, 1]}\n", ""),
        name="r",
    )
    run_study(replay, report=True, echo=lambda _: None)
    rows = frame.set_index(["placement", "wld", "seed"])
    trials = optuna.load_study(study_name="r", storage=f"sqlite:///{tmp_path}/runs/r/study.db").get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 3
    for t in complete:
        row = rows.loc[(t.user_attrs["placement"], t.user_attrs["wld"], t.user_attrs["seed"])]
        assert t.values[0] == row["val_acc"]
    assert (tmp_path / "reports" / "r" / "pareto.md").exists()


MASK_SPACE = """
params:
  unit: {type: categorical, choices: [conv, ic, se]}
  sites: {type: mask, over: sites}
  seed: {type: categorical, choices: [0, 1]}
"""


def test_a_pilot_draws_the_same_placements_for_every_unit_and_keeps_the_basic_network(tmp_path: Path) -> None:
    loaded = load_study(write_study(tmp_path, EXPERIMENT.replace("budget:", "strategy: mask\nbudget:"),
                                    MASK_SPACE, name="p"))  # fmt: skip
    checked = check_study(loaded)
    rows = table_rows(loaded, Proposer(loaded, checked), checked.mask_len)
    assert len(rows) == (2 * (2**checked.mask_len - 1) + 1) * 2  # ic and se at every mask, basic, 2 seeds

    def bits(r: object) -> tuple[bool, ...]:
        return tuple(v for k, v in sorted(r.params.items()) if k.startswith("sites_"))  # type: ignore[attr-defined]

    pilot = pilot_rows(loaded, rows, 3, seed=0)
    assert len(pilot) == (2 * 3 + 1) * 2
    by_unit = {u: {bits(r) for r in pilot if r.params["unit"] == u} for u in ("ic", "se")}
    assert by_unit["ic"] == by_unit["se"] and len(by_unit["ic"]) == 3
    assert sum(1 for r in pilot if not any(bits(r))) == 2  # the basic network, once per seed
    assert [r.key for r in pilot_rows(loaded, rows, 3, seed=0)] == [r.key for r in pilot]
    assert {bits(r) for r in pilot_rows(loaded, rows, 3, seed=1)} != {bits(r) for r in pilot}
    every = 2**checked.mask_len - 1
    assert pilot_rows(loaded, rows, every) == rows  # every placement: the whole table
    with pytest.raises(ConfigError, match=f"10000 placements asked for, but the space has {every}") as e:
        pilot_rows(loaded, rows, 10_000)  # never silently the whole table
    assert e.value.field == "--pilot"
    with pytest.raises(ConfigError, match="at least 2 placements"):
        pilot_rows(loaded, rows, 1)


def test_a_pilot_trains_its_rows_then_the_full_table_trains_only_the_rest(tmp_path: Path, ray_local: None) -> None:
    """A pilot's rows are rows of the full table in the same storage: the full run does not repeat them,
    and the pilot's table carries the signal diagnostics."""
    from icbench.report import signal

    space = MASK_SPACE.replace("[conv, ic, se]", "[conv, ic]").replace("over: sites", "over: blocks")
    study = write_study(tmp_path, EXPERIMENT.replace("budget:", "strategy: mask\nbudget:"), space, name="p")
    log: list[str] = []
    run = tabulate(study, report=False, pilot=2, out=tmp_path / "p.pilot.parquet", echo=log.append)
    assert run.stop_reason is None and run.n_complete == (2 + 1) * 2
    assert any(line.startswith("pilot: 6 of the table's") for line in log)
    pilot = pd.read_parquet(tmp_path / "p.pilot.parquet")
    assert len(pilot) == 6 and pilot["wall_time_s"].gt(0).all()
    strata = signal.table_signal(pilot)
    assert [s.stratum for s in strata] == [{"unit": "ic", "wld": False}] and strata[0].n_candidates == 2
    log.clear()
    tabulate(study, report=False, out=tmp_path / "p.parquet", echo=log.append)
    full = pd.read_parquet(tmp_path / "p.parquet")
    n_masks = full["placement"].nunique() - 1
    assert any(f"6 already settled, {len(full) - 6} to run" in line for line in log), log
    assert n_masks == 7 and len(full) == (n_masks + 1) * 2  # every mask over ResNet-8's 3 blocks
    assert set(pilot["trial"]) <= set(full["trial"])  # the pilot's trials are the table's rows
