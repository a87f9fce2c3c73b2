"""`digits`: scikit-learn's 1,797 handwritten 8x8 digits, optionally resized, split 70/15/15."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from icbench.data._base import DATASETS, Dataset, DatasetInfo, Option, Splits, three_way_split


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
        return three_way_split(images, bunch.target.astype(np.int64), info, seed, device, (0.15, 0.15))
