"""The batching engine and the registry behind every dataset: `DatasetInfo`, the splits (`Split`,
`TensorSplit`, `LoaderSplit`, `Splits`), dataset options, the `Dataset` base class, `DATASETS`, and the
entry points `dataset_info` and `load_dataset`. The datasets themselves are one file each beside this one.
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from icbench.errors import ConfigError, IcbenchError
from icbench.registry import Registry


class DatasetError(IcbenchError):
    """A dataset root is missing, has the wrong layout, or holds files that cannot be read."""


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and the training loop need to know about a dataset.

    Attributes:
        name: registry name.
        in_chans, image_size, num_classes: the model's input and output shape.
        mean, std: per-channel normalisation applied to images scaled to [0, 1].
        augment: whether training batches are augmented by default.
        crop_padding: random-crop padding in pixels (0: no crop); pads with black (raw 0).
        flip: whether augmentation flips horizontally (never for digits).
        classes: class names, where the dataset has them.
        split_sizes: (train, val, test) sizes, where known without reading the data.
    """

    name: str
    in_chans: int
    image_size: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: bool = False
    crop_padding: int = 0
    flip: bool = False
    classes: tuple[str, ...] | None = None
    split_sizes: tuple[int, int, int] | None = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one image."""
        return (self.in_chans, self.image_size, self.image_size)


# --------------------------------------------------------------------------------------------------
# Splits


class Split(ABC):
    """One part (train, val or test) of a dataset, iterated as (images, labels) batches on a device."""

    device: torch.device

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        augment: bool = False,
        drop_last: bool = False,
        generator: torch.Generator | None = None,
        memory_format: torch.memory_format = torch.contiguous_format,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (images, labels) batches on `self.device`.

        Args:
            batch_size: images per batch.
            shuffle: draw a fresh random order (from `generator`) on every call.
            augment: apply the dataset's training augmentation.
            drop_last: drop a final partial batch (unless it would leave no batch at all).
            generator: random source for order and augmentation; on the split's device for
                `TensorSplit`, on the CPU for `LoaderSplit`.
            memory_format: layout of the image batches (channels_last on CUDA).
        """

    def num_batches(self, batch_size: int, *, drop_last: bool = False) -> int:
        """How many batches `batches(batch_size, drop_last=drop_last)` yields."""
        n = len(self)
        if drop_last and n >= batch_size:
            return n // batch_size
        return -(-n // batch_size)


def random_crop_flip(
    x: torch.Tensor,
    *,
    padding: int,
    flip: bool,
    fill: torch.Tensor,
    generator: torch.Generator | None = None,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> torch.Tensor:
    """Random crop with `padding` and an optional horizontal flip of a whole batch in one gather.

    Each image gets its own offset (and flip) but nothing loops over images: the crop is one
    advanced-indexing call with per-image row and column indices, and the flip reverses the column
    indices of the images that flip.

    Args:
        x: (N, C, H, W) normalised images.
        padding: pixels of padding on each side before cropping back to H × W.
        flip: flip each image horizontally with probability 1/2.
        fill: (C,) value of the padding (the normalised value of a black pixel).
        generator: random source on x's device.
        memory_format: layout of the result.

    Returns:
        The augmented (N, C, H, W) batch (a new tensor; x is not modified).
    """
    n, c, h, w = x.shape
    dev = x.device
    if padding > 0:
        # Pad with the normalised value of black, as CIFAR's zero padding of the raw images does.
        # (x - fill) padded with 0 then + fill would round x; fill the border and copy x in exactly.
        src = fill.to(x.dtype).view(1, c, 1, 1).expand(n, c, h + 2 * padding, w + 2 * padding).clone()
        src[:, :, padding : padding + h, padding : padding + w] = x
        dy = torch.randint(0, 2 * padding + 1, (n, 1), device=dev, generator=generator)
        dx = torch.randint(0, 2 * padding + 1, (n, 1), device=dev, generator=generator)
    else:
        src = x
        dy = dx = torch.zeros(n, 1, dtype=torch.long, device=dev)
    rows = dy + torch.arange(h, device=dev)
    cols = dx + torch.arange(w, device=dev)
    if flip:
        flips = torch.rand(n, 1, device=dev, generator=generator) < 0.5
        cols = torch.where(flips, cols.flip(1), cols)
    batch = torch.arange(n, device=dev).view(n, 1, 1)
    # Advanced indices around a slice put the indexed dims first: the result is (N, H, W, C).
    out = src[batch, :, rows.view(n, h, 1), cols.view(n, 1, w)]
    return out.permute(0, 3, 1, 2).contiguous(memory_format=memory_format)


class TensorSplit(Split):
    """A split held as one normalised image tensor and one label tensor on the training device."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, info: DatasetInfo) -> None:
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"{x.shape[0]} images but {y.shape[0]} labels")
        self.x = x
        self.y = y
        self.info = info
        self.device = x.device
        mean = torch.tensor(info.mean, dtype=x.dtype, device=x.device)
        std = torch.tensor(info.std, dtype=x.dtype, device=x.device)
        self._fill = -mean / std  # normalised black

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        augment: bool = False,
        drop_last: bool = False,
        generator: torch.Generator | None = None,
        memory_format: torch.memory_format = torch.contiguous_format,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self)
        order = torch.randperm(n, device=self.device, generator=generator) if shuffle else None
        augmenting = augment and (self.info.crop_padding > 0 or self.info.flip)
        for i in range(self.num_batches(batch_size, drop_last=drop_last)):
            if order is not None:
                idx = order[i * batch_size : (i + 1) * batch_size]
                xb, yb = self.x[idx], self.y[idx]
            else:
                xb, yb = (
                    self.x[i * batch_size : (i + 1) * batch_size],
                    self.y[i * batch_size : (i + 1) * batch_size],
                )
            if augmenting:
                xb = random_crop_flip(
                    xb,
                    padding=self.info.crop_padding,
                    flip=self.info.flip,
                    fill=self._fill,
                    generator=generator,
                    memory_format=memory_format,
                )
            elif memory_format is not torch.contiguous_format:
                xb = xb.contiguous(memory_format=memory_format)
            yield xb, yb


class LoaderSplit(Split):
    """A split read from disk by a `DataLoader` with workers (augmented by torchvision transforms)."""

    def __init__(
        self,
        dataset: torch.utils.data.Dataset,
        info: DatasetInfo,
        *,
        device: torch.device,
        train_dataset: torch.utils.data.Dataset | None = None,
        num_workers: int = 0,
    ) -> None:
        self.dataset = dataset
        self.train_dataset = train_dataset  # the same images with the training transforms
        self.info = info
        self.device = torch.device(device)
        self.num_workers = num_workers
        self._loaders: dict[tuple[int, bool, bool, bool], torch.utils.data.DataLoader] = {}

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def _loader(
        self,
        batch_size: int,
        shuffle: bool,
        augment: bool,
        drop_last: bool,
        generator: torch.Generator | None,
    ) -> torch.utils.data.DataLoader:
        # One loader per configuration, kept for the split's lifetime, so persistent workers are
        # started once and not once per epoch.
        key = (batch_size, shuffle, augment, drop_last)
        if key not in self._loaders:
            data = self.train_dataset if augment and self.train_dataset is not None else self.dataset
            self._loaders[key] = torch.utils.data.DataLoader(
                data,
                batch_size=batch_size,
                shuffle=shuffle,
                drop_last=drop_last and len(self) >= batch_size,
                num_workers=self.num_workers,
                pin_memory=self.device.type == "cuda",
                persistent_workers=self.num_workers > 0,
                generator=generator,
            )
        return self._loaders[key]

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        augment: bool = False,
        drop_last: bool = False,
        generator: torch.Generator | None = None,
        memory_format: torch.memory_format = torch.contiguous_format,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if generator is not None and generator.device.type != "cpu":
            generator = None  # DataLoader samplers need a CPU generator; order then follows torch's seed
        non_blocking = self.device.type == "cuda"
        for xb, yb in self._loader(batch_size, shuffle, augment, drop_last, generator):
            xb = xb.to(self.device, non_blocking=non_blocking).contiguous(memory_format=memory_format)
            yield xb, yb.to(self.device, non_blocking=non_blocking)


@dataclass
class Splits:
    """The train, validation and test splits of one dataset, and its `DatasetInfo`."""

    train: Split
    val: Split
    test: Split
    info: DatasetInfo

    @property
    def sizes(self) -> tuple[int, int, int]:
        """(train, val, test) sizes."""
        return (len(self.train), len(self.val), len(self.test))


def stratified_split(labels: np.ndarray, fractions: tuple[float, ...], seed: int) -> tuple[np.ndarray, ...]:
    """Split indices into parts of the given sizes, each holding every class in proportion.

    Part k (k ≥ 1) gets round(fractions[k-1]·N) samples; the first part gets the rest. Each class is
    shuffled and its samples are spread evenly over [0, 1] by rank; taking samples in that order
    (ties broken at random) fills every part with each class in proportion, as far as whole samples
    allow, while the totals stay exact even when classes are tiny.

    Args:
        labels: (N,) integer labels.
        fractions: one fraction per part after the first (e.g. (0.15, 0.15) for train/val/test).
        seed: split seed.

    Returns:
        One sorted index array per part: len(fractions) + 1 arrays.
    """
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    n = len(labels)
    position = np.empty(n)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        position[idx[rng.permutation(len(idx))]] = (np.arange(len(idx)) + 0.5) / len(idx)
    order = np.lexsort((rng.random(n), position))
    counts = [int(round(f * n)) for f in fractions]
    if sum(counts) > n:
        raise ValueError(f"fractions {fractions} leave no samples for the first part")
    parts, start = [], 0
    for k in counts:
        parts.append(order[start : start + k])
        start += k
    return tuple(np.sort(p) for p in (order[start:], *parts))


def tensor_split(
    images: np.ndarray, labels: np.ndarray, info: DatasetInfo, device: torch.device
) -> TensorSplit:
    """Scale (N, C, H, W) images with values in [0, 1] to a normalised float tensor on `device`, once."""
    x = torch.as_tensor(np.ascontiguousarray(images), dtype=torch.float32)
    mean = torch.tensor(info.mean).view(1, -1, 1, 1)
    std = torch.tensor(info.std).view(1, -1, 1, 1)
    x = ((x - mean) / std).to(device)
    y = torch.as_tensor(labels, dtype=torch.long).to(device)
    return TensorSplit(x, y, info)


# --------------------------------------------------------------------------------------------------
# Dataset definitions


@dataclass(frozen=True)
class Option:
    """One option a dataset accepts (`dataset.kwargs.<name>` in a study): default, type and valid range.

    Every dataset declares its options, so a bad value is refused by the study checks, before any
    compute, instead of inside each trial.
    """

    default: Any
    kind: type[int] | type[float]
    low: float | None = None
    high: float | None = None
    #: Whether `low` and `high` are themselves valid values.
    low_inclusive: bool = True
    high_inclusive: bool = True
    #: Whether null is valid (it then means "decide for me", as for `num_workers`).
    nullable: bool = False

    def describe(self) -> str:
        """The valid values in words, e.g. "a number in (0, 1)" or "an integer >= 8"."""
        what = "an integer" if self.kind is int else "a number"
        if self.low is not None and self.high is not None:
            lo, hi = "[" if self.low_inclusive else "(", "]" if self.high_inclusive else ")"
            what += f" in {lo}{self.low:g}, {self.high:g}{hi}"
        elif self.low is not None:
            what += f" {'>=' if self.low_inclusive else '>'} {self.low:g}"
        elif self.high is not None:
            what += f" {'<=' if self.high_inclusive else '<'} {self.high:g}"
        return what + (" or null" if self.nullable else "")

    def valid(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.kind is int and not isinstance(value, int):
            return False
        if not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (value == self.low and not self.low_inclusive)):
            return False
        return not (
            self.high is not None and (value > self.high or (value == self.high and not self.high_inclusive))
        )


class Dataset(ABC):
    """A registered dataset: its options, its `DatasetInfo` and how to load its splits."""

    #: Options a user may pass (`dataset_kwargs`), each with its default, type and valid range.
    option_specs: Mapping[str, Option] = {}
    #: Whether the dataset needs a root directory.
    needs_root: bool = False
    #: Whether loaded splits are tensors that may be kept for reuse in this process.
    cacheable: bool = True

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def defaults(self) -> dict[str, Any]:
        """Every option's default value."""
        return {k: spec.default for k, spec in self.option_specs.items()}

    def options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The defaults updated by `options`, each checked against its declaration.

        Raises:
            ConfigError: an unknown option (listing the valid ones) or a value of the wrong type or out
                of range (naming the valid values); its field is `dataset_kwargs.<option>`.
        """
        unknown = sorted(set(options) - set(self.option_specs))
        if unknown:
            valid = ", ".join(sorted(self.option_specs)) or "(none)"
            raise ConfigError(
                f"dataset {self.name!r} has no option(s) {', '.join(unknown)}; valid options: {valid}",
                field=f"dataset_kwargs.{unknown[0]}",
            )
        for key, value in options.items():
            spec = self.option_specs[key]
            if not spec.valid(value):
                raise ConfigError(
                    f"dataset {self.name!r} option {key} must be {spec.describe()}, got {value!r}",
                    field=f"dataset_kwargs.{key}",
                )
        return {**self.defaults, **options}

    @abstractmethod
    def info(self, root: Path | None, **options: Any) -> DatasetInfo:
        """The dataset's `DatasetInfo` (cheap: does not read the images where it can avoid it)."""

    @abstractmethod
    def load(self, root: Path | None, *, seed: int, device: torch.device, **options: Any) -> Splits:
        """Read the data and return its fixed splits on `device`."""

    def check_present(self, root: Path | None) -> None:  # noqa: B027 - optional hook, nothing by default
        """Raise `DatasetError` naming the expected layout and files when what `load` reads is not under
        `root` (cheap: file names only, nothing is read). Datasets that read no files do nothing."""


DATASETS: Registry[type[Dataset]] = Registry("dataset")


def val_fraction_option(default: float) -> Option:
    """The share of the training images held out for validation: some to select on, some to train on."""
    return Option(default, float, low=0, high=1, low_inclusive=False, high_inclusive=False)


def three_way_split(
    images: np.ndarray,
    labels: np.ndarray,
    info: DatasetInfo,
    seed: int,
    device: torch.device,
    fractions: tuple[float, float],
) -> Splits:
    """Stratified, seeded train/val/test `TensorSplit`s of an in-memory dataset (`fractions`: the val and
    test shares)."""
    tr, va, te = stratified_split(labels, fractions, seed)
    return Splits(
        tensor_split(images[tr], labels[tr], info, device),
        tensor_split(images[va], labels[va], info, device),
        tensor_split(images[te], labels[te], info, device),
        info,
    )


# --------------------------------------------------------------------------------------------------
# Entry points

_CACHE: dict[tuple[Any, ...], Splits] = {}


def _freeze(options: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((k, repr(v)) for k, v in options.items()))


def dataset_info(name: str, root: str | os.PathLike[str] | None = None, **options: Any) -> DatasetInfo:
    """The `DatasetInfo` of a dataset without loading its images (for building a model or counting cost).

    Raises:
        UnknownNameError: `name` is not registered (the message lists the known datasets).
        ConfigError: an unknown or invalid option.
    """
    ds = DATASETS.get(name)(name)
    ds.options(options)  # every dataset's options are checked, also where `info` needs none of them
    return ds.info(Path(root) if root is not None else None, **options)


def load_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    **options: Any,
) -> Splits:
    """Load a registered dataset's fixed train/validation/test splits.

    Tensor datasets are kept in memory per (name, root, seed, device, options) for the life of the
    process, so consecutive trials in one worker read them once; their tensors are never modified.

    Args:
        name: a key of `DATASETS` (mnist5k, digits, cifar10, cifar100, imagefolder, synthetic).
        root: directory of datasets read from disk (cifar10, cifar100, imagefolder).
        seed: split seed (which images go to train/val/test); not the training seed.
        device: where tensor datasets are held and where batches are delivered.
        **options: dataset options (`dataset_kwargs`), e.g. `image_size` for digits/imagefolder.

    Returns:
        `Splits` with `train`, `val`, `test` and `info`.

    Raises:
        UnknownNameError: unknown dataset name (lists the known ones).
        DatasetError: missing root, wrong layout (names the expected files) or unreadable files.
        ConfigError: unknown or invalid options.
    """
    ds = DATASETS.get(name)(name)
    ds.options(options)
    dev = torch.device(device)
    path = Path(root).expanduser().resolve() if root is not None else None
    key = (name, str(path) if ds.needs_root else None, seed, str(dev), _freeze(options))
    if ds.cacheable and key in _CACHE:
        return _CACHE[key]
    splits = ds.load(path, seed=seed, device=dev, **options)
    if ds.cacheable:
        _CACHE[key] = splits
    return splits


def clear_dataset_cache() -> None:
    """Forget the tensor datasets kept by `load_dataset` (frees their memory)."""
    _CACHE.clear()
