"""`train_candidate`: the single entry point a search trial calls, and `build_candidate`.

One candidate = a family and size, a placement of units over its sites, and a recipe. Training one:
load the data → build the basic network (seeded) → place the units → count the cost → (with WLD)
get the teacher and warm-start from it → run the loop → (if asked) evaluate on the test split and save the
final weights → one metrics dict. `evaluate_saved` evaluates a trained candidate's test split later, from
those weights, so a search can keep the test split out of every trial (DESIGN.md §7).
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from icbench.checkpoints import check_state_dict
from icbench.cost import Cost, measure_cost, measure_latency
from icbench.data import DatasetInfo, Splits, TensorSplit, dataset_info, load_dataset
from icbench.errors import ConfigError
from icbench.families import build_model
from icbench.files import publish
from icbench.machine import describe_machine
from icbench.objectstore import is_uri, write_file
from icbench.placement import Placement, Site, apply, load_basic_weights, make_placement, sites
from icbench.training.config import CandidateConfig
from icbench.training.init import initialise
from icbench.training.loop import (
    EpochCallback,
    FitResult,
    evaluate,
    fit,
    num_threads,
    prepare_model,
    resolve_device,
    seed_everything,
)
from icbench.training.resume import UNTRAINED_FIELDS, CheckpointFolder, fingerprint
from icbench.training.teacher import Teacher, cached_teacher, checkpoint_teacher, read_weights, teacher_spec
from icbench.training.wld import WLDObjective
from icbench.units import LIVENESS_BATCH, calibrate_units, median_delta, unit_deltas

__all__ = [
    "END_OF_TRAINING",
    "METRIC_KEYS",
    "build_candidate",
    "evaluate_saved",
    "known_sites",
    "remember_sites",
    "save_weights",
    "train_candidate",
]

#: `test_evaluated` of a test accuracy measured by `train_candidate` itself, right after training.
END_OF_TRAINING = "end of training"

#: The keys of the dict `train_candidate` returns (the search layer stores them as trial attributes).
METRIC_KEYS = (
    "val_acc",
    "test_acc",
    "test_evaluated",
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
    "unit_delta",
    "unit_deltas",
    "machine",
    "resumed_from_epoch",
    "epochs_retrained",
    "checkpoint_note",
    "checkpoint_time_s",
)

#: Training images the units' thresholds are calibrated on (`unit_init: data`).
CALIBRATION_BATCH = 256


def _build_basic(config: CandidateConfig, info: DatasetInfo) -> nn.Module:
    model = build_model(
        config.family,
        config.size,
        num_classes=info.num_classes,
        in_chans=info.in_chans,
        image_size=info.image_size,
        width=config.width,
        **config.family_kwargs,
    )
    return initialise(model, config.init)


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


#: Sites of a basic network by what builds it: finding them takes a forward pass, and every candidate of
#: a study starts from the same basic network (a search builds hundreds in the driver).
_SITES: dict[str, list[Site]] = {}


def _sites_key(config: CandidateConfig, info: DatasetInfo) -> str:
    return json.dumps(
        [config.family, config.size, config.width, config.family_kwargs, info.input_shape, info.num_classes],
        sort_keys=True, default=str,
    )  # fmt: skip


def known_sites(config: CandidateConfig | Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The sites of `config`'s basic network if this process has found them (by building a candidate on
    it), as plain dicts for `remember_sites`; None otherwise. The driver hands them to the trial."""
    config = CandidateConfig.from_dict(config)
    info = dataset_info(config.dataset, config.dataset_root, **config.dataset_kwargs)
    found = _SITES.get(_sites_key(config, info))
    return None if found is None else [dataclasses.asdict(site) for site in found]


def remember_sites(config: CandidateConfig | Mapping[str, Any], site_list: list[dict[str, Any]]) -> None:
    """Give this process the sites of `config`'s basic network, found elsewhere (`known_sites` in the
    driver): building a candidate on it then skips the forward pass and the MACs count that finding
    them takes (the first count in a process also pays ptflops' import and warm-up, about 2 s here)."""
    config = CandidateConfig.from_dict(config)
    info = dataset_info(config.dataset, config.dataset_root, **config.dataset_kwargs)
    tuples = ("kernel_size", "stride")
    _SITES.setdefault(
        _sites_key(config, info),
        [Site(**{k: tuple(v) if k in tuples else v for k, v in site.items()}) for site in site_list],
    )


