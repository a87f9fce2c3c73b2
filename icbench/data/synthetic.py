"""`synthetic`: seeded random images with a learnable signal, for tests and benchmarks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from icbench.data._base import DATASETS, Dataset, DatasetInfo, Option, Splits, three_way_split


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
        return three_way_split(images.numpy(), labels.numpy(), info, seed, device, (0.15, 0.15))
