"""Runner guards that act before Ray starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from filelock import FileLock
from search_helpers import write_study

from icbench.errors import IcbenchError
from icbench.search import run_study

STUDY = """
dataset: {name: mnist5k}
family: {name: resnet_cifar, size: resnet8, width: 0.5}
budget: {epochs: 1}
n_trials: 1
"""
SPACE = """
params:
  unit: {type: categorical, choices: [ic, conv]}
"""


def test_a_second_driver_of_the_same_study_is_refused(tmp_path: Path) -> None:
    path = write_study(tmp_path, STUDY, SPACE)
    lock = FileLock(str(tmp_path / "runs" / "s" / "driver.lock"))
    (tmp_path / "runs" / "s").mkdir(parents=True)
    with lock, pytest.raises(IcbenchError, match="already being run by another process"):
        run_study(path, report=False, echo=lambda s: None)
    assert not (tmp_path / "runs" / "s" / "study.db").exists()
