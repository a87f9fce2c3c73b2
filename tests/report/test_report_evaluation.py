"""What reports say about the test split (which trials were evaluated on it, how, when) and the machines
trials ran on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
from report_fixtures import SEARCH_FRONT, SEARCH_ROWS, add_trial, metrics, study_attrs

from icbench.report import build_report
from icbench.report.evaluation import (
    AFTER_SEARCH,
    EVALUATION_ATTR,
    TEST_EVAL_PREFIX,
    shown_trials,
    statement_on_test,
)
from icbench.report.load import load_study

CPU_BOX = {
    "cpu": "AMD EPYC 7B13", "arch": "x86_64", "cores": 2, "torch_threads": 1, "os": "Linux 6.1",
    "device": "cpu", "gpu": None, "cuda": None, "cudnn": None, "cudnn_benchmark": None,
    "precision": "fp32", "torch": "2.14.1", "python": "3.11.7",
}  # fmt: skip
GPU_BOX = {
    **CPU_BOX, "cpu": "Intel Xeon Platinum 8480+", "cores": 16, "torch_threads": 8, "device": "cuda:0",
    "gpu": "NVIDIA H200", "cuda": "13.0", "cudnn": "9.10.2", "cudnn_benchmark": True,
    "precision": "bf16 autocast",
}  # fmt: skip


def make_study(
    storage: str,
    *,
    setting: str | None,
    trial_tests: bool,
    machine: Any = None,
    name: str = "search",
) -> optuna.Study:
    """The search fixture's trials, with their own test accuracy (`trial_tests`) or none, and the setting."""
    study = optuna.create_study(study_name=name, storage=storage, directions=["maximize", "minimize"])
    study_attrs(study, "TPESampler", len(SEARCH_ROWS))
    if setting is not None:
        study.set_user_attr(EVALUATION_ATTR, {"test": setting})
    for i, (state, val, macs, unit, strategy, placement, seed, extra) in enumerate(SEARCH_ROWS):
        attrs = metrics(val, macs, unit=unit, strategy=strategy, placement=placement, seed=seed, **extra)
        if not trial_tests or state != optuna.trial.TrialState.COMPLETE:  # only a COMPLETE trial has one
            attrs.update(test_acc=None, test_evaluated=None)
        if machine is not None and not attrs.get("rejected"):
            attrs["machine"] = machine(i)
        params = {"unit": unit, "strategy": strategy, "lr": 0.05, "seed": seed}
        add_trial(study, state=state, params=params, attrs=attrs, start_s=60 * i, duration_s=50 + i)
    return study


def evaluate_shown(study: optuna.Study, storage: str) -> list[int]:
    """What the driver does after a `chosen` search: a test accuracy for each trial the report shows."""
    data = load_study(storage, study.study_name)
    assert data.trials is not None
    shown = shown_trials(data.trials, data.objectives)
    for n in shown:
        study.set_user_attr(
            f"{TEST_EVAL_PREFIX}{n}",
            {"test_acc": 0.5 + n / 100, "evaluated": AFTER_SEARCH, "at": "2026-12-02T10:30:00+00:00"},
        )
    return shown


def test_the_shown_trials_are_pareto_md_rows(search_url: str, tmp_path: Path) -> None:
    data = load_study(search_url, "search")
    assert data.trials is not None
    report = build_report(search_url, "search", tmp_path / "r")
    rows = pd.read_csv(report.files["pareto.csv"])
    assert (
        sorted(shown_trials(data.trials, data.objectives))
        == sorted(rows["number"])
        == sorted([0, *SEARCH_FRONT])
    )


def test_chosen_study_reports_test_accuracy_only_for_the_shown_trials(db_url: str, tmp_path: Path) -> None:
    study = make_study(db_url, setting="chosen", trial_tests=False)
    shown = evaluate_shown(study, db_url)
    out = build_report(db_url, "search", tmp_path / "r").out_dir

    csv = pd.read_csv(out / "trials.csv").set_index("number")
    assert sorted(csv.index[csv["test_acc"].notna()]) == sorted(shown)
    assert (csv.loc[shown, "test_evaluated"] == AFTER_SEARCH).all()
    assert csv.loc[shown[0], "test_acc"] == pytest.approx(0.5 + shown[0] / 100)
    assert csv.loc[[n for n in csv.index if n not in shown], "test_evaluated"].isna().all()

    listed = ", ".join(f"#{n}" for n in sorted(shown))
    sentence = (
        f"{len(shown)} trial(s) ({listed}), listed in pareto.md when they were evaluated (the Pareto front and "
        "the basic reference networks, chosen on validation accuracy), were evaluated on the test split after "
        "the search on 2026-12-02 10:30 UTC, from each trial's saved final weights (evaluation.test: chosen). "
        "No trial read the test split during the search."
    )
    for name in ("pareto.md", "summary.md", "ablation.md"):
        assert sentence in (out / name).read_text(), name
    pareto_md = (out / "pareto.md").read_text()
    assert "| 0 | resnet_cifar | resnet8 | conv | `conv:000000` | 90.00 | 50.00 | - | 10.00 |" in pareto_md
    tex = (out / "pareto.tex").read_text()
    assert f"evaluated after the search for the {len(shown)} listed trials only" in tex
    # Cells where only some trials were evaluated show no test mean: it would not compare with the others.
    ablation = (out / "ablation.md").read_text()
    assert "| ic | 3 | 2 | 92.33 ± 1.15 | - |" in ablation
    assert "only where every trial of the cell was evaluated" in ablation


