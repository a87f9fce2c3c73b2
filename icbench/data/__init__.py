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

One file per dataset, registered in `DATASETS` (`_base.py`, with the batching engine); adding one is one
file here with one `@DATASETS.register("name")` class, plus its import below and its name in
`icbench/names.py` (checked before torch loads; tests/test_cli.py keeps the two equal).
"""

from icbench.data import cifar10, cifar100, digits, imagefolder, mnist5k, synthetic  # noqa: F401  (registration)
from icbench.data._base import (
    DATASETS,
    DatasetError,
    DatasetInfo,
    LoaderSplit,
    Option,
    Split,
    Splits,
    TensorSplit,
    clear_dataset_cache,
    dataset_info,
    load_dataset,
    random_crop_flip,
    stratified_split,
)

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
