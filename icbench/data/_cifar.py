"""CIFAR's python batches, read safely, and the loader `cifar10` and `cifar100` share."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from icbench.data._base import (
    Dataset,
    DatasetError,
    DatasetInfo,
    Splits,
    stratified_split,
    tensor_split,
    val_fraction_option,
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


class CifarDataset(Dataset):
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
    option_specs = {"val_fraction": val_fraction_option(0.1)}

    def _dir(self, root: Path | None) -> Path:
        expected = f"{self.folder}/ with {', '.join((*self.train_files, self.test_file, self.meta_file))}"
        if root is None:
            raise DatasetError(f"dataset {self.name!r} needs a root directory containing {expected}")
        root = Path(root)
        base = root if root.name == self.folder else root / self.folder
        get = self.how_to_get(root.parent if root.name == self.folder else root)
        if not base.is_dir():
            raise DatasetError(
                f"dataset {self.name!r}: {base} does not exist; expected {root}/{expected}; {get}"
            )
        missing = [f for f in (*self.train_files, self.test_file, self.meta_file) if not (base / f).is_file()]
        if missing:
            raise DatasetError(
                f"dataset {self.name!r}: {base} lacks {', '.join(missing)}; expected {expected}; {get}"
            )
        return base

    def how_to_get(self, root: Path) -> str:
        """How a user gets the files (the `icbench data` command runs torchvision's downloader)."""
        return f"to download it (needs internet): icbench data {self.name} --root {root}"

    def check_present(self, root: Path | None) -> None:
        self._dir(root)

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
            tensor_split(images[tr] * scale, labels[tr], info, device),
            tensor_split(images[va] * scale, labels[va], info, device),
            tensor_split(test_images * scale, test_labels, info, device),
            info,
        )
