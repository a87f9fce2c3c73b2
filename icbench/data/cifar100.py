"""`cifar100`: CIFAR-100 (fine labels) from a local root (`cifar-100-python`)."""

from __future__ import annotations

from icbench.data._base import DATASETS
from icbench.data._cifar import CifarDataset


@DATASETS.register("cifar100")
class Cifar100(CifarDataset):
    __doc__ = CifarDataset.__doc__
    folder = "cifar-100-python"
    train_files = ("train",)
    test_file = "test"
    meta_file = "meta"
    label_key = "fine_labels"
    names_key = "fine_label_names"
    num_classes = 100
    mean = (0.5071, 0.4865, 0.4409)
    std = (0.2673, 0.2564, 0.2762)
