"""Per-epoch tracking (`execution.tracking`): TensorBoard event files under runs/<study>/tensorboard/trial_<n>/
and MLflow runs in a local file store, each read back with its own tool's reader (tensorboard's
EventAccumulator, MLflow's client); the live progress line and its ETA."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from icbench.errors import ConfigError
from icbench.search import load_study
from icbench.search.executors.progress import Progress
from icbench.search.schema import write_study_files as write_study
from icbench.search.tracking import Tracking, mlflow_uri, tensorboard_dir

EXPERIMENT = """
dataset: {name: synthetic, kwargs: {n: 200, image_size: 16, in_chans: 1}}
family: {name: resnet_cifar, size: resnet8, width: 0.25}
training: {batch_size: 64}
budget: {epochs: 3}
"""
SPACE = """
params:
  unit: {type: categorical, choices: [conv, ic]}
"""


def _scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag of one event-file folder, as (step, value), read by TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _curve(n: int, epochs: int) -> list[dict[str, Any]]:
    return [{"epoch": e, "val_acc": 0.5 + 0.01 * n + 0.1 * e, "train_loss": 2.0 / e, "epoch_time_s": 0.2}
            for e in range(1, epochs + 1)]  # fmt: skip


def _loaded(tmp_path: Path, execution: str = "") -> Any:
    return load_study(write_study(tmp_path, "track", EXPERIMENT + execution, SPACE))


def test_tensorboard_is_on_by_default_and_mlflow_is_opt_in(tmp_path: Path) -> None:
    assert _loaded(tmp_path).config.execution.tracking == ["tensorboard"]
    loaded = _loaded(tmp_path, "execution: {tracking: [tensorboard, mlflow]}\n")
    assert mlflow_uri(loaded) == f"sqlite:///{(tmp_path / 'runs' / 'track' / 'mlflow.db').resolve()}"
    with pytest.raises(ConfigError, match="mlflow_uri is only read"):
        _loaded(tmp_path, "execution: {mlflow_uri: file:///tmp/x}\n")
    with pytest.raises(ConfigError, match="execution.tracking"):
        _loaded(tmp_path, "execution: {tracking: [wandb]}\n")


def test_every_epoch_of_every_trial_is_written_once(tmp_path: Path) -> None:
    """Epochs arrive as intermediate results, except the last, which comes with the trial's end (its curve):
    each epoch is one scalar per metric, none twice, none missing; a trial that never reported an epoch
    (a replay, or a driver that resumed) is written from its curve."""
    loaded = _loaded(tmp_path)
    tracking = Tracking(loaded)
    for n in (0, 1):
        curve = _curve(n, 3)
        for record in curve[:2]:
            tracking.epoch(n, {"unit": "ic"}, record)
        tracking.epoch(n, {"unit": "ic"}, curve[1])  # the same epoch again: written once
        tracking.end(n, {"unit": "ic"}, "complete", {"curve": curve, "val_acc": 0.8, "macs": 1e6})
    tracking.end(2, {"unit": "conv"}, "failed", {"curve": _curve(2, 2)})  # no intermediate result
    tracking.close()

    root = tensorboard_dir(loaded)
    assert sorted(p.name for p in root.iterdir()) == ["trial_0", "trial_1", "trial_2"]
    for n, epochs in ((0, 3), (1, 3), (2, 2)):
        scalars = _scalars(root / f"trial_{n}")
        assert set(scalars) == {"val_acc", "train_loss", "epoch_time_s"}
        assert [step for step, _ in scalars["val_acc"]] == list(range(1, epochs + 1))
        expected = [r["val_acc"] for r in _curve(n, epochs)]
        assert [v for _, v in scalars["val_acc"]] == pytest.approx(expected)


def test_mlflow_gets_one_run_per_trial_with_params_epochs_and_final_metrics(tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    loaded = _loaded(tmp_path, "execution: {tracking: [mlflow]}\n")
    tracking = Tracking(loaded)
    for n in (0, 1):
        curve = _curve(n, 3)
        tracking.epoch(n, {"unit": "ic", "lr": 0.1}, curve[0])
        tracking.end(n, {"unit": "ic", "lr": 0.1}, "complete", {"curve": curve, "val_acc": 0.8 + n, "macs": 2e6})
    tracking.close()
    assert not tensorboard_dir(loaded).exists()  # not asked for

    client = MlflowClient(tracking_uri=mlflow_uri(loaded))
    experiment = client.get_experiment_by_name("track")
    runs = sorted(client.search_runs([experiment.experiment_id]), key=lambda r: r.info.run_name)
    assert [r.info.run_name for r in runs] == ["trial_0", "trial_1"]
    for n, run in enumerate(runs):
        assert run.data.params == {"unit": "ic", "lr": "0.1"}
        assert run.info.status == "FINISHED" and run.data.tags["icbench.status"] == "complete"
        history = client.get_metric_history(run.info.run_id, "val_acc")
        assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
            (r["epoch"], pytest.approx(r["val_acc"])) for r in _curve(n, 3)
        ]
        assert run.data.metrics["final_val_acc"] == pytest.approx(0.8 + n)
        assert run.data.metrics["final_macs"] == 2e6


def test_a_failing_backend_is_said_once_and_switched_off(tmp_path: Path) -> None:
    loaded = _loaded(tmp_path)
    said: list[str] = []
    tracking = Tracking(loaded, warn=said.append)

    class Broken:
        def start(self, *args: Any) -> None:
            pass

        def epoch(self, *args: Any) -> None:
            raise OSError("disk full")

    tracking.sinks["tensorboard"] = Broken()
    tracking.epoch(0, {}, _curve(0, 1)[0])
    tracking.epoch(0, {}, {**_curve(0, 2)[1]})
    assert len(said) == 1 and "tensorboard is off" in said[0] and "disk full" in said[0]
    assert tracking.sinks == {}


#: A tracked trial whose TensorBoard file stops taking bytes (/dev/full) with bytes still in its buffer.
FULL_DISK_PROBE = """
import sys
from icbench.search import load_study
from icbench.search.tracking import Tracking

