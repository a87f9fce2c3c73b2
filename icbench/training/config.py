"""Configuration of one candidate's training run: `CandidateConfig` and its `WLDConfig`.

Both are plain dataclasses with defaults for every field, so a search trial can build one from a dict
of sampled parameters (`CandidateConfig.from_dict`) and record it back (`to_dict`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from icbench.errors import ConfigError
from icbench.machine import usable_cores
from icbench.recipe import INITS, RECIPE_KEYS, SCHEDULES, UNIT_RECIPE_KEYS, Recipe

__all__ = [
    "INITS",
    "LAMBDA_SCHEDULES",
    "SCHEDULES",
    "TEACHER_RECIPE_KEYS",
    "CandidateConfig",
    "Recipe",
    "TrainConfig",
    "WLDConfig",
]

#: λ schedules of weak logit distillation (see `icbench.training.wld.wld_lambda`).
LAMBDA_SCHEDULES = ("linear", "cosine", "constant", "step")


def _unknown_keys(cls: type, data: Mapping[str, Any], prefix: str = "") -> None:
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(map(repr, unknown))} in {cls.__name__}; "
            f"valid keys: {', '.join(valid)}",
            field=prefix + unknown[0],
        )


@dataclass
class WLDConfig:
    """Weak logit distillation (DESIGN.md §4).

    Attributes:
        enabled: distil from the basic network (the teacher).
        lambda0: λ at the start of training.
        temperature: T of the softened softmax; the KL term is scaled by T².
        schedule: how λ decays from `lambda0` to 0 by fraction `end` of training: "linear",
            "cosine", "step" (λ0 until `end`, then 0) or "constant" (λ0 throughout; `end` ignored).
        end: fraction of training (0..1] at which λ reaches 0.
        only_correct: distil only on samples the teacher classifies correctly.
        warm_start: start the student from the teacher's weights (equal logits at step 0).
        teacher_checkpoint: a state-dict file of the basic network to use instead of the cache.
        teacher_epochs: epochs to train a cached teacher (None: the candidate's `epochs`).
        teacher_seed: seed of a cached teacher, fixed so all trials of a study share one teacher.
        teacher_recipe: recipe fields of a cached teacher that differ from the candidate's (keys of
            `TEACHER_RECIPE_KEYS`). A search that samples e.g. `lr` should pin the teacher's here,
            or every sampled value is a different recipe and trains a teacher of its own.
    """

    enabled: bool = False
    lambda0: float = 0.5
    temperature: float = 4.0
    schedule: str = "linear"
    end: float = 0.5
    only_correct: bool = False
    warm_start: bool = True
    teacher_checkpoint: str | None = None
    teacher_epochs: int | None = None
    teacher_seed: int = 0
    teacher_recipe: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.schedule not in LAMBDA_SCHEDULES:
            raise ConfigError(
                f"unknown λ schedule {self.schedule!r}; valid: {', '.join(LAMBDA_SCHEDULES)}",
                field="wld.schedule",
            )
        if not 0.0 <= float(self.lambda0) <= 1.0:
            raise ConfigError(f"lambda0 must be in [0, 1], got {self.lambda0}", field="wld.lambda0")
        if not float(self.temperature) > 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}", field="wld.temperature")
        if not 0.0 < float(self.end) <= 1.0:
            raise ConfigError(f"end must be in (0, 1], got {self.end}", field="wld.end")
        if not isinstance(self.teacher_recipe, Mapping):
            raise ConfigError("teacher_recipe must be a mapping", field="wld.teacher_recipe")
        unknown = sorted(set(self.teacher_recipe) - set(TEACHER_RECIPE_KEYS))
        if unknown:
            raise ConfigError(
                f"unknown teacher recipe key(s) {', '.join(unknown)}; "
                f"valid: {', '.join(TEACHER_RECIPE_KEYS)}",
                field=f"wld.teacher_recipe.{unknown[0]}",
            )
        if "epochs" in self.teacher_recipe and self.teacher_epochs is not None:
            raise ConfigError(
                "give the teacher's epochs once: teacher_epochs or teacher_recipe.epochs",
                field="wld.teacher_epochs",
            )
        if self.teacher_epochs is not None and int(self.teacher_epochs) < 1:
            raise ConfigError(
                f"teacher_epochs must be >= 1, got {self.teacher_epochs}", field="wld.teacher_epochs"
            )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | bool | WLDConfig | None) -> WLDConfig:
        """Build from a dict; a bare bool means `enabled` with the other defaults.

        Raises:
            ConfigError: an unknown key (the message lists the valid ones) or an invalid value.
        """
        if isinstance(data, WLDConfig):
            return data
        if data is None:
            return cls()
        if isinstance(data, bool):
            return cls(enabled=data)
        if not isinstance(data, Mapping):
            raise ConfigError(f"wld must be a mapping or a bool, got {type(data).__name__}", field="wld")
        _unknown_keys(cls, data, "wld.")
        return cls(**data)


#: What `wld.teacher_recipe` may set: the recipe less the unit settings (a teacher has no units).
TEACHER_RECIPE_KEYS = (*(k for k in RECIPE_KEYS if k not in UNIT_RECIPE_KEYS), "augment")


@dataclass
class CandidateConfig(Recipe):
    """Everything that defines one candidate and how it is trained.

    Attributes:
        dataset, dataset_root, dataset_kwargs: which data (`icbench.data.load_dataset`).
        family, size, width, family_kwargs: which network (`icbench.families.build_model`);
            size None is the family's default size.
        unit, strategy, strategy_args: the placement (`icbench.placement.make_placement`).
        placement: a canonical placement string; overrides unit/strategy/strategy_args.
        epochs ... compile: the recipe (`Recipe`).
        augment: training augmentation (None: the dataset's default in runs of at least
            `augment_from_epochs` epochs, see `Recipe`).
        seed: training seed (initialisation, data order, augmentation); the split is fixed.
        device: "auto" (CUDA if available, else CPU), "cpu", "cuda", "cuda:1", ...
        num_threads: CPU threads for this run (`torch.set_num_threads`); None leaves torch's default.
        teacher_threads: CPU threads while this run trains a WLD teacher it did not find cached (None:
            `num_threads`). A search gives the CPUs of all its concurrent trials, which wait for that
            teacher meanwhile; the run uses at most its machine's CPUs. The teacher's key ignores it.
        time_budget_s: stop training after this many seconds (stop_reason "time_budget").
        latency: measure inference latency as part of the cost.
        cache_dir: where trained teachers are cached.
        wld: weak logit distillation settings (a dict or a bool in `from_dict`).
        sync_bn: with several data-parallel workers, normalise BatchNorm over the global batch
            (`torch.nn.SyncBatchNorm`; CUDA only) instead of each worker's slice.
    """

    dataset: str = "mnist5k"
    dataset_root: str | None = None
    dataset_kwargs: dict[str, Any] = field(default_factory=dict)
    family: str = "resnet_cifar"
    size: str | None = None
    width: float = 1.0
    family_kwargs: dict[str, Any] = field(default_factory=dict)
    unit: str = "ic"
    strategy: str = "all"
    strategy_args: dict[str, Any] = field(default_factory=dict)
    placement: str | None = None
    augment: bool | None = None
    seed: int = 0
    device: str = "auto"
    num_threads: int | None = None
    teacher_threads: int | None = None
    time_budget_s: float | None = None

    latency: bool = True
    cache_dir: str = "runs/.teachers"
    wld: WLDConfig = field(default_factory=WLDConfig)
    sync_bn: bool = False

    def __post_init__(self) -> None:
        self.wld = WLDConfig.from_dict(self.wld)  # type: ignore[arg-type]
        error = self.recipe_error()
        if error is not None:
            raise error
        checks = {
            "width": float(self.width) > 0,
            "num_threads": self.num_threads is None or int(self.num_threads) >= 1,
            "teacher_threads": self.teacher_threads is None or int(self.teacher_threads) >= 1,
            "time_budget_s": self.time_budget_s is None or float(self.time_budget_s) > 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(f"invalid value {getattr(self, name)!r}", field=name)
        for name in ("dataset_kwargs", "family_kwargs", "strategy_args"):
            if not isinstance(getattr(self, name), Mapping):
                raise ConfigError(f"must be a mapping, got {type(getattr(self, name)).__name__}", field=name)
        if self.wld.teacher_recipe:
            self.teacher_train_config(True)  # a bad teacher recipe fails now, not after the data is loaded

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | CandidateConfig) -> CandidateConfig:
        """Build from a dict (e.g. a search trial's parameters merged over a study's defaults).

        Raises:
            ConfigError: an unknown key (the message lists the valid keys) or an invalid value.
        """
        if isinstance(data, CandidateConfig):
            return data
        if not isinstance(data, Mapping):
            raise ConfigError(f"a candidate config must be a mapping, got {type(data).__name__}")
        _unknown_keys(cls, data)
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (JSON-serialisable for JSON-serialisable kwargs) that `from_dict` reads back."""
        return dataclasses.asdict(self)

    def train_config(self, augment_default: bool) -> TrainConfig:
        """The loop's recipe for this candidate (`augment` None resolves by `Recipe.resolve_augment`
        from the dataset's default, `augment_default`)."""
        return TrainConfig(
            **{key: getattr(self, key) for key in RECIPE_KEYS},
            augment=self.resolve_augment(self.augment, augment_default),
            seed=int(self.seed),
            num_threads=self.num_threads,
            time_budget_s=self.time_budget_s,
            sync_bn=bool(self.sync_bn),
        )

    def teacher_train_config(self, augment_default: bool) -> TrainConfig:
        """The recipe of a cached teacher: the candidate's, with `wld.teacher_epochs`,
        `wld.teacher_seed` and `wld.teacher_recipe` applied, no time budget, and `teacher_threads`
        threads (capped at the machine's CPUs)."""
        student = self.train_config(augment_default)
        overrides = dict(self.wld.teacher_recipe)
        augment = overrides.pop("augment", None)
        if augment is None:
            augment = self.augment
        if self.wld.teacher_epochs is not None:
            overrides["epochs"] = int(self.wld.teacher_epochs)
        teacher = TrainConfig.checked(
            dataclasses.replace(
                student,
                seed=int(self.wld.teacher_seed),
                time_budget_s=None,
                sync_bn=False,
                num_threads=self._teacher_threads(),
                **overrides,
            ),
            prefix="wld.teacher_recipe.",
        )
        teacher.augment = teacher.resolve_augment(augment, augment_default)
        return teacher

    def _teacher_threads(self) -> int | None:
        if self.teacher_threads is None:
            return self.num_threads
        return max(1, min(int(self.teacher_threads), usable_cores()))


@dataclass
class TrainConfig(Recipe):
    """The recipe the training loop (`icbench.training.loop.fit`) runs: a `Recipe` with augmentation
    resolved, a seed, a thread count, an optional wall-clock budget, and whether data-parallel workers
    synchronise BatchNorm (`sync_bn`: `torch.nn.SyncBatchNorm`, CUDA only; a teacher never does)."""

    augment: bool = False
    seed: int = 0
    num_threads: int | None = None
    time_budget_s: float | None = None
    sync_bn: bool = False

    @staticmethod
    def checked(config: TrainConfig, prefix: str = "") -> TrainConfig:
        """A copy of `config` with its numeric fields coerced to their types, or a ConfigError naming
        the field (with `prefix`, e.g. "wld.teacher_recipe.")."""
        out = dataclasses.replace(config)
        error = out.recipe_error(prefix)
        if error is not None:
            raise error
        out.augment = bool(out.augment)
        return out
