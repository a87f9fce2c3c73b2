"""Exact-resume checkpoints: a run stopped after any epoch and resumed ends bit for bit where an
uninterrupted run ends (CPU, one thread), and a checkpoint that is not this run's is never loaded."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from icbench.families import tiny_size
from icbench.objectstore import Folder
from icbench.training import METRIC_KEYS, train_candidate
from icbench.training import candidate as candidate_mod
from icbench.training.resume import PROGRESS_NAME, STATE_NAME

EPOCHS = 3
BASE: dict[str, Any] = {
    "dataset": "synthetic",
    "dataset_kwargs": {"n": 240, "image_size": 16, "num_classes": 4},
    "family": "resnet_cifar",
    "size": tiny_size("resnet_cifar"),
    "width": 0.5,
    "epochs": EPOCHS,
    "batch_size": 32,
    "lr": 0.05,
    "latency": False,
    "augment": True,
    "device": "cpu",
    "num_threads": 1,
}
# Everything the checkpoint must carry: EMA, the WLD teacher and its λ schedule, data-calibrated units,
# augmentation; and a plain recipe (no EMA, no WLD, onecycle, units at their identity).
RECIPES: dict[str, dict[str, Any]] = {
    "wld_ema_data": {"ema_decay": 0.9, "unit_init": "data", "wld": {"enabled": True, "teacher_epochs": 1}},
    "plain": {"ema_decay": 0.0, "unit_init": "zero", "schedule": "onecycle", "unit": "se"},
}


class Stop(Exception):
    """Stands for a fault after an epoch."""


def _config(name: str, cache: Path, **over: Any) -> dict[str, Any]:
    return {**BASE, **RECIPES[name], "cache_dir": str(cache), **over}


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)


def _same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    different = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def _untimed(metrics: dict[str, Any]) -> dict[str, Any]:
    curve = [{k: v for k, v in e.items() if k != "epoch_time_s"} for e in metrics["curve"]]
    keys = ("val_acc", "test_acc", "epochs_done", "diverged", "stop_reason", "unit_delta", "unit_deltas")
    return {"curve": curve, **{k: metrics[k] for k in keys}}


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("teachers")


@pytest.fixture(scope="module")
def reference(
    tmp_path_factory: pytest.TempPathFactory, cache: Path
) -> dict[str, tuple[dict[str, Any], Path]]:
    """One uninterrupted run per recipe (its checkpoints in a folder of its own), with final weights."""
    out = {}
    for name in RECIPES:
        root = tmp_path_factory.mktemp(f"ref_{name}")
        metrics = train_candidate(
            _config(name, cache), weights_path=root / "w.pt", checkpoint=Folder(str(root / "ckpt"))
        )
        assert metrics["epochs_done"] == EPOCHS and metrics["resumed_from_epoch"] == 0
        assert metrics["checkpoint_note"] is None and metrics["epochs_retrained"] == 0
        out[name] = (metrics, root / "w.pt")
    return out


@pytest.mark.parametrize("name", list(RECIPES))
@pytest.mark.parametrize("k", range(1, EPOCHS + 1))
def test_resume_after_every_epoch_is_bit_identical(name, k, reference, cache, tmp_path, monkeypatch):
    ref, ref_weights = reference[name]
    folder = Folder(str(tmp_path / "ckpt"))

    def stop_after_k(record: dict[str, Any]) -> None:
        if record["epoch"] == k:
            raise Stop

    with pytest.raises(Stop):
        train_candidate(_config(name, cache), callback=stop_after_k, checkpoint=folder)
    assert torch.load(tmp_path / "ckpt" / STATE_NAME, weights_only=True)["epoch"] == k

    calibrations = []
    real = candidate_mod.calibrate_units
    monkeypatch.setattr(candidate_mod, "calibrate_units", lambda *a: calibrations.append(1) or real(*a))
    seen: list[int] = []
    resumed = train_candidate(
        _config(name, cache), callback=lambda r: seen.append(r["epoch"]), checkpoint=folder,
        weights_path=tmp_path / "w.pt",
    )  # fmt: skip
    assert tuple(resumed) == METRIC_KEYS
    assert calibrations == []  # the checkpoint restored the calibration; it did not run again
    assert seen == list(range(k + 1, EPOCHS + 1))
    assert (resumed["resumed_from_epoch"], resumed["epochs_retrained"], resumed["checkpoint_note"]) == (
        k,
        0,
        None,
    )
    assert _untimed(resumed) == _untimed(ref)
    assert resumed["train_time_s"] >= ref["train_time_s"] * 0.2  # the earlier run's time is carried on
    _same_weights(tmp_path / "w.pt", ref_weights)


def test_calibration_runs_on_a_fresh_start(cache, tmp_path, monkeypatch):
    calls = []
    real = candidate_mod.calibrate_units
    monkeypatch.setattr(candidate_mod, "calibrate_units", lambda *a: calls.append(1) or real(*a))
    train_candidate(_config("wld_ema_data", cache, epochs=1), checkpoint=Folder(str(tmp_path)))
    assert calls == [1]


def test_corrupt_checkpoint_starts_from_zero_with_the_reason(reference, cache, tmp_path):
    ref, ref_weights = reference["plain"]
    folder = Folder(str(tmp_path / "ckpt"))
    folder.write(STATE_NAME, b"PK\x03\x04 not a checkpoint")
    metrics = train_candidate(_config("plain", cache), checkpoint=folder, weights_path=tmp_path / "w.pt")
    assert metrics["resumed_from_epoch"] == 0
    assert "unreadable" in metrics["checkpoint_note"] and STATE_NAME in metrics["checkpoint_note"]
    assert _untimed(metrics) == _untimed(ref)
    _same_weights(tmp_path / "w.pt", ref_weights)
    # the corrupt file was replaced by this run's own checkpoint
    assert torch.load(Path(tmp_path / "ckpt" / STATE_NAME), weights_only=True)["epoch"] == EPOCHS


@pytest.mark.parametrize("change", [{"seed": 1}, {"lr": 0.04}, {"placement": None, "unit": "ic"}])
def test_another_candidates_checkpoint_is_never_loaded(change, reference, cache, tmp_path):
    ref, ref_weights = reference["plain"]
    folder = Folder(str(tmp_path / "ckpt"))
    with pytest.raises(Stop):
        train_candidate(_config("plain", cache, **change), checkpoint=folder, callback=_raise_at(1))
    metrics = train_candidate(_config("plain", cache), checkpoint=folder, weights_path=tmp_path / "w.pt")
    assert metrics["resumed_from_epoch"] == 0 and metrics["epochs_retrained"] == 0
    assert "another candidate or recipe" in metrics["checkpoint_note"]
    assert _untimed(metrics) == _untimed(ref)
    _same_weights(tmp_path / "w.pt", ref_weights)


def test_untrained_fields_do_not_change_the_fingerprint(cache):
    fp = candidate_mod.candidate_fingerprint
    config = candidate_mod.CandidateConfig.from_dict
    a = fp(config(_config("plain", cache)))
    assert a == fp(config(_config("plain", cache, num_threads=2, device="auto", latency=True, cache_dir="x")))
    assert a != fp(config(_config("plain", cache, epochs=4)))


def test_checkpoint_every_zero_writes_nothing(cache, tmp_path):
    metrics = train_candidate(
        _config("plain", cache, epochs=1), checkpoint=Folder(str(tmp_path)), checkpoint_every=0
    )
    assert list(tmp_path.iterdir()) == []
    assert metrics["checkpoint_time_s"] == 0.0


def test_checkpoint_every_two_keeps_only_the_latest(cache, tmp_path):
    folder = Folder(str(tmp_path))
    with pytest.raises(Stop):
        train_candidate(_config("plain", cache), checkpoint=folder, checkpoint_every=2, callback=_raise_at(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([STATE_NAME, PROGRESS_NAME])
    state = torch.load(tmp_path / STATE_NAME, weights_only=True)  # weights-only loadable
    assert state["epoch"] == 3  # the last epoch is always written
    with pytest.raises(Stop):
        train_candidate(_config("plain", cache, epochs=4), checkpoint=Folder(str(tmp_path / "b")),
                        checkpoint_every=2, callback=_raise_at(3))  # fmt: skip
    b = Folder(str(tmp_path / "b"))
    assert torch.load(tmp_path / "b" / STATE_NAME, weights_only=True)["epoch"] == 2
    metrics = train_candidate(_config("plain", cache, epochs=4), checkpoint=b, checkpoint_every=2)
    assert (metrics["resumed_from_epoch"], metrics["epochs_retrained"]) == (2, 1)


def _raise_at(k: int):
    def callback(record: dict[str, Any]) -> None:
        if record["epoch"] == k:
            raise Stop

    return callback


def _child(config: dict[str, Any], folder: str) -> None:
    """A trial in another process: every epoch waits a little after its checkpoint, so the parent can
    kill it in the middle of the next one (the wait changes no number)."""
    torch.set_num_threads(1)
    train_candidate(config, checkpoint=Folder(folder), callback=lambda r: time.sleep(0.3))


@pytest.mark.slow
def test_sigkilled_trial_resumes_losing_at_most_one_epoch(reference, cache, tmp_path):
    ref, ref_weights = reference["wld_ema_data"]
    config = _config("wld_ema_data", cache)
    folder = tmp_path / "ckpt"
    proc = multiprocessing.get_context("spawn").Process(target=_child, args=(config, str(folder)))
    proc.start()
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.is_alive():
            progress = folder / PROGRESS_NAME
            if progress.is_file() and b'"epoch_started": 2' in progress.read_bytes():
                os.kill(proc.pid, signal.SIGKILL)  # inside epoch 2: its checkpoint after epoch 1 exists
                break
            time.sleep(0.005)
        proc.join(30)
    finally:
        if proc.is_alive():
            proc.kill()
    assert proc.exitcode == -signal.SIGKILL, "the trial was not killed mid-run"
    metrics = train_candidate(config, checkpoint=Folder(str(folder)), weights_path=tmp_path / "w.pt")
    assert metrics["resumed_from_epoch"] >= 1 and metrics["epochs_retrained"] <= 1
    assert metrics["resumed_from_epoch"] + metrics["epochs_retrained"] == 2
    assert _untimed(metrics) == _untimed(ref)
    _same_weights(tmp_path / "w.pt", ref_weights)
