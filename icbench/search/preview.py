"""`icbench run --dry-run` and `icbench validate`: every check a run makes before it trains (the same
functions, `check_study` and `check_run`, so the two cannot disagree on a study), then the study's sites
and the MACs range of its space."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from icbench.errors import ConfigError
from icbench.search import space as sp
from icbench.search.checks import N_PROBE, check_run, check_study
from icbench.search.space import target_trials
from icbench.search.storage import shown_storage
from icbench.search.study import load_study

N_PROBE_DRY = 32


def dry_run(
    path: str | Path, overrides: dict[str, Any] | None = None, echo: Callable[[str], None] = print
) -> None:
    """Validate everything and print what a run would do; trains nothing and writes nothing to storage."""
    from icbench.placement import format_site_table, sites
    from icbench.training import build_candidate

    loaded = load_study(path, overrides)
    try:  # more random points than a run probes, for the MACs range below
        checked = check_study(loaded, n_probe=N_PROBE_DRY)
        beyond = None
    except ConfigError as e:
        checked = check_study(loaded, n_probe=N_PROBE)  # the run's verdict: raises if the run would refuse
        beyond = e  # a point the run does not probe: its trial would fail alone
    skipped = check_run(loaded)  # the environment: data files, storage, resume fingerprint, resources
    c = loaded.config
    basic = checked.basic
    model, _, input_shape = build_candidate(basic)
    echo(f"study {c.name!r} is valid ({loaded.study_path}, search space {loaded.space_path})")
    echo(
        f"dataset {c.dataset.name}, family {basic['family']} {basic['size'] or '(default size)'}, input {input_shape}"
    )
    echo(f"sampler {c.sampler.name} (seed {c.sampler.seed}), target {target_trials(loaded)} trials, "
         f"{c.budget.epochs} epoch(s) each, storage {shown_storage(loaded)}")  # fmt: skip
    echo(f"objectives: {', '.join(f'{o.resolved_direction} {o.name}' for o in c.objectives)}")
    for note in skipped:
        echo(f"not checked here: {note}")
    if beyond is not None:
        echo(f"note: a point the run does not probe before training would fail as a trial: {beyond}")
    echo("\nsites of the base network:")
    echo(format_site_table(sites(model, input_shape, family=basic["family"])))
    lo, hi = min(checked.probe_macs), max(checked.probe_macs)
    echo(
        f"\nMACs over the basic network and {len(checked.probe_macs) - 1} random points of the space: "
        f"{lo / 1e6:.3f} to {hi / 1e6:.3f} MMac (FLOPs = 2 x MACs)"
    )
    if c.constraints.max_macs is not None:
        over = sum(m > c.constraints.max_macs for m in checked.probe_macs)
        echo(
            f"ceiling {c.constraints.max_macs / 1e6:.3f} MMac: {over}/{len(checked.probe_macs)} probed points would be rejected"
        )
    echo(f"distinct placements probed: {len(set(checked.probe_placements))}")
    echo("")
    for line in plan_lines(loaded, checked):
        echo(line)
    echo("dry run: nothing trained, nothing written")


# --------------------------------------------------------------------------------------- the plan

#: The training throughput the plan's GPU-hours assume: ResNet-50 v1.5, PyTorch, NVIDIA DGX A100 (8x A100
#: 80GB), TF32, 7,248 images/s on 8 GPUs (pytorch-21.03 NGC container; DALI data loading). Scaled to a
#: candidate by its MACs (compute-bound): an estimate to plan with, not a measurement of icbench.
REFERENCE_THROUGHPUT_IMG_S_PER_GPU = 7248 / 8
#: ResNet-50's MACs at 224x224 (ptflops aten backend; torchvision publishes 4.09 G), the reference's network.
REFERENCE_MACS = 4.089e9
REFERENCE_SOURCE = (
    "NVIDIA DeepLearningExamples, PyTorch/Classification/ConvNets/resnet50v1.5/README.md, 'Training "
    "performance: NVIDIA DGX A100 (8x A100 80GB)': 7,248 img/s on 8 GPUs in TF32"
)
#: ImageNet-1k (ILSVRC-2012) training images: what an `imagefolder` study is assumed to read when its root
#: is not on the machine running the dry run.
IMAGENET_TRAIN_IMAGES = 1_281_167
#: Training images of the datasets whose size is fixed (before the validation hold-out).
KNOWN_TRAIN_IMAGES = {"cifar10": 50_000, "cifar100": 50_000, "mnist5k": 5_000, "digits": 1_797}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def _train_images(loaded: Any) -> tuple[int | None, str]:
    """Training images per epoch and how that number is known (counted, fixed, or assumed)."""
    import os

    from icbench.data import DATASETS

    d = loaded.config.dataset
    dataset = DATASETS.get(d.name)  # registered classes
    try:
        opts = dataset().options(dict(d.kwargs)) if dataset is not None else dict(d.kwargs)
    except Exception:  # the checks have validated the options; a plan never fails on them
        opts = dict(d.kwargs)
    val_fraction = float(opts.get("val_fraction") or 0.0)
    if d.name in ("synthetic", "mnist5k", "digits"):  # split three ways: at most this many
        total = int(opts.get("n") or 0) if d.name == "synthetic" else KNOWN_TRAIN_IMAGES.get(d.name, 0)
        return (total or None), f"at most {total:,}: {d.name}'s images before its validation and test splits"
    if d.name in KNOWN_TRAIN_IMAGES:
        total, how = KNOWN_TRAIN_IMAGES[d.name], f"{d.name}'s training set"
    elif d.name == "imagefolder":
        root = Path(d.root).expanduser() if d.root else None
        if root is not None and (root / "train").is_dir():
            total = sum(
                1
                for _, _, files in os.walk(root / "train")
                for f in files
                if f.lower().endswith(IMAGE_SUFFIXES)
            )
            how = f"counted in {root / 'train'}"
            if (root / "test").is_dir():
                val_fraction = 0.0  # train/val/test folders: nothing is held out of train/
        else:
            total = IMAGENET_TRAIN_IMAGES
            how = "assumed: ImageNet-1k's training set, the dataset root is not on this machine"
    else:
        return None, f"the size of dataset {d.name!r} is not known before loading it"
    images = int(round(total * (1 - val_fraction)))
    held = f", less the {val_fraction:.0%} validation hold-out" if val_fraction else ""
    return images, f"{total:,} training images{held} ({how})"


def _storage_root(loaded: Any) -> str:
    """Where icbench keeps a study's checkpoints and weights: `storage_path` on a cluster or when it is an
    object-storage URI, else the runs folder."""
    from icbench.objectstore import is_uri

    c = loaded.config
    where = c.execution.storage_path
    if where and (is_uri(where) or c.execution.address):
        return where if is_uri(where) else str(Path(where).expanduser().resolve())
    return str(Path(c.runs_dir).resolve())


def _megabytes(n_bytes: float) -> str:
    if n_bytes >= 1e9:
        return f"{n_bytes / 1e9:.2f} GB"
    return f"{n_bytes / 1e6:.1f} MB" if n_bytes >= 1e6 else f"{n_bytes / 1e3:.1f} kB"


def _macs(n: float) -> str:
    return f"{n / 1e9:.3f} GMac" if n >= 1e9 else f"{n / 1e6:.3f} MMac"


def plan_lines(loaded: Any, checked: Any) -> list[str]:
    """What a run of the study will take, for a researcher about to book a cluster: trials, MACs and
    parameters per candidate, epochs, the size and place of checkpoints and weights, and the compute in
    GPU-hours from a stated and sourced throughput (`REFERENCE_THROUGHPUT_IMG_S_PER_GPU`).

    Args:
        loaded: the loaded study.
        checked: what `check_study` found (the probed candidates' MACs and parameters).
    """
    from icbench.objectstore import join, shown
    from icbench.training import build_candidate

    c = loaded.config
    ex = c.execution
    n_trials, epochs, workers = target_trials(loaded), c.budget.epochs, ex.workers_per_trial
    lines = ["plan (what a run of this study takes, before any early stopping):"]
    gpus = workers * ex.gpus_per_trial
    per_trial = f"{workers} worker(s) x {ex.cpus_per_trial:g} CPU(s)" + (
        f" + {ex.gpus_per_trial:g} GPU(s)" if ex.gpus_per_trial else ""
    )
    lines.append(
        f"  trials: {n_trials}, {epochs} epoch(s) each; {per_trial} per trial"
        f"{f' ({gpus:g} GPUs)' if gpus else ''}, at most {ex.max_concurrent} trial(s) at once"
    )
    macs, params = checked.probe_macs, [p for p in checked.probe_params if p] or [0]
    n_points = len(macs) - 1
    lines.append(
        f"  candidates (the basic network and {n_points} random points): {_macs(min(macs))} to "
        f"{_macs(max(macs))}, {min(params):,} to {max(params):,} parameters"
    )
    # Checkpoint: fp32 weights, one momentum buffer per parameter (SGD), EMA copy if on, buffers (BN stats).
    model, _, _ = build_candidate(checked.basic)
    elem = next(iter(model.parameters())).element_size()
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    weights = max(params) * elem
    momentum = weights if c.training.momentum > 0 else 0
    ema = (weights + buffers) if c.training.ema_decay > 0 else 0
    ckpt = weights + momentum + buffers + ema
    parts = f"weights {_megabytes(weights)} + momentum {_megabytes(momentum)} + buffers {_megabytes(buffers)}"
    parts += f" + EMA {_megabytes(ema)}" if ema else ""
    root = _storage_root(loaded)
    every = int(ex.checkpoint_every)
    if every:
        place = join(root, c.name, "checkpoints", "trial_NNNNN", "state.pt")
        lines.append(
            f"  checkpoint: {_megabytes(ckpt)} per running trial ({parts}), written every {every} epoch(s), "
            f"only the latest kept, at {shown(place)}"
        )
    else:
        lines.append("  checkpoint: none (execution.checkpoint_every: 0): a lost trial starts again from epoch 0")
    if c.evaluation.test == "chosen":
        final = weights + buffers
        lines.append(
            f"  final weights: {_megabytes(final)} per trial, {_megabytes(final * n_trials)} for {n_trials}, at "
            f"{shown(join(root, c.name, 'weights'))}"
        )
    images, how = _train_images(loaded)
    lines.append(f"  data per epoch: {f'{images:,} images' if images else 'unknown'} ({how})")
    teacher = ""
    wld_searched = any(sp.target_of(n, p).partition(".")[0] == "wld" for n, p in loaded.space.params.items())
    if c.wld.teacher_checkpoint:
        teacher = f"  WLD teacher: read from {shown(c.wld.teacher_checkpoint)}, not trained"
    elif c.wld.enabled or wld_searched:
        teacher_epochs = c.wld.teacher_epochs or epochs
        teacher = f"  WLD teacher: trained once ({teacher_epochs} epoch(s)), cached under {shown(join(root, '.teachers'))}"
    if teacher:
        lines.append(teacher)
    if not ex.gpus_per_trial:
        lines.append("  compute: a CPU study; no published throughput is assumed (the trials record their epoch times)")
        return lines
    if not images:
        lines.append("  compute: not estimated (the number of training images is not known)")
        return lines
    rate = [REFERENCE_THROUGHPUT_IMG_S_PER_GPU * REFERENCE_MACS / m for m in (min(macs), max(macs))]
    hours = [images * epochs / r / 3600 for r in rate]  # GPU-hours per trial, cheapest and dearest
    wall = [h / gpus for h in hours]
    lines.append(
        f"  compute: {hours[0]:,.1f} to {hours[1]:,.1f} GPU-hours per trial ({wall[0]:.1f} to {wall[1]:.1f} h on "
        f"its {gpus:g} GPUs), {hours[0] * n_trials:,.0f} to {hours[1] * n_trials:,.0f} GPU-hours for {n_trials} trials"
    )
    if teacher and not c.wld.teacher_checkpoint:
        t_hours = images * (c.wld.teacher_epochs or epochs) / rate[0] / 3600
        lines.append(f"  + the WLD teacher: {t_hours:,.1f} GPU-hours, once")
    lines.append(
        f"  assumed: {REFERENCE_THROUGHPUT_IMG_S_PER_GPU:,.0f} images/s per GPU for ResNet-50 "
        f"({REFERENCE_MACS / 1e9:.2f} GMac), scaled by each candidate's MACs; source: {REFERENCE_SOURCE}. "
        "icbench's DataLoader pipeline is slower than DALI and the IC units' elementwise work is not in MACs: "
        "time one epoch on the cluster before booking it all"
    )
    return lines
