"""The contract that every registered unit *learns*: trained where icbench places it, it leaves the identity.

Every unit starts as the plain convolution, in front of a BatchNorm. That start can be a saddle: a unit
whose only effect is a per-channel scale is divided out by the BatchNorm and gets no useful gradient
(DESIGN.md §3). Here each unit sits in a conv → BatchNorm → ReLU → unit → BatchNorm → ReLU block, is
trained for a few hundred SGD steps with the default recipe on scikit-learn's real 8×8 digits, and must
(1) have every one of its own parameters moved by training and (2) change its site's output by more than
the inert floor (δ ≥ `INERT_DELTA`). A unit registered later is tested here without touching this file;
the legacy recipe (`unit_lr_mult: 1`, `unit_init: zero`) is shown to fail it with `ic_dual`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
from torch import nn

from icbench.data import load_dataset
from icbench.recipe import LEGACY_UNIT_RECIPE
from icbench.training.candidate import calibration_batch
from icbench.training.config import TrainConfig
from icbench.training.loop import fit, seed_everything
from icbench.units import INERT_DELTA, UNITS, UnitConv2d, calibrate_units, median_delta, unit_deltas

LEARNING_UNITS = [k for k in UNITS if issubclass(UNITS.get(k), UnitConv2d)]
#: 12 epochs of the digits training split at batch 64: 228 SGD steps.
EPOCHS = 12


class Block(nn.Module):
    """A plain stem, then the unit between two BatchNorm → ReLU pairs, as in a ResNet's basic block."""

    def __init__(self, unit: str, in_chans: int, num_classes: int, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.site = UNITS.get(unit)(width, width, 3, padding=1, bias=False)
        self.post = nn.Sequential(nn.BatchNorm2d(width), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.post(self.site(self.stem(x))))


def train_block(unit: str, **recipe: Any) -> tuple[Block, dict[str, torch.Tensor], float]:
    """(trained block, the unit's own parameters before training, median δ after it)."""
    splits = load_dataset("digits", device="cpu")
    config = TrainConfig(epochs=EPOCHS, seed=0, num_threads=1, **recipe)
    seed_everything(0)
    model = Block(unit, splits.info.in_chans, splits.info.num_classes)
    if config.unit_init == "data":
        calibrate_units(model, calibration_batch(splits, config.seed))
    before = {
        n: p.detach().clone() for n, p in model.site.named_parameters() if n in model.site.unit_param_names
    }
    result = fit(model, splits, config)
    assert not result.diverged and result.val_acc > 0.5, result
    x, _ = next(iter(splits.val.batches(256)))
    return model, before, median_delta(unit_deltas(model, x))  # type: ignore[return-value]


@pytest.mark.parametrize("unit", LEARNING_UNITS)
def test_unit_leaves_the_identity_under_the_default_recipe(unit: str) -> None:
    model, before, delta = train_block(unit)
    after = dict(model.site.named_parameters())
    for name, p0 in before.items():
        moved = (after[name].detach() - p0).abs().max().item()
        assert moved > 1e-3, f"{unit}: parameter {name} moved by only {moved:.2e} in training"
    assert delta >= INERT_DELTA, (
        f"{unit}: δ = {delta:.4f} after training, under the inert floor {INERT_DELTA}"
    )


def test_the_contract_catches_a_unit_stuck_at_the_identity() -> None:
    """`ic_dual` under the legacy recipe: thresholds at 0 on post-ReLU inputs make its gate a per-channel
    scale that BatchNorm divides out, so it stays the plain convolution; the check above must see it."""
    _, _, delta = train_block("ic_dual", **LEGACY_UNIT_RECIPE)
    assert delta < INERT_DELTA, f"legacy ic_dual reached δ = {delta:.4f}: the contract would not catch it"


def test_calibration_keeps_the_identity_and_the_buffers() -> None:
    """Calibrating moves thresholds into the data but changes neither the output nor BatchNorm's state."""
    torch.manual_seed(0)
    splits = load_dataset("digits", device="cpu")
    for unit in LEARNING_UNITS:
        model = Block(unit, splits.info.in_chans, splits.info.num_classes).eval()
        x = calibration_batch(splits, 0)
        y0 = model(x)
        buffers = {
            k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k
        }
        calibrate_units(model, x)
        assert torch.equal(model(x), y0), unit
        for k, v in buffers.items():
            assert torch.equal(model.state_dict()[k], v), (unit, k)
    ic = Block("ic", splits.info.in_chans, splits.info.num_classes)
    calibrate_units(ic, calibration_batch(splits, 0))
    assert ic.site.ic_theta.abs().min() > 0  # every channel's threshold moved off 0, into its data


def test_unit_learning_rate_multiplier_scales_only_the_units_step() -> None:
    """One SGD step without momentum: the unit's parameters move `unit_lr_mult` times as far as at 1×,
    everything else exactly as far."""
    splits = load_dataset("digits", device="cpu")

    def one_step(mult: float) -> dict[str, torch.Tensor]:
        seed_everything(0)
        model = Block("ic", splits.info.in_chans, splits.info.num_classes)
        calibrate_units(model, calibration_batch(splits, 0))
        with torch.no_grad():
            model.site.ic_a.fill_(0.5)  # off the identity, so that θ gets a gradient too
        start = {k: v.detach().clone() for k, v in model.named_parameters()}
        config = dataclasses.replace(
            TrainConfig(epochs=1, seed=0, num_threads=1, momentum=0.0, nesterov=False, weight_decay=0.0,
                        warmup_fraction=0.0, schedule="linear", unit_lr_mult=mult),
        )  # fmt: skip
        fit(model, _one_batch(splits), config)
        return {k: v.detach() - start[k] for k, v in model.named_parameters()}

    one, thirty = one_step(1.0), one_step(30.0)
    for name in one:
        if name.startswith("site.ic_"):
            # (differences of float32 values near 0.5: a few 1e-8 of rounding each)
            assert torch.allclose(thirty[name], 30 * one[name], rtol=1e-2, atol=1e-6), name
            assert one[name].abs().max() > 0, name
        else:
            assert torch.equal(thirty[name], one[name]), name


def _one_batch(splits: Any) -> Any:
    """The splits with a training split of exactly one batch of 64 (one SGD step per epoch)."""
    from icbench.data import Splits, TensorSplit

    train = splits.train
    small = TensorSplit(train.x[:64], train.y[:64], train.info)
    return Splits(train=small, val=splits.val, test=splits.test, info=splits.info)