tracking = Tracking(load_study(sys.argv[1]), warn=print)
tracking.epoch(0, {"unit": "ic"}, {"epoch": 1, "val_acc": 0.5})
record = tracking.sinks["tensorboard"].writers[0].file_writer.event_writer._ev_writer._py_recordio_writer
record._writer = open("/dev/full", "wb")
record._writer.write(b"pending")
tracking.epoch(0, {"unit": "ic"}, {"epoch": 2, "val_acc": 0.6})
print("sinks left:", sorted(tracking.sinks))
"""


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full to stand for a full disk")
def test_a_tensorboard_writer_on_a_full_disk_is_dropped_without_a_traceback_at_exit(tmp_path: Path) -> None:
    """After the failed write the study says one line; tensorboardX's own exit handler and writer thread
    must not print a traceback of the same failure when the process ends."""
    study = write_study(tmp_path, "track", EXPERIMENT, SPACE)
    done = subprocess.run(
        [sys.executable, "-c", FULL_DISK_PROBE, str(study)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "tensorboard is off for the rest of this run (OSError: [Errno 28]" in done.stdout
    assert "sinks left: []" in done.stdout
    assert "Traceback" not in done.stderr and "Exception" not in done.stderr, done.stderr


class _Study:
    """Enough of an Optuna study for `Progress`: its trials and no front."""

    def __init__(self, trials: list[Any]) -> None:
        self.trials = trials

    def get_trials(self, deepcopy: bool = False) -> list[Any]:
        return self.trials

    @property
    def best_trials(self) -> list[Any]:
        return []


def test_the_live_line_counts_epochs_and_estimates_the_time_left(monkeypatch: pytest.MonkeyPatch) -> None:
    from optuna.trial import TrialState

    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    running = [SimpleNamespace(number=i, params={}, state=TrialState.RUNNING, user_attrs={}) for i in (0, 1)]
    progress = Progress(_Study(running), target=4, echo=print, epochs=3, concurrency=2, live=True)
    assert progress.eta() is None and "ETA: after the first epoch" in progress.line()
    progress.on_result(running[0], {"epoch": 1, "val_acc": 0.5, "epoch_time_s": 10.0})
    progress.on_result(running[1], {"epoch": 1, "val_acc": 0.5, "epoch_time_s": 10.0})
    progress.on_result(running[1], {"epoch": 2, "val_acc": 0.6, "epoch_time_s": 10.0})
    # Left: trial 0 two epochs, trial 1 one, two trials not started (3 each): 9 epochs x 10 s / 2 at once.
    assert progress.eta() == pytest.approx(45.0)
    line = progress.line()
    assert "running 2 (#0 1/3, #1 2/3)" in line and "epochs done 3" in line and "ETA ~45 s" in line
    assert "\r\033[K" in out.getvalue()  # drawn in place


def test_no_live_line_when_not_a_terminal_or_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()  # not a TTY
    monkeypatch.setattr("sys.stdout", out)
    assert Progress(_Study([]), 1, print).live is False
    monkeypatch.setattr(out, "isatty", lambda: True)
    assert Progress(_Study([]), 1, print).live is True
    assert Progress(_Study([]), 1, lambda _: None).live is False  # `-q`: progress goes nowhere


@pytest.mark.slow
def test_a_live_study_writes_tensorboard_and_mlflow_for_every_trial(tmp_path: Path) -> None:
    """A real study (two trials of two epochs, Ray Tune): `tensorboard --logdir runs/<study>` shows one
    scalar per epoch of every trial, and the MLflow store holds one finished run per trial."""
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from icbench.search import run_study

    body = EXPERIMENT.replace("epochs: 3", "epochs: 2") + (
        "n_trials: 2\nsampler: {name: grid, seed: 0}\n"
        "execution: {max_concurrent: 2, tracking: [tensorboard, mlflow]}\n"
    )
    path = write_study(tmp_path, "live_track", body, SPACE)
    lines: list[str] = []
    run = run_study(path, report=False, echo=lines.append)
    assert run.n_complete == 2, lines
    loaded = load_study(path)
    root = tensorboard_dir(loaded)
    folders = sorted(p.name for p in root.iterdir())
    assert folders == ["trial_0", "trial_1"]
    for name in folders:
        scalars = _scalars(root / name)
        assert [step for step, _ in scalars["val_acc"]] == [1, 2]
    client = MlflowClient(tracking_uri=mlflow_uri(loaded))
    runs = client.search_runs([client.get_experiment_by_name("live_track").experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["trial_0", "trial_1"]
    assert all(r.info.status == "FINISHED" and len(client.get_metric_history(r.info.run_id, "val_acc")) == 2
               for r in runs)  # fmt: skip
    assert any("per-epoch metrics of every trial: TensorBoard in" in line for line in lines)
