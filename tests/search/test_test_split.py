"""`evaluation.test`: which trials read the test split, and when.

With `chosen` (the default) no trial reads the test split during the search, teacher included; each saves
its final weights, and after the search the driver evaluates exactly the trials the report shows. With
`all` every trial evaluates it at the end of its training. The report says which.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
import torch
from search_helpers import write_study

from icbench.data import Split
from icbench.families import tiny_size
from icbench.report import evaluation as report_evaluation
from icbench.report.load import load_study as read_study
from icbench.search import run_study
from icbench.search.schema import load_study
from icbench.search.storage import storage_url
from icbench.search.trainable import FINAL_KEY, run_trial, trial_evaluation, weights_dir, weights_file
from icbench.training import candidate as candidate_mod
from icbench.training.candidate import END_OF_TRAINING, evaluate_saved, train_candidate
from icbench.training.loop import num_threads

FAST = {
    "dataset": "synthetic",
    "dataset_kwargs": {"n": 240, "image_size": 16, "num_classes": 4},
    "family": "resnet_cifar",
    "size": tiny_size("resnet_cifar"),
    "width": 0.5,
    "epochs": 2,
    "batch_size": 32,
    "lr": 0.05,
    "latency": False,
    "device": "cpu",  # CPU runs repeat exactly; the CUDA variant is its own test
}


class CountingSplit(Split):
    """A split that counts how often its data is read (every evaluation goes through `batches`)."""

    def __init__(self, inner: Split) -> None:
        self.inner = inner
        self.device = inner.device
        self.reads = 0

    def __len__(self) -> int:
        return len(self.inner)

    def batches(self, batch_size: int, **kwargs: Any) -> Iterator[Any]:
        self.reads += 1
        return self.inner.batches(batch_size, **kwargs)


@pytest.fixture()
def test_split_reads(monkeypatch: pytest.MonkeyPatch) -> list[CountingSplit]:
    """Every dataset `train_candidate` loads gets a counting test split; the list holds them."""
    real = candidate_mod.load_dataset
    seen: list[CountingSplit] = []

    def load(*args: Any, **kwargs: Any) -> Any:
        splits = real(*args, **kwargs)
        counting = CountingSplit(splits.test)
        seen.append(counting)
        return dataclasses.replace(splits, test=counting)

    monkeypatch.setattr(candidate_mod, "load_dataset", load)
    return seen


def run_in_process(
    monkeypatch: pytest.MonkeyPatch, candidate: dict[str, Any], evaluation: dict[str, Any]
) -> dict[str, Any]:
    """`run_trial` in this process, with Tune's `report` collected; returns the final result."""
    from ray import tune

    reports: list[dict[str, Any]] = []
    monkeypatch.setattr(tune, "report", lambda metrics, **kw: reports.append(dict(metrics)))
    with num_threads(1):
        run_trial({"candidate": candidate, "num_threads": 1, "trial_number": 7}, evaluation)
    assert reports and reports[-1][FINAL_KEY]
    return reports[-1]


def test_chosen_trial_never_reads_the_test_split_and_saves_its_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, test_split_reads: list[CountingSplit]
) -> None:
    # With WLD the trial also trains the teacher: that must keep off the test split too.
    cand = {**FAST, "cache_dir": str(tmp_path / "teachers"), "wld": {"enabled": True, "teacher_epochs": 1}}
    final = run_in_process(monkeypatch, cand, {"test": "chosen", "weights_dir": str(tmp_path / "w")})
    assert final["status"] == "complete"
    assert test_split_reads and all(s.reads == 0 for s in test_split_reads)
    assert final["test_acc"] is None and final["test_evaluated"] is None
    assert Path(weights_file(tmp_path / "w", 7)).is_file()
    assert not list((tmp_path / "w").glob(".*"))  # no temporary file left behind
    machine = json.loads(final["machine"])
    assert machine["device"] == "cpu" and machine["precision"] == "fp32" and machine["torch_threads"] == 1


def test_all_trial_evaluates_the_test_split_once_at_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, test_split_reads: list[CountingSplit]
) -> None:
    final = run_in_process(monkeypatch, dict(FAST), {"test": "all", "weights_dir": None})
    assert final["status"] == "complete"
    assert [s.reads for s in test_split_reads] == [1]
    assert 0.0 <= final["test_acc"] <= 1.0 and final["test_evaluated"] == END_OF_TRAINING
    assert not list(tmp_path.iterdir())


