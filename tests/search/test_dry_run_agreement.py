"""The dry run (`icbench validate`) and the run agree on every study: the dry run's exit status is the
run's, up to the point where training would start.

The run is the real `icbench run` up to its first trial: `ICBENCH_STOP_BEFORE_TRAINING` makes it stop
right after every check and the opening of the study, before anything is trained. No check is replaced:
both commands call `check_study` and `check_run` on this machine as it is (no GPU here, no CIFAR-10 under
data/), over every shipped study and every case of the bad-input corpus.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from icbench.cli import main
from icbench.search.runner import STOP_BEFORE_TRAINING_ENV

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "reliability" / "bad_inputs"
CASES: dict[str, dict[str, Any]] = yaml.safe_load((CORPUS / "cases.yaml").read_text())["cases"]
SHIPPED = sorted(p.stem for p in (REPO / "studies").glob("*.yaml"))


def _verdicts(
    study: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str
) -> tuple[int, str, int, str]:
    """(dry run status, its stderr, run status, its stderr), the dry run first: the run writes storage."""
    capsys.readouterr()
    dry = main(["validate", study, *args])
    dry_err = capsys.readouterr().err
    monkeypatch.setenv(STOP_BEFORE_TRAINING_ENV, "1")
    run = main(["run", study, "--no-report", *args])
    run_out, run_err = capsys.readouterr()
    if run == 0:  # it must have stopped where training starts, not trained
        assert "stopped before training" in run_out, run_out
    return dry, dry_err, run, run_err


@pytest.fixture
def shipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shipped studies, search spaces and benchmark tables, in a fresh working directory (no data/,
    no runs/)."""
    for folder in ("studies", "search_spaces"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    (tmp_path / "tables").mkdir()
    for table in (REPO / "tables").glob("*.parquet"):
        shutil.copy(table, tmp_path / "tables")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("name", SHIPPED)
def test_the_dry_run_agrees_with_the_run_on_every_shipped_study(
    name: str, shipped: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    dry, dry_err, run, run_err = _verdicts(f"studies/{name}.yaml", capsys, monkeypatch)
    assert dry == run, f"dry run {dry} ({dry_err.strip()}) but run {run} ({run_err.strip()})"
    assert dry_err == run_err  # the same refusal, word for word


def test_a_missing_cifar10_fails_both_naming_layout_and_download(
    shipped: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CIFAR-10 study on this machine (no data/cifar10): both refuse it on `dataset.root`, naming the
    expected files and the command that downloads them."""
    dry, dry_err, run, _ = _verdicts("studies/cifar10_resnet20.yaml", capsys, monkeypatch)
    assert dry == run == 2
    assert "field 'dataset.root'" in dry_err
    assert "cifar-10-batches-py/ with data_batch_1" in dry_err and "test_batch" in dry_err
    assert "icbench data cifar10 --root data/cifar10" in dry_err


def test_a_gpu_per_trial_on_a_machine_without_one_fails_both(
    shipped: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the refusal under test cannot happen here")
    gpu = "--set=execution.gpus_per_trial=1"
    dry, dry_err, run, _ = _verdicts("studies/quickstart.yaml", capsys, monkeypatch, gpu)
    assert dry == run == 2, dry_err
    assert "execution.gpus_per_trial" in dry_err


@pytest.fixture
def corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    dst = tmp_path / "corpus"
    shutil.copytree(CORPUS, dst, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.chdir(dst)
    return dst


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_dry_run_agrees_with_the_run_on_every_bad_input(
    name: str, corpus: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sys.path.insert(0, str(REPO / "tests" / "reliability"))
    try:
        from test_bad_inputs import _block_imports, _make_study_db
    finally:
        sys.path.pop(0)
    case = CASES[name]
    if case.get("setup") == "resume_original":
        _make_study_db(corpus)
    if case.get("block_imports"):
        _block_imports(case["block_imports"], monkeypatch)
    dry, dry_err, run, run_err = _verdicts(f"studies/{name}.yaml", capsys, monkeypatch)
    assert dry == run == 2, f"dry run {dry} ({dry_err.strip()}) but run {run} ({run_err.strip()})"
    assert dry_err == run_err