def test_chosen_study_before_its_search_ended_says_nothing_was_evaluated_yet(
    db_url: str, tmp_path: Path
) -> None:
    make_study(db_url, setting="chosen", trial_tests=False)
    out = build_report(db_url, "search", tmp_path / "r").out_dir
    assert pd.read_csv(out / "trials.csv")["test_acc"].isna().all()
    for name in ("pareto.md", "summary.md"):
        text = (out / name).read_text()
        assert "no trial has been evaluated on the test split yet (evaluation.test: chosen)" in text, name
    assert (
        "| 0 | resnet_cifar | resnet8 | conv | `conv:000000` | 90.00 | - | - | 10.00 |"
        in (out / "pareto.md").read_text()
    )


def test_all_study_says_every_complete_trial_was_evaluated_at_the_end_of_training(
    db_url: str, tmp_path: Path
) -> None:
    make_study(db_url, setting="all", trial_tests=True)
    out = build_report(db_url, "search", tmp_path / "r").out_dir
    n_complete = sum(1 for row in SEARCH_ROWS if row[0] == optuna.trial.TrialState.COMPLETE)
    sentence = (
        f"Test accuracy: evaluated by every COMPLETE trial ({n_complete}) at the end of its own training "
        "(evaluation.test: all); selection used validation accuracy only."
    )
    for name in ("pareto.md", "summary.md", "ablation.md"):
        assert sentence in (out / name).read_text(), name
    csv = pd.read_csv(out / "trials.csv")
    complete = csv[csv["state"] == "COMPLETE"]
    assert complete["test_acc"].notna().all() and (complete["test_evaluated"] == "end of training").all()
    assert "| ic | 3 | 2 | 92.33 ± 1.15 | 91.33 ± 1.15 |" in (out / "ablation.md").read_text()


def test_a_study_recorded_before_the_setting_reads_as_end_of_training(search_url: str) -> None:
    data = load_study(search_url, "search")
    assert data.trials is not None
    # The fixture's PRUNED #8 and FAIL #9 carry one too.
    assert (
        "evaluated by every COMPLETE trial (9) (and 2 trial(s) that did not complete) at the end of its own "
        "training; selection" in statement_on_test(data.trials, None)
    )


def test_none_study_says_the_test_split_was_never_read(db_url: str) -> None:
    make_study(db_url, setting="none", trial_tests=False)
    data = load_study(db_url, "search")
    assert data.trials is not None
    assert statement_on_test(data.trials, "none") == (
        "Test accuracy: not evaluated (evaluation.test: none); no trial read the test split."
    )


def test_the_environment_lists_each_machine_with_its_trial_count(db_url: str, tmp_path: Path) -> None:
    # Trials 0-5 on a 2-core CPU box; 6-9 and 11 on a GPU box (half as JSON text, as Ray delivers it);
    # trial 10 was rejected and never trained.
    def machine(i: int) -> Any:
        if i < 6:
            return CPU_BOX
        return json.dumps(GPU_BOX) if i % 2 else GPU_BOX

    make_study(db_url, setting="all", trial_tests=True, machine=machine)
    out = build_report(db_url, "search", tmp_path / "r").out_dir
    summary = (out / "summary.md").read_text()
    env = summary.split("## Environment", 1)[1]
    assert "Trials ran on 2 distinct machines" in env
    assert "1 trial(s) recorded no machine" in env
    assert "| M1 | AMD EPYC 7B13 | 2 | 1 | - | - | - | - | fp32 | 2.14.1 | Linux 6.1 | 6 |" in env
    assert (
        "| M2 | Intel Xeon Platinum 8480+ | 16 | 8 | NVIDIA H200 | 13.0 | 9.10.2 | on | bf16 autocast | 2.14.1 "
        "| Linux 6.1 | 5 |" in env
    )
    assert "Driver (the process that ran the search" in env and "cpu (2 threads)" in env
    csv = pd.read_csv(out / "trials.csv").set_index("number")
    assert csv.loc[0, "machine"].startswith("AMD EPYC 7B13 (x86_64); 2 cores; 1 torch threads; fp32")
    assert csv.loc[7, "machine"].startswith(
        "NVIDIA H200 (cuda:0), CUDA 13.0, cuDNN 9.10.2, cudnn.benchmark on"
    )
    assert csv.loc[6, "machine"] == csv.loc[7, "machine"]  # a dict and its JSON text are one machine
    assert pd.isna(csv.loc[10, "machine"])


def test_a_study_without_machine_records_says_so(search_url: str, tmp_path: Path) -> None:
    summary = (build_report(search_url, "search", tmp_path / "r").out_dir / "summary.md").read_text()
    assert "Machines: no trial recorded its machine." in summary
