"""`cifar10`: CIFAR-10 from a local root (`cifar-10-batches-py`)."""

from __future__ import annotations

from icbench.data._base import DATASETS
from icbench.data._cifar import CifarDataset


@DATASETS.register("cifar10")
class Cifar10(CifarDataset):
    __doc__ = CifarDataset.__doc__
    folder = "cifar-10-batches-py"
    train_files = tuple(f"data_batch_{i}" for i in range(1, 6))
    test_file = "test_batch"
    meta_file = "batches.meta"
    label_key = "labels"
    names_key = "label_names"
    num_classes = 10
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)
