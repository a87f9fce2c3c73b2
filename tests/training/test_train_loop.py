"""The training loop on a tiny local network: schedule, seeding, divergence, budget, callback."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from icbench.data import load_dataset
from icbench.training import TrainConfig, fit
from icbench.training.loop import cosine_lr, evaluate, num_threads, param_groups, resolve_device


@pytest.fixture(scope="module")
def splits():
    return load_dataset("synthetic", n=400, image_size=8, in_chans=3, num_classes=4, signal=0.6)


def tiny_net(bn: bool = True) -> nn.Module:
    layers: list[nn.Module] = [nn.Conv2d(3, 8, 3, padding=1)]
    if bn:
        layers.append(nn.BatchNorm2d(8))
    layers += [
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 16, 4),
    ]
    return nn.Sequential(*layers)


def _run(splits, seed: int = 0, **kw):
    torch.manual_seed(seed)
    model = tiny_net()
    cfg = TrainConfig(**{"epochs": 3, "batch_size": 32, "lr": 0.05, "seed": seed, **kw})
    return model, fit(model, splits, cfg)


def test_learns_the_synthetic_signal(splits):
    _, result = _run(splits, epochs=4)
    assert result.epochs_done == 4 and not result.diverged and result.stop_reason is None
    assert result.val_acc > 0.6  # chance is 0.25
    assert result.curve[-1]["train_loss"] < result.curve[0]["train_loss"]


def test_same_seed_is_identical_and_another_seed_differs(splits):
    _, a = _run(splits, seed=1)
    _, b = _run(splits, seed=1)
    _, c = _run(splits, seed=2)
    strip = lambda r: [(e["epoch"], e["train_loss"], e["val_acc"]) for e in r.curve]  # noqa: E731
    assert strip(a) == strip(b) and a.val_acc == b.val_acc
    assert [e["train_loss"] for e in a.curve] != [e["train_loss"] for e in c.curve]


def test_augmentation_changes_the_batches_but_stays_seeded(splits):
    _, plain = _run(splits, seed=0, augment=False)
    _, aug = _run(splits, seed=0, augment=True)
    _, aug2 = _run(splits, seed=0, augment=True)
    assert plain.curve[0]["train_loss"] != aug.curve[0]["train_loss"]
    untimed = lambda r: [{k: v for k, v in e.items() if k != "epoch_time_s"} for e in r.curve]  # noqa: E731
    assert untimed(aug) == untimed(aug2)


def test_callback_gets_every_epoch(splits):
    seen = []
    torch.manual_seed(0)
    fit(tiny_net(), splits, TrainConfig(epochs=3, batch_size=64), callback=seen.append)
    assert [r["epoch"] for r in seen] == [1, 2, 3]
    assert set(seen[0]) == {"epoch", "train_loss", "val_acc", "epoch_time_s"}
    assert all(0 <= r["val_acc"] <= 1 and r["epoch_time_s"] >= 0 for r in seen)


def test_non_finite_loss_stops_and_marks_diverged(splits):
    torch.manual_seed(0)
    model = tiny_net(bn=False)
    result = fit(model, splits, TrainConfig(epochs=3, batch_size=32, lr=1e12, weight_decay=0.0))
    assert result.diverged and result.stop_reason == "diverged"
    assert math.isnan(result.val_acc)
    assert result.epochs_done < 3


def test_divergence_is_detected_at_the_step_it_happens(splits):
    calls = []

    def nan_at_step_5(logits, x, y, progress):
        calls.append(progress)
        loss = nn.functional.cross_entropy(logits, y)
        return loss * float("nan") if len(calls) == 5 else loss

    result = fit(tiny_net(), splits, TrainConfig(epochs=2, batch_size=32), objective=nan_at_step_5)
    assert result.diverged and len(calls) == 5 and result.curve == []


def test_time_budget_stops_the_run(splits):
    torch.manual_seed(0)
    result = fit(tiny_net(), splits, TrainConfig(epochs=50, batch_size=32, time_budget_s=1e-9))
    assert result.stop_reason == "time_budget" and not result.diverged
    assert result.epochs_done < 50 and 0 <= result.val_acc <= 1


def test_objective_sees_progress_from_zero_to_below_one(splits):
    progress = []

    def ce(logits, x, y, p):
        progress.append(p)
        return nn.functional.cross_entropy(logits, y)

    fit(tiny_net(), splits, TrainConfig(epochs=2, batch_size=40), objective=ce)
    assert progress[0] == 0.0 and progress == sorted(progress) and progress[-1] < 1.0
    assert len(progress) == 2 * (len(splits.train) // 40)


def test_cosine_schedule_with_warmup():
    assert cosine_lr(0, 100, 10, 1.0) == pytest.approx(0.1)
    assert cosine_lr(9, 100, 10, 1.0) == pytest.approx(1.0)
    assert cosine_lr(10, 100, 10, 1.0) == pytest.approx(1.0)
    assert cosine_lr(55, 100, 10, 1.0) == pytest.approx(0.5)
    assert cosine_lr(99, 100, 10, 1.0) < 0.001
    assert cosine_lr(0, 100, 0, 0.1) == pytest.approx(0.1)


def test_no_weight_decay_on_one_dimensional_parameters():
    groups = param_groups(tiny_net(), 5e-4)
    assert groups[0]["weight_decay"] == 5e-4 and all(p.ndim > 1 for p in groups[0]["params"])
    assert groups[1]["weight_decay"] == 0.0 and all(p.ndim == 1 for p in groups[1]["params"])


def test_evaluate_restores_training_mode(splits):
    model = tiny_net().train()
    acc = evaluate(model, splits.val)
    assert 0 <= acc <= 1 and model.training


def test_num_threads_is_set_and_restored():
    before = torch.get_num_threads()
    with num_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
