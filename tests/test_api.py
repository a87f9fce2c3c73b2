"""The Python API (`icbench.run_study`, `load_trials`, `build_candidate`, `read_table`) and the `icbench`
command (console script and `python -m icbench`)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from replay_helpers import make_table

import icbench
from icbench.errors import ConfigError
from icbench.search import load_study
from icbench.search.schema import write_study_files as write_study
from icbench.units import UNITS

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = """
dataset: {name: synthetic, kwargs: {n: 400, image_size: 16, in_chans: 1}}
family: {name: resnet_cifar, size: resnet8, width: 0.25}
objectives: [val_acc, macs]
budget: {epochs: 2}
"""
SPACE = """
params:
  unit: {type: categorical, choices: [conv, ic]}
"""


def _curve(placement: str, wld: bool, seed: int) -> tuple[list[float], list[float]]:
    top = 0.9 if placement.startswith("ic") else 0.8
    return [top - 0.1, top + 0.001 * seed], [1.0, 1.0]


@pytest.fixture
def replay_study(tmp_path: Path) -> Path:
    """A replay study over a table made by hand: the API runs a real study without training."""
    live = write_study(tmp_path, "live", EXPERIMENT, SPACE)
    table = make_table(tmp_path / "t.parquet", load_study(live), [0, 1], _curve)
    body = (
        EXPERIMENT
        + f"n_trials: 2\nsampler: {{name: random, seed: 0}}\nexecution: {{backend: replay, table: {table}}}\n"
    )
    return write_study(tmp_path, "r", body, SPACE)


def test_import_icbench_is_light() -> None:
    code = "import sys, icbench; print(json.dumps([m for m in ('torch', 'ray', 'optuna', 'pandas') if m in sys.modules]))"
    out = subprocess.run(
        [sys.executable, "-c", "import json; " + code], capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == []
    assert set(icbench.__all__) == {"run_study", "load_trials", "build_candidate", "read_table", "StudyRun", "BenchTable"}
    # Tab completion in a notebook asks dir(): the lazy names are listed, the module's internals are not.
    assert set(icbench.__all__) <= set(dir(icbench)) and "TYPE_CHECKING" not in dir(icbench)


def test_run_study_and_load_trials(replay_study: Path) -> None:
    run = icbench.run_study(replay_study, report=False, quiet=True)
    assert isinstance(run, icbench.StudyRun) and run.name == "r"
    assert run.counts == {
        "complete": run.n_complete, "pruned": 0, "failed": 0, "rejected": run.n_rejected, "duplicate": run.n_duplicate
    }  # fmt: skip
    assert run.counts["complete"] == 2
    trials = icbench.load_trials(replay_study)
    complete = trials[trials["state"] == "COMPLETE"]
    assert sorted(complete["unit"]) == ["conv", "ic"]
    assert {"val_acc", "macs", "unit", "placement", "unit_delta"} <= set(trials.columns)
    assert set(complete["val_acc"].round(3)) <= {0.8, 0.801, 0.9, 0.901}
    # The same trials by study name and storage URL.
    again = icbench.load_trials("r", storage=run.storage_url)
    assert list(again["number"]) == list(trials["number"])
    # Overrides as `--set` gives them: a bad one is refused before anything is written.
    with pytest.raises(ConfigError, match="n_trials"):
        icbench.run_study(replay_study, overrides={"n_trials": 0}, quiet=True)


def test_build_candidate_places_the_unit_as_a_trial_does() -> None:
    model = icbench.build_candidate("resnet_cifar", "resnet8", dataset="mnist5k", placement="ic:0110011", width=0.5)
    from icbench.training.candidate import build_candidate

    same, _, _ = build_candidate(
        {"family": "resnet_cifar", "size": "resnet8", "width": 0.5, "placement": "ic:0110011"}
    )
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), same.state_dict().values(), strict=True)
    )
    units = [n for n, m in model.named_modules() if isinstance(m, UNITS.get("ic"))]
    assert units == ["layer1.0.conv1", "layer1.0.conv2", "layer3.0.conv1", "layer3.0.conv2"]
    with pytest.raises(Exception, match="ic_duel"):
        icbench.build_candidate("resnet_cifar", "resnet8", dataset="mnist5k", unit="ic_duel")


def test_build_candidate_input_shape_from_a_dataset_or_given() -> None:
    """cifar10's shape without its data on disk; any shape through `input_shape`; the default says so."""
    cifar = icbench.build_candidate("resnet_cifar", "resnet8", dataset="cifar10")
    assert cifar.icbench_spec.input_shape == (3, 32, 32) and cifar.icbench_spec.num_classes == 10
    assert cifar(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    given = icbench.build_candidate("resnet_cifar", "resnet8", input_shape=(3, 16, 16), num_classes=5)
    assert given.icbench_spec.input_shape == (3, 16, 16) and given(torch.zeros(1, 3, 16, 16)).shape == (1, 5)
    with pytest.warns(UserWarning, match="built for mnist5k"):
        default = icbench.build_candidate("resnet_cifar", "resnet8")
    assert default.icbench_spec.input_shape == (1, 28, 28)
    with pytest.raises(ConfigError, match="not both"):
        icbench.build_candidate("resnet_cifar", "resnet8", dataset="cifar10", input_shape=(3, 32, 32))
    with pytest.raises(ConfigError, match="equal height and width"):
        icbench.build_candidate("resnet_cifar", "resnet8", input_shape=(3, 32, 16))


def test_read_table_reads_the_shipped_table() -> None:
    table = icbench.read_table(REPO / "tables" / "icbench_resnet8_mnist5k.parquet")
    assert isinstance(table, icbench.BenchTable)
    frame, shared = table
    assert len(frame) == 762 and {"placement", "seed", "val_acc", "val_acc_curve"} <= set(frame.columns)
    assert shared["experiment"]["dataset"] == "mnist5k"


@pytest.mark.parametrize("command", ["console script", "python -m"])
def test_the_icbench_command(command: str, tmp_path: Path) -> None:
    """`icbench validate` and `python -m icbench validate` work like `run_study.py validate`; bad input is
    one line and exit 2."""
    if command == "console script":
        exe = shutil.which("icbench", path=str(Path(sys.executable).parent))
        assert exe is not None, "the `icbench` console script is not installed (pip install -e .)"
        prefix = [exe]
    else:
        prefix = [sys.executable, "-m", "icbench"]
    ok = subprocess.run([*prefix, "validate", str(REPO / "studies" / "quickstart.yaml")], capture_output=True,
                        text=True, cwd=tmp_path, timeout=300)  # fmt: skip
    assert ok.returncode == 0 and "dry run: nothing trained, nothing written" in ok.stdout, ok.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nsearch_space: nowhere.yaml\n")
    out = subprocess.run(
        [*prefix, "run", str(bad)], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "search_space" in out.stderr, out.stderr
    assert not (tmp_path / "runs").exists()