def _build(config: CandidateConfig, info: DatasetInfo) -> tuple[nn.Module, Placement, list[Site]]:
    model = _build_basic(config, info)
    key = _sites_key(config, info)
    if key not in _SITES:
        _SITES[key] = sites(model, info.input_shape, config.family)
    site_list = list(_SITES[key])
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
    evaluate_test: bool = True,
    weights_path: str | os.PathLike[str] | None = None,
    checkpoint: CheckpointFolder | None = None,
    checkpoint_every: int = 1,
) -> dict[str, Any]:
    """Build, cost and train one candidate (with or without WLD) and report its metrics.

    Resumable: with a `checkpoint` folder the run continues from the checkpoint there when it is this
    candidate's (`candidate_fingerprint`), exactly as if never stopped, and writes one every
    `checkpoint_every` epochs (`icbench.training.loop.fit`, `icbench.training.resume`). The units'
    data calibration (`unit_init: data`) runs only on a fresh start: a checkpoint restores it.

    Data-parallel: called in every worker of an initialised `torch.distributed` process group of N > 1
    workers (as Ray Train's `TorchTrainer` does), it trains data-parallel (`fit`); `batch_size` is the
    global batch. Every worker returns the same keys and the same training metrics; the fields measured
    on rank 0 only (test_acc, test_evaluated, unit_delta, unit_deltas, checkpoint_time_s) are None or 0
    on the others, and only rank 0 saves `weights_path` and writes checkpoints.

    Args:
        config: a `CandidateConfig` or a dict for `CandidateConfig.from_dict`.
        callback: called after every epoch with {"epoch", "train_loss", "val_acc", "epoch_time_s"}
            (a search trial reports to Ray Tune here; raising aborts the run).
        cost: the candidate's cost if already counted (e.g. for a MACs ceiling), so it is not
            counted again: a `Cost` or a dict with macs, params, params_trainable, latency_ms.
        evaluate_test: evaluate the test split after training. When False nothing here (the
            teacher's training included) reads the test split.
        weights_path: where to save the final state dict (atomically) when the run trained its
            full budget without diverging, for `evaluate_saved`; None saves nothing.
        checkpoint: the trial's checkpoint folder (`icbench.training.resume.CheckpointFolder`, e.g.
            `icbench.objectstore.Folder`); None: no checkpoints.
        checkpoint_every: epochs between checkpoints (0: none written).

    Returns:
        A dict with exactly the keys of `METRIC_KEYS`: val_acc (NaN if diverged), test_acc (NaN if
        diverged, None if not evaluated), test_evaluated (`END_OF_TRAINING`, or None when the test
        split was not evaluated), macs, params, params_trainable, latency_ms (None if not measured), epochs_done,
        epochs_target, wall_time_s (everything, teacher included), train_time_s (the loop),
        curve, diverged, stop_reason (None, "diverged" or "time_budget"), placement (canonical
        string), unit, family, size, seed, wld, teacher_key and teacher_val_acc (None without WLD),
        n_sites, n_unit_sites, unit_delta (median over the unit sites of δ, how much the trained units
        change their sites' outputs, `icbench.units.unit_deltas`, on the first `LIVENESS_BATCH` validation
        images; None for the basic network or a diverged run) and unit_deltas (δ per site, by module
        path), machine (`icbench.machine.describe_machine` of the training device),
        resumed_from_epoch (the checkpoint's epoch the run continued after; 0 when fresh),
        epochs_retrained (epochs a fault lost: started beyond that checkpoint), checkpoint_note
        (None, or why a checkpoint in the folder was not used) and checkpoint_time_s (time spent
        writing checkpoints).

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

        def calibrate(net: nn.Module) -> None:  # on a fresh start only: a checkpoint restores it
            calibrate_units(net, calibration_batch(splits, recipe.seed))

        rank, world = _rank_world()
        result: FitResult = fit(
            model,
            splits,
            recipe,
            objective=objective,
            callback=callback,
            checkpoint=checkpoint,
            checkpoint_every=checkpoint_every,
            fingerprint=candidate_fingerprint(config),
            on_fresh_start=calibrate if recipe.unit_init == "data" else None,
            distributed=world > 1,
        )
        deltas: dict[str, float] | None = None
        if placement.unit != "conv" and placement.n_units and not result.diverged and rank == 0:
            x, _ = next(iter(splits.val.batches(LIVENESS_BATCH)))
            deltas = {k: round(v, 6) for k, v in unit_deltas(model, x).items()}
        test_acc: float | None = None
        if evaluate_test and rank == 0:
            test_acc = (
                float("nan")
                if result.diverged
                else evaluate(model, splits.test, batch_size=2 * recipe.batch_size)
            )
        if weights_path is not None and result.stop_reason is None and rank == 0:
            save_weights(model, weights_path)
        machine = describe_machine(device)

    metrics = {
        "val_acc": result.val_acc,
        "test_acc": test_acc,
        "test_evaluated": END_OF_TRAINING if evaluate_test and rank == 0 else None,
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
        "unit_delta": median_delta(deltas) if deltas is not None else None,
        "unit_deltas": deltas,
        "machine": machine,
        "resumed_from_epoch": result.resumed_from_epoch,
        "epochs_retrained": result.epochs_retrained,
        "checkpoint_note": result.checkpoint_note,
        "checkpoint_time_s": result.checkpoint_time_s,
    }
    assert tuple(metrics) == METRIC_KEYS
    if result.diverged:
        assert math.isnan(metrics["val_acc"])
    return metrics


def candidate_fingerprint(config: CandidateConfig) -> str:
    """What identifies a candidate's checkpoints: a hash of its config less the fields that do not change
    what is trained (`icbench.training.resume.UNTRAINED_FIELDS`: device, threads, teacher cache, ...)."""
    return fingerprint(config.to_dict(), drop=UNTRAINED_FIELDS)


def _rank_world() -> tuple[int, int]:
    """(rank, world size) of the default `torch.distributed` process group; (0, 1) without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def calibration_batch(splits: Splits, seed: int) -> torch.Tensor:
    """`CALIBRATION_BATCH` training images, drawn with `seed` by a generator of their own (the training
    order, which the loop draws from the same seed, is not disturbed), without augmentation."""
    split = splits.train
    device = split.device if isinstance(split, TensorSplit) else torch.device("cpu")
    gen = torch.Generator(device=device).manual_seed(int(seed) + 7919)
    x, _ = next(iter(split.batches(CALIBRATION_BATCH, shuffle=True, generator=gen)))
    return x


