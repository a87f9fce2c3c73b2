"""The training recipe: schedule shapes against hand-computed values, the moving average, the init
scheme, and every recipe setting through a study file (round trip, and refused out of range)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from torch import nn

from icbench.data import load_dataset
from icbench.errors import ConfigError
from icbench.recipe import RECIPE_KEYS, Recipe
from icbench.search.schema import load_study
from icbench.search.space import base_candidate
from icbench.training import TrainConfig, fit, loop
from icbench.training.config import CandidateConfig
from icbench.training.init import initialise
from icbench.training.loop import lr_at


def test_linear_schedule_warms_up_then_falls_to_zero_after_the_last_step():
    # 10 steps, 2 of warm-up, peak 1: 0.5, 1, then (10 - k) / 8.
    lrs = [lr_at(k, 10, 2, 1.0, "linear") for k in range(10)]
    assert lrs == pytest.approx([0.5, 1.0, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125])
    assert lr_at(10, 10, 2, 1.0, "linear") == 0.0  # the step after the last


def test_linear_schedule_without_warmup_starts_at_the_peak():
    assert [lr_at(k, 4, 0, 0.4, "linear") for k in range(4)] == pytest.approx([0.4, 0.3, 0.2, 0.1])


def test_cosine_schedule_with_warmup_is_half_a_cosine():
    lrs = [lr_at(k, 6, 2, 1.0, "cosine") for k in range(6)]
    # after warm-up t = (k - 2) / 4: 0.5 (1 + cos(pi t)) = 1, 0.853553, 0.5, 0.146447
    assert lrs == pytest.approx([0.5, 1.0, 1.0, 0.8535534, 0.5, 0.1464466])


@pytest.mark.parametrize(("total", "warmup"), [(10, 3), (96, 29), (7, 2), (81, 24)])
def test_onecycle_matches_torchs_onecyclelr(total: int, warmup: int):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.2, total_steps=total, pct_start=warmup / total)
    expected = []
    for _ in range(total):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert [lr_at(k, total, warmup, 0.2, "onecycle") for k in range(total)] == pytest.approx(expected)


def test_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="valid: linear, cosine, onecycle"):
        lr_at(0, 10, 0, 1.0, "step")


@pytest.fixture(scope="module")
def splits():
    # 70 % of 110 = 77 training images: batches of 16 leave a ragged 13 that is dropped.
    return load_dataset("synthetic", n=110, image_size=8, in_chans=3, num_classes=4, signal=0.6)


def _tiny() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(256, 4)
    )


def _recorded_lrs(monkeypatch, splits, **recipe) -> tuple[list[tuple[int, int, int]], list[float]]:
    calls: list[tuple[int, int, int]] = []
    lrs: list[float] = []
    real = loop.lr_at

    def spy(step, total, warmup, base, schedule):
        calls.append((step, total, warmup))
        lrs.append(real(step, total, warmup, base, schedule))
        return lrs[-1]

    monkeypatch.setattr(loop, "lr_at", spy)
    torch.manual_seed(0)
    fit(_tiny(), splits, TrainConfig(**{"epochs": 3, "batch_size": 16, "lr": 0.1, **recipe}))
    return calls, lrs


def test_steps_count_full_batches_only_and_the_schedule_ends_with_training(monkeypatch, splits):
    n = len(splits.train)
    per_epoch = n // 16
    assert n % 16 != 0  # the last batch of every epoch is ragged
    calls, lrs = _recorded_lrs(monkeypatch, splits, warmup_fraction=0.25)
    total = 3 * per_epoch
    assert [c[0] for c in calls] == list(range(total))
    assert {c[1] for c in calls} == {total}
    assert {c[2] for c in calls} == {round(0.25 * total)}
    assert lrs[-1] == pytest.approx(0.1 / (total - round(0.25 * total)))  # one step from zero


def test_warmup_epochs_overrides_the_fraction(monkeypatch, splits):
    calls, _ = _recorded_lrs(monkeypatch, splits, warmup_fraction=0.5, warmup_epochs=1.0)
    assert {c[2] for c in calls} == {len(splits.train) // 16}


def test_ema_model_is_what_is_evaluated_and_kept(splits):
    torch.manual_seed(0)
    plain = _tiny()
    ema_model = _tiny()
    ema_model.load_state_dict(plain.state_dict())
    cfg = TrainConfig(epochs=2, batch_size=16, lr=0.1)
    a = fit(plain, splits, cfg)
    b = fit(ema_model, splits, dataclasses.replace(cfg, ema_decay=0.9))
    # Same data order and updates: the averaged weights differ from the last ones, and the model left
    # behind (and validated) is the average.
    assert not torch.equal(plain[0].weight, ema_model[0].weight)
    assert b.val_acc == pytest.approx(loop.evaluate(ema_model, splits.val))
    assert a.val_acc == pytest.approx(loop.evaluate(plain, splits.val))


def test_ema_average_follows_its_formula():
    model = nn.Linear(2, 1, bias=False)
    nn.init.zeros_(model.weight)
    ema = loop._EMA(model, decay=0.5)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)  # first update: decay min(0.5, 2/11) = 2/11, so the average moves 9/11 of the way
    assert ema.model.weight.flatten().tolist() == pytest.approx([9 / 11, 9 / 11])


def test_torch_init_resets_convolutions_and_linears_and_keeps_bn():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8, 2))
    nn.init.constant_(model[0].weight, 5.0)
    nn.init.constant_(model[3].weight, 5.0)
    nn.init.constant_(model[1].weight, 3.0)
    initialise(model, "family")
    assert model[0].weight.eq(5.0).all()
    initialise(model, "torch")
    bound = 1 / (3 * 3 * 3) ** 0.5  # PyTorch's default: uniform within 1/sqrt(fan_in)
    assert model[0].weight.abs().max() <= bound and model[0].weight.std() > bound / 4
    assert model[3].weight.abs().max() <= 1 / 8**0.5
    assert model[1].weight.eq(3.0).all()
    with pytest.raises(ConfigError, match="valid: torch, family"):
        initialise(model, "xavier")


def _study(tmp_path: Path, training: str, budget: str = "{epochs: 4}") -> Path:
    (tmp_path / "space.yaml").write_text("params:\n  lr: {type: float, low: 0.01, high: 0.2, log: true}\n")
    p = tmp_path / "study.yaml"
    p.write_text(f"name: s\nsearch_space: space.yaml\nbudget: {budget}\ntraining: {training}\n")
    return p


SET = {
    "batch_size": 32, "lr": 0.2, "momentum": 0.8, "nesterov": False, "weight_decay": 1e-4,
    "label_smoothing": 0.2, "schedule": "onecycle", "warmup_fraction": 0.3, "warmup_epochs": 1.5,
    "ema_decay": 0.99, "init": "family", "compile": True, "augment_from_epochs": 3, "unit_lr_mult": 3.5,
    "unit_init": "zero",
}  # fmt: skip


def test_every_recipe_setting_round_trips_through_a_study_file(tmp_path: Path):
    assert set(SET) == set(RECIPE_KEYS) - {"epochs"}  # a new recipe field must be added here
    text = (
        "{" + ", ".join(f"{k}: {str(v).lower() if isinstance(v, bool) else v}" for k, v in SET.items()) + "}"
    )
    loaded = load_study(_study(tmp_path, text))
    cand = CandidateConfig.from_dict(base_candidate(loaded))
    recipe = cand.train_config(augment_default=False)
    assert {k: getattr(recipe, k) for k in SET} == SET and recipe.epochs == 4
    assert CandidateConfig.from_dict(cand.to_dict()) == cand


def test_unset_recipe_settings_take_the_measured_defaults(tmp_path: Path):
    cand = CandidateConfig.from_dict(base_candidate(load_study(_study(tmp_path, "{}"))))
    defaults = Recipe()
    assert all(getattr(cand, k) == getattr(defaults, k) for k in RECIPE_KEYS if k != "epochs")


@pytest.mark.parametrize(
    ("training", "field", "needle"),
    [
        ("{schedule: step}", "training.schedule", "linear"),
        ("{warmup_fraction: 1.0}", "training.warmup_fraction", "less than 1"),
        ("{warmup_fraction: -0.1}", "training.warmup_fraction", "greater than or equal"),
        ("{ema_decay: 1}", "training.ema_decay", "less than 1"),
        ("{init: xavier}", "training.init", "torch"),
        ("{compile: maybe}", "training.compile", "bool"),
        ("{label_smoothing: 1}", "training.label_smoothing", "less than 1"),
        ("{batch_size: 0}", "training.batch_size", "greater than or equal"),
        ("{warmup_epochs: 5}", "training.warmup_epochs", "budget.epochs"),
        ("{unit_lr_mult: 0}", "training.unit_lr_mult", "greater than 0"),
        ("{unit_lr_mult: -2}", "training.unit_lr_mult", "greater than 0"),
        ("{unit_lr_mult: fast}", "training.unit_lr_mult", "number"),
        ("{unit_lr_mult: .nan}", "training.unit_lr_mult", "finite"),
        ("{unit_init: kaiming}", "training.unit_init", "'data' or 'zero'"),
    ],
)
def test_recipe_settings_out_of_range_are_refused_with_their_field(tmp_path, training, field, needle):
    with pytest.raises(ConfigError) as e:
        load_study(_study(tmp_path, training))
    assert e.value.field == field and needle in str(e.value), (e.value.field, str(e.value))
    assert str(tmp_path / "study.yaml") in str(e.value)


@pytest.mark.parametrize(
    ("augment", "epochs", "default", "expected"),
    [(None, 9, True, False), (None, 10, True, True), (None, 30, False, False), (True, 1, False, True),
     (False, 30, True, False)],
)  # fmt: skip
def test_augmentation_follows_the_budget_unless_set(augment, epochs, default, expected):
    cand = CandidateConfig(augment=augment, epochs=epochs)
    assert cand.train_config(augment_default=default).augment is expected


def test_a_cached_teachers_augmentation_follows_its_own_epochs():
    cand = CandidateConfig(epochs=3, wld={"enabled": True, "teacher_epochs": 12})
    assert cand.train_config(True).augment is False
    assert cand.teacher_train_config(True).augment is True
    pinned = CandidateConfig(
        epochs=3, wld={"enabled": True, "teacher_epochs": 12, "teacher_recipe": {"augment": False}}
    )
    assert pinned.teacher_train_config(True).augment is False


@pytest.mark.parametrize(
    ("kw", "field"),
    [({"schedule": "x"}, "schedule"), ({"ema_decay": 1.5}, "ema_decay"), ({"init": "he"}, "init"),
     ({"warmup_fraction": 1.0}, "warmup_fraction"), ({"warmup_epochs": 9.0, "epochs": 2}, "warmup_epochs")],
)  # fmt: skip
def test_candidate_config_refuses_bad_recipes(kw, field):
    with pytest.raises(ConfigError) as e:
        CandidateConfig(**kw)
    assert e.value.field == field
