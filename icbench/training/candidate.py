"""`train_candidate`: the single entry point a search trial calls, and `build_candidate`.

One candidate = a family and size, a placement of units over its sites, and a recipe. Training one:
load the data → build the basic network (seeded) → place the units → count the cost → (with WLD)
get the teacher and warm-start from it → run the loop → evaluate on the test split → one metrics dict.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from typing import Any

from torch import nn

from icbench.cost import Cost, measure_cost, measure_latency
from icbench.data import DatasetInfo, Splits, dataset_info, load_dataset
from icbench.errors import ConfigError
from icbench.families import build_model
from icbench.placement import Placement, Site, apply, load_basic_weights, make_placement, sites
from icbench.training.config import CandidateConfig
from icbench.training.loop import (
    EpochCallback,
    evaluate,
    fit,
    num_threads,
    prepare_model,
    resolve_device,
    seed_everything,
)
from icbench.training.teacher import Teacher, cached_teacher, checkpoint_teacher, teacher_spec
from icbench.training.wld import WLDObjective

__all__ = ["METRIC_KEYS", "build_candidate", "train_candidate"]

#: The keys of the dict `train_candidate` returns (the search layer stores them as trial attributes).
METRIC_KEYS = (
    "val_acc",
    "test_acc",
    "macs",
    "params",
    "params_trainable",
    "latency_ms",
    "epochs_done",
    "epochs_target",
    "wall_time_s",
    "train_time_s",
    "curve",
    "diverged",
    "stop_reason",
    "placement",
    "unit",
    "family",
    "size",
    "seed",
    "wld",
    "teacher_key",
    "teacher_val_acc",
    "n_sites",
    "n_unit_sites",
)


def _build_basic(config: CandidateConfig, info: DatasetInfo) -> nn.Module:
    return build_model(
        config.family,
        config.size,
        num_classes=info.num_classes,
        in_chans=info.in_chans,
        image_size=info.image_size,
        width=config.width,
        **config.family_kwargs,
    )


def _placement(config: CandidateConfig, site_list: list[Site]) -> Placement:
    if config.placement is None:
        return make_placement(site_list, config.strategy, config.unit, **config.strategy_args)
    placement = Placement.parse(config.placement)
    if placement.n_sites != len(site_list):
        raise ConfigError(
            f"placement {config.placement!r} has {placement.n_sites} bits but {config.family} "
            f"{config.size or '(default size)'} has {len(site_list)} sites: "
            + ", ".join(s.name for s in site_list),
            field="placement",
        )
    return placement


def _build(config: CandidateConfig, info: DatasetInfo) -> tuple[nn.Module, Placement, list[Site]]:
    model = _build_basic(config, info)
    site_list = sites(model, info.input_shape, config.family)
    placement = _placement(config, site_list)
    apply(model, placement, site_list)
    return model, placement, site_list


def build_candidate(
    config: CandidateConfig | Mapping[str, Any],
    *,
    basic_state_dict: Mapping[str, Any] | None = None,
) -> tuple[nn.Module, Placement, tuple[int, int, int]]:
    """Build a candidate without loading data or training (e.g. to count its cost or reject it).

    The model is initialised with `config.seed`, exactly as `train_candidate` initialises it.

    Args:
        config: the candidate.
        basic_state_dict: weights of the basic network to warm-start from (what WLD's warm start
            loads); the units' own parameters stay at their identity values.

    Returns:
        (model on the CPU in training mode, placement, input shape (C, H, W)).

    Raises:
        ConfigError, UnknownNameError: invalid config, family, size, strategy or placement.
        CheckpointError: `basic_state_dict` does not match the basic network.
    """
    config = CandidateConfig.from_dict(config)
    info = dataset_info(config.dataset, config.dataset_root, **config.dataset_kwargs)
    seed_everything(config.seed)
    model, placement, _ = _build(config, info)
    if basic_state_dict is not None:
        load_basic_weights(model, basic_state_dict)
    return model, placement, info.input_shape


def _as_cost(cost: Cost | Mapping[str, Any]) -> Cost:
    if isinstance(cost, Cost):
        return cost
    try:
        return Cost(
            macs=int(cost["macs"]),
            params=int(cost["params"]),
            params_trainable=int(cost["params_trainable"]),
            latency_ms=None if cost.get("latency_ms") is None else float(cost["latency_ms"]),
        )
    except KeyError as e:
        raise ConfigError(
            f"cost lacks {e.args[0]!r}; give macs, params, params_trainable (latency_ms)"
        ) from None


def _teacher(config: CandidateConfig, splits: Splits, size: str | None) -> Teacher:
    def build_basic() -> nn.Module:
        return _build_basic(config, splits.info)

    if config.wld.teacher_checkpoint:
        return checkpoint_teacher(config.wld.teacher_checkpoint, build_basic=build_basic, splits=splits)
    recipe = config.teacher_train_config(splits.info.augment)
    spec = teacher_spec(config, size=size, recipe=recipe)
    return cached_teacher(spec, config.cache_dir, build_basic=build_basic, splits=splits, recipe=recipe)


def train_candidate(
    config: CandidateConfig | Mapping[str, Any],
    *,
    callback: EpochCallback | None = None,
    cost: Cost | Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build, cost and train one candidate (with or without WLD) and report its metrics.

    Args:
        config: a `CandidateConfig` or a dict for `CandidateConfig.from_dict`.
        callback: called after every epoch with {"epoch", "train_loss", "val_acc", "epoch_time_s"}
            (a search trial reports to Ray Tune here; raising aborts the run).
        cost: the candidate's cost if already counted (e.g. for a MACs ceiling), so it is not
            counted again: a `Cost` or a dict with macs, params, params_trainable, latency_ms.

    Returns:
        A dict with exactly the keys of `METRIC_KEYS`: val_acc and test_acc (NaN if diverged),
        macs, params, params_trainable, latency_ms (None if not measured), epochs_done,
        epochs_target, wall_time_s (everything, teacher included), train_time_s (the loop),
        curve, diverged, stop_reason (None, "diverged" or "time_budget"), placement (canonical
        string), unit, family, size, seed, wld, teacher_key and teacher_val_acc (None without WLD),
        n_sites, n_unit_sites.

    Raises:
        ConfigError, UnknownNameError: invalid config or names (the messages list valid choices).
        DatasetError: dataset root missing or malformed.
        CheckpointError: a teacher checkpoint that is unreadable or does not match.
        TeacherError: the teacher's training diverged.
    """
    start = time.perf_counter()
    config = CandidateConfig.from_dict(config)
    device = resolve_device(config.device)
    with num_threads(config.num_threads):
        splits = load_dataset(config.dataset, config.dataset_root, device=device, **config.dataset_kwargs)
        seed_everything(config.seed)
        model, placement, site_list = _build(config, splits.info)
        size = model.icbench_spec.size if hasattr(model, "icbench_spec") else config.size
        if cost is None:
            cost = measure_cost(model, splits.info.input_shape, latency=config.latency, device=device)
        cost = _as_cost(cost)
        if config.latency and cost.latency_ms is None:
            # MACs and params came from the driver; latency belongs to this trial's device.
            cost = dataclasses.replace(
                cost, latency_ms=measure_latency(model, splits.info.input_shape, device=device)
            )

        objective = None
        teacher: Teacher | None = None
        if config.wld.enabled:
            teacher = _teacher(config, splits, size)
            if config.wld.warm_start:
                load_basic_weights(model, teacher.state_dict)
            objective = WLDObjective(
                prepare_model(teacher.model, device), config.wld, label_smoothing=config.label_smoothing
            )
        recipe = config.train_config(splits.info.augment)
        result = fit(model, splits, recipe, objective=objective, callback=callback)
        test_acc = (
            float("nan")
            if result.diverged
            else evaluate(model, splits.test, batch_size=2 * recipe.batch_size)
        )

    metrics = {
        "val_acc": result.val_acc,
        "test_acc": test_acc,
        "macs": cost.macs,
        "params": cost.params,
        "params_trainable": cost.params_trainable,
        "latency_ms": cost.latency_ms,
        "epochs_done": result.epochs_done,
        "epochs_target": config.epochs,
        "wall_time_s": time.perf_counter() - start,
        "train_time_s": result.train_time_s,
        "curve": result.curve,
        "diverged": result.diverged,
        "stop_reason": result.stop_reason,
        "placement": placement.canonical,
        "unit": placement.unit,
        "family": config.family,
        "size": size,
        "seed": config.seed,
        "wld": config.wld.enabled,
        "teacher_key": teacher.key if teacher else None,
        "teacher_val_acc": teacher.val_acc if teacher else None,
        "n_sites": len(site_list),
        "n_unit_sites": 0 if placement.unit == "conv" else placement.n_units,
    }
    assert tuple(metrics) == METRIC_KEYS
    if result.diverged:
        assert math.isnan(metrics["val_acc"])
    return metrics