def test_a_failed_trial_records_its_machine_and_saves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    final = run_in_process(
        monkeypatch,
        {**FAST, "lr": 1e30, "weight_decay": 0.0},
        {"test": "chosen", "weights_dir": str(tmp_path)},
    )
    assert final["status"] == "diverged"
    assert json.loads(final["machine"])["cpu"]
    assert not Path(weights_file(tmp_path, 7)).exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_trial_records_its_gpu_cudnn_flag_and_bf16(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cand = {**FAST, "device": "cuda"}
    final = run_in_process(monkeypatch, cand, {"test": "chosen", "weights_dir": str(tmp_path)})
    assert final["status"] == "complete"
    machine = json.loads(final["machine"])
    assert machine["gpu"] == torch.cuda.get_device_name(0) and machine["cuda"] == torch.version.cuda
    assert machine["cudnn"] and machine["cudnn_benchmark"] is True and machine["precision"] == "bf16 autocast"
    later = evaluate_saved(cand, weights_file(tmp_path, 7))
    assert later["machine"]["precision"] == "bf16 autocast" and 0.0 <= later["test_acc"] <= 1.0


def test_saved_weights_give_the_end_of_training_test_accuracy(tmp_path: Path) -> None:
    path = tmp_path / "trial.pt"
    with num_threads(1):
        trained = train_candidate({**FAST, "strategy": "every_other"}, weights_path=path)
        later = evaluate_saved({**FAST, "strategy": "every_other"}, path)
    assert later["test_acc"] == trained["test_acc"]
    assert later["machine"]["device"] == "cpu"


def test_the_report_and_the_trainer_name_end_of_training_alike() -> None:
    assert END_OF_TRAINING == report_evaluation.END_OF_TRAINING


def test_default_is_chosen_and_weights_go_under_the_run_folder(tmp_path: Path) -> None:
    path = write_study(tmp_path, "n_trials: 1\n", "params:\n  unit: {type: categorical, choices: [ic]}\n")
    loaded = load_study(path)
    assert loaded.config.evaluation.test == "chosen"
    assert weights_dir(loaded) == str((tmp_path / "runs" / "s" / "weights").resolve())
    assert trial_evaluation(loaded)["weights_dir"] == weights_dir(loaded)
    for setting in ("all", "none"):
        other = load_study(path, {"evaluation.test": setting})
        assert weights_dir(other) is None and trial_evaluation(other)["test"] == setting


# ------------------------------------------------------------------------------------------------ studies

TINY = """
dataset: {name: mnist5k}
family: {name: resnet_cifar, size: resnet8, width: 0.5}
budget: {epochs: 1}
training: {batch_size: 256}
execution: {max_concurrent: 2, cpus_per_trial: 1}
sampler: {name: random, seed: 0}
"""
SPACE = """
params:
  unit: {type: categorical, choices: [ic, conv]}
  lr: {type: categorical, choices: [0.1, 1.0e-4]}
"""
# Equal MACs (ic adds no multiply-accumulates), so ic at lr 1e-4 is dominated by ic at lr 0.1 or the
# basic network: off the front, and not a basic reference.
ENQUEUE = "enqueue: [{unit: conv, lr: 0.1}, {unit: ic, lr: 0.1}, {unit: ic, lr: 1.0e-4}]\n"


def study_trials(path: Path) -> tuple[optuna.Study, pd.DataFrame, list[int]]:
    loaded = load_study(path)
    url = storage_url(loaded)
    data = read_study(url, loaded.config.name)
    assert data.trials is not None
    shown = report_evaluation.shown_trials(data.trials, data.objectives)
    return optuna.load_study(study_name=loaded.config.name, storage=url), data.trials, shown


@pytest.mark.slow
@pytest.mark.xdist_group("ray")
def test_chosen_study_evaluates_only_the_shown_trials_after_the_search(
    tmp_path: Path, ray_local: None
) -> None:
    path = write_study(tmp_path, TINY + "n_trials: 2\n" + ENQUEUE, SPACE)
    lines: list[str] = []
    run_study(path, report=False, echo=lines.append)
    study, trials, shown = study_trials(path)
    assert 0 in shown  # the basic network, as the reference row
    evaluated = trials.loc[trials["test_acc"].notna(), "number"].tolist()
    assert sorted(evaluated) == sorted(shown)
    assert (trials.loc[trials["test_acc"].notna(), "test_evaluated"] == report_evaluation.AFTER_SEARCH).all()
    assert any(f"test split: evaluated {len(shown)} trial(s)" in line for line in lines)

    # A resume that completes the study: the new, dominated trial is never evaluated on the test split,
    # and the trials evaluated before are not evaluated again.
    before = {k: v for k, v in study.user_attrs.items() if k.startswith(report_evaluation.TEST_EVAL_PREFIX)}
    run = run_study(path, overrides={"n_trials": 3}, echo=lines.append)
    study, trials, shown_after = study_trials(path)
    assert run.n_complete == 3 and shown_after == shown
    after = {k: v for k, v in study.user_attrs.items() if k.startswith(report_evaluation.TEST_EVAL_PREFIX)}
    assert after == before and len(after) == len(shown)
    by_number = {t.number: t for t in study.get_trials()}
    assert by_number[2].params == {"unit": "ic", "lr": 1.0e-4} and 2 not in shown
    for t in by_number.values():  # no trial measured the test split itself: the driver did, for the shown
        record = study.user_attrs.get(f"{report_evaluation.TEST_EVAL_PREFIX}{t.number}")
        if t.number in shown:  # ... and wrote it on the trial too, for per-trial views (optuna-dashboard)
            assert t.user_attrs["test_acc"] == record["test_acc"] is not None
            assert t.user_attrs["test_evaluated"] == report_evaluation.AFTER_SEARCH
            assert t.user_attrs["test_evaluated_at"] == record["at"]
        else:
            assert t.user_attrs["test_acc"] is None and t.user_attrs["test_evaluated"] is None
        assert json.loads(t.user_attrs["machine"])["cpu"]
    assert math.isnan(trials.set_index("number").loc[2, "test_acc"])
    for n in shown:
        record = study.user_attrs[f"{report_evaluation.TEST_EVAL_PREFIX}{n}"]
        assert 0.0 <= record["test_acc"] <= 1.0 and record["evaluated"] == report_evaluation.AFTER_SEARCH
        assert record["at"] and Path(record["weights"]).is_file()
    assert study.user_attrs[report_evaluation.EVALUATION_ATTR] == {"test": "chosen"}

    report = Path(run.report_dir or "")
    csv = pd.read_csv(report / "trials.csv").set_index("number")
    assert [n for n in csv.index if pd.notna(csv.loc[n, "test_acc"])] == sorted(shown)
    assert csv.loc[0, "test_evaluated"] == report_evaluation.AFTER_SEARCH
    pareto_md = (report / "pareto.md").read_text()
    listed = ", ".join(f"#{n}" for n in sorted(shown))
    assert f"{len(shown)} trial(s) ({listed})" in pareto_md and "after the search" in pareto_md
    assert "No trial read the test split during the search." in pareto_md
    assert f"after the search for the {len(shown)} listed trials only" in (report / "pareto.tex").read_text()
    summary = (report / "summary.md").read_text()
    assert "No trial read the test split during the search." in summary
    assert "Trials ran on 1 distinct machine" in summary


@pytest.mark.slow
@pytest.mark.xdist_group("ray")
def test_all_study_every_trial_has_test_accuracy(tmp_path: Path, ray_local: None) -> None:
    path = write_study(tmp_path, TINY + "n_trials: 2\nevaluation: {test: all}\n" + ENQUEUE, SPACE)
    run = run_study(path, echo=lambda s: None)
    study, trials, _ = study_trials(path)
    assert run.n_complete == 2
    for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        assert 0.0 <= t.user_attrs["test_acc"] <= 1.0 and t.user_attrs["test_evaluated"] == END_OF_TRAINING
    assert not any(k.startswith(report_evaluation.TEST_EVAL_PREFIX) for k in study.user_attrs)
    assert not (tmp_path / "runs" / "s" / "weights").exists()
    ablation = (Path(run.report_dir or "") / "ablation.md").read_text()
    assert (
        "evaluated by every COMPLETE trial (2) at the end of its own training (evaluation.test: all)"
        in ablation
    )


def test_an_evaluation_after_the_search_is_also_set_on_the_finished_trial(tmp_path: Path) -> None:
    """optuna-dashboard and `trials_dataframe()` show a trial's own user attributes: the driver's test
    accuracy is written there too (database storages), not only as the study attribute `test_eval:<n>`."""
    from icbench.search.evaluation import set_on_trial

    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=url, study_name="s", directions=["maximize"])
    trial = study.ask()
    trial.set_user_attr("test_acc", None)
    study.tell(trial, 0.9)
    record = {"test_acc": 0.93, "evaluated": report_evaluation.AFTER_SEARCH, "at": "2026-12-07T01:00:00+00:00"}
    assert set_on_trial(study, study.trials[0], record)
    fresh = optuna.load_study(study_name="s", storage=url).trials[0]
    assert fresh.user_attrs == {"test_acc": 0.93, "test_evaluated": report_evaluation.AFTER_SEARCH,
                                "test_evaluated_at": "2026-12-07T01:00:00+00:00"}  # fmt: skip
    assert fresh.state == optuna.trial.TrialState.COMPLETE and fresh.values == [0.9]
    assert not set_on_trial(study, study.trials[0], {**record, "test_acc": None})  # nothing to show

    from optuna.storages.journal import JournalFileBackend, JournalStorage

    journal = optuna.create_study(storage=JournalStorage(JournalFileBackend(str(tmp_path / "j.log"))))
    journal.optimize(lambda t: 1.0, n_trials=1)
    assert not set_on_trial(journal, journal.trials[0], record)  # a journal cannot change a finished trial
