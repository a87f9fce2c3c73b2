"""The training recipe as plain data (no torch import), shared by the study schema and the trainer."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from icbench.errors import ConfigError

__all__ = [
    "INITS",
    "LEGACY_UNIT_RECIPE",
    "RECIPE_KEYS",
    "SCHEDULES",
    "UNIT_INITS",
    "UNIT_RECIPE_KEYS",
    "Recipe",
]

#: Learning-rate schedules of the loop (`icbench.training.loop.lr_at`).
SCHEDULES = ("linear", "cosine", "onecycle")
#: Weight initialisations applied before training (`icbench.training.init.initialise`).
INITS = ("torch", "family")
#: Default of `Recipe.unit_lr_mult` (chosen by benchmarks/units_learn.py).
UNIT_LR_MULT_DEFAULT = 30.0
#: How a unit's data-dependent parameters start (`icbench.units.calibrate_units`); both keep the unit
#: exactly the plain convolution at initialisation.
UNIT_INITS = ("data", "zero")


@dataclass
class Recipe:
    """The training recipe, shared by `CandidateConfig` (what a study sets) and `TrainConfig` (what the
    loop runs). Defaults were chosen by `benchmarks/peer.py` (docs/performance.md, "Training recipe"): at 1 to 10
    epochs they train as far per epoch as a plain OneCycle loop over the learning rates a search samples.

    Attributes:
        epochs: full passes over the training split.
        batch_size: samples per SGD step (the last ragged batch of an epoch is dropped).
        lr: peak learning rate (after warm-up).
        momentum, nesterov, weight_decay: SGD; weight decay on ≥ 2-D weights only.
        label_smoothing: of the cross-entropy target.
        schedule: "linear" (warm-up, then straight to 0 at the last step), "cosine" or "onecycle".
        warmup_fraction: share of all steps spent warming up linearly.
        warmup_epochs: warm-up length in epochs instead (overrides `warmup_fraction` when set).
        ema_decay: evaluate (and keep) an exponential moving average of the weights; 0 is off.
        init: "torch" re-initialises every convolution and linear layer with PyTorch's default
            (uniform, 1/sqrt(fan_in) bound) before training; "family" keeps the family's own (He et al.'s
            fan_out normal for the ResNets). Under BatchNorm the smaller torch weights mean a larger
            effective step at the same learning rate: at short budgets this trained much further.
        compile: run the training steps under `torch.compile` (pays for long trials only).
        augment_from_epochs: with `augment` unset, a run uses its dataset's augmentation only from this
            many epochs on: at 3 epochs random crops cost mnist5k 4 and digits 7 points of validation
            accuracy, at 10 they were even.
        unit_lr_mult: the units' own parameters (IC's gains and thresholds, SE's gate) train at this
            multiple of the learning rate. Each unit starts at the identity, in front of a BatchNorm,
            where its parameters get little gradient: at 1× they hardly leave it (docs/units.md, "Units that
            learn"; measured by benchmarks/units_learn.py).
        unit_init: "data" sets the units' thresholds from a calibration batch of training images (each
            channel's mean) before training, the gate still at the identity; "zero" keeps every
            threshold at 0 (before December 2026 the only behaviour: `ic_dual` is then a per-channel
            scale that BatchNorm cancels, and it never moves).
    """

    epochs: int = 2
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    schedule: str = "linear"
    warmup_fraction: float = 0.2
    warmup_epochs: float | None = None
    ema_decay: float = 0.0
    init: str = "torch"
    compile: bool = False
    augment_from_epochs: int = 10
    unit_lr_mult: float = UNIT_LR_MULT_DEFAULT
    unit_init: str = "data"

    def resolve_augment(self, augment: bool | None, dataset_default: bool) -> bool:
        """Whether a run of this recipe augments: `augment` when set, else the dataset's default
        for runs of at least `augment_from_epochs` epochs."""
        if augment is not None:
            return bool(augment)
        return dataset_default and self.epochs >= self.augment_from_epochs

    def recipe_error(self, prefix: str = "") -> ConfigError | None:
        """The first invalid recipe value as a ConfigError naming its field, or None; coerces numbers."""
        try:
            for name, kind in (
                ("epochs", int), ("batch_size", int), ("lr", float), ("momentum", float),
                ("nesterov", bool), ("weight_decay", float), ("label_smoothing", float),
                ("warmup_fraction", float), ("ema_decay", float), ("compile", bool), ("augment_from_epochs", int),
                ("unit_lr_mult", float),
            ):  # fmt: skip
                if kind is not bool and isinstance(getattr(self, name), bool):
                    raise TypeError(f"{name} must be a number, got a boolean")
                object.__setattr__(self, name, kind(getattr(self, name)))
            if self.warmup_epochs is not None:
                self.warmup_epochs = float(self.warmup_epochs)
        except (TypeError, ValueError) as e:
            return ConfigError(f"invalid recipe value: {e}", field=prefix.rstrip(".") or None)
        checks = (
            ("epochs", self.epochs >= 1, ">= 1"),
            ("batch_size", self.batch_size >= 1, ">= 1"),
            ("lr", self.lr > 0, "> 0"),
            ("momentum", 0 <= self.momentum < 1, "in [0, 1)"),
            ("weight_decay", self.weight_decay >= 0, ">= 0"),
            ("label_smoothing", 0 <= self.label_smoothing < 1, "in [0, 1)"),
            ("schedule", self.schedule in SCHEDULES, "one of " + ", ".join(SCHEDULES)),
            ("warmup_fraction", 0 <= self.warmup_fraction < 1, "in [0, 1)"),
            (
                "warmup_epochs",
                self.warmup_epochs is None or 0 <= self.warmup_epochs <= self.epochs,
                "in [0, epochs]",
            ),
            ("ema_decay", 0 <= self.ema_decay < 1, "in [0, 1)"),
            ("init", self.init in INITS, "one of " + ", ".join(INITS)),
            ("augment_from_epochs", self.augment_from_epochs >= 1, ">= 1"),
            (
                "unit_lr_mult",
                math.isfinite(self.unit_lr_mult) and self.unit_lr_mult > 0,
                "a finite number > 0",
            ),
            ("unit_init", self.unit_init in UNIT_INITS, "one of " + ", ".join(UNIT_INITS)),
        )
        for name, ok, valid in checks:
            if not ok:
                return ConfigError(
                    f"invalid value {getattr(self, name)!r}; valid: {valid}", field=prefix + name
                )
        if self.nesterov and self.momentum == 0:
            return ConfigError(
                "Nesterov momentum needs momentum > 0 (or set nesterov: false)", field=prefix + "nesterov"
            )
        return None


#: Fields of `Recipe`: the recipe a study's `training` section sets (less `augment` and `seed`).
RECIPE_KEYS = tuple(f.name for f in dataclasses.fields(Recipe))
#: Recipe fields that act on the units only: a basic network (a WLD teacher) trains the same without them.
UNIT_RECIPE_KEYS = ("unit_lr_mult", "unit_init")
#: What the unit settings were before they existed: a study or table that does not record them ran so.
LEGACY_UNIT_RECIPE: dict[str, object] = {"unit_lr_mult": 1.0, "unit_init": "zero"}
