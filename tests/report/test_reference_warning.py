"""summary.md warns when the study enqueues a basic (reference) network and none is COMPLETE."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState
from report_fixtures import add_trial, metrics, study_attrs

from icbench.report import build_report

WARNING = "the study's reference network"


def _study(url: str, *, basic_state: TrialState, enqueue: bool = True) -> None:
    study = optuna.create_study(study_name="ref", storage=url, directions=["maximize", "minimize"])
    study_attrs(study, "TPESampler", 2)
    if enqueue:
        study.set_user_attr("study_yaml", "name: ref\nenqueue:\n  - {unit: conv, strategy: all}\n")
    for i, (unit, state) in enumerate([("ic", TrialState.COMPLETE), ("conv", basic_state)]):
        status = "complete" if state == TrialState.COMPLETE else "interrupted"
        attrs = metrics(0.8 if state == TrialState.COMPLETE else None, 1e6 + i, unit=unit, strategy="all",
                        placement=f"{unit}:11", status=status)  # fmt: skip
        params = {"unit": unit, "strategy": "all", "lr": 0.05, "seed": 0}
        add_trial(study, state=state, params=params, attrs=attrs, start_s=60 * i, duration_s=50)


def _summary(tmp_path: Path, **kwargs: object) -> str:
    tmp_path.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    _study(url, **kwargs)  # type: ignore[arg-type]
    build_report(url, "ref", tmp_path / "report")
    return (tmp_path / "report" / "summary.md").read_text()


def test_missing_basic_network_is_warned(tmp_path: Path) -> None:
    assert WARNING in _summary(tmp_path, basic_state=TrialState.FAIL)


def test_complete_basic_network_or_none_enqueued_is_not_warned(tmp_path: Path) -> None:
    assert WARNING not in _summary(tmp_path / "a", basic_state=TrialState.COMPLETE)
    assert WARNING not in _summary(tmp_path / "b", basic_state=TrialState.FAIL, enqueue=False)