def save_weights(model: nn.Module, path: str | os.PathLike[str]) -> Path | str:
    """Save `model`'s state dict (on the CPU, contiguous) to `path` atomically: a reader sees the whole
    file or none (written under a temporary name in the same folder, then renamed; in object storage,
    `path` an `s3://...` URI, one upload that appears only when complete)."""
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    if is_uri(str(path)):
        buffer = io.BytesIO()
        torch.save(state, buffer)
        write_file(str(path), buffer.getvalue())
        return str(path)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
        publish(tmp, path)  # the mode `open()` gives (mkstemp makes 0600)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def evaluate_saved(
    config: CandidateConfig | Mapping[str, Any],
    weights_path: str | os.PathLike[str],
    *,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Test accuracy of a trained candidate, from the final weights `train_candidate` saved.

    The network is built exactly as its trial built it, the weights are loaded (weights only, every key
    checked) and the test split is evaluated as `train_candidate` would have evaluated it at the end of
    training (same batch size, precision and memory format), so the number is the same.

    Args:
        config: the trial's candidate.
        weights_path: the file written through `train_candidate(..., weights_path=...)`.
        device: where to evaluate (default: the candidate's device setting).

    Returns:
        {"test_acc": accuracy, "machine": `describe_machine` of the evaluating device}.

    Raises:
        CheckpointError: the file is missing, unreadable or holds another network's weights.
        ConfigError, UnknownNameError, DatasetError: as for `train_candidate`.
    """
    config = CandidateConfig.from_dict(config)
    dev = resolve_device(config.device if device is None else device)
    state = read_weights(str(weights_path), what="trial weights")  # downloaded first when in object storage
    splits = load_dataset(config.dataset, config.dataset_root, device=dev, **config.dataset_kwargs)
    seed_everything(config.seed)
    model, _, _ = _build(config, splits.info)
    check_state_dict(model, state, source=f"trial weights {weights_path}")
    model.load_state_dict(state)
    prepare_model(model, dev)
    recipe = config.train_config(splits.info.augment)
    test_acc = evaluate(model, splits.test, batch_size=2 * recipe.batch_size)
    return {"test_acc": test_acc, "machine": describe_machine(dev)}
