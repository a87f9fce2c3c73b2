"""`imagefolder`: ImageNet-style class folders, read by a `DataLoader` with workers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from icbench.data._base import (
    DATASETS,
    Dataset,
    DatasetError,
    DatasetInfo,
    LoaderSplit,
    Option,
    Splits,
    stratified_split,
    val_fraction_option,
)

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
        "val_fraction": val_fraction_option(0.05),
        "num_workers": Option(None, int, low=0, nullable=True),
        # The number of class folders, declared: a study for a cluster whose data is not on the machine
        # that checks it (the dry run) can then build and cost its networks; checked against train/ when
        # the folders are there.
        "num_classes": Option(None, int, low=2, nullable=True),
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
        declared = opts["num_classes"]
        if declared is not None and (root is None or not (Path(root) / "train").is_dir()):
            classes = [f"class_{i}" for i in range(int(declared))]  # the folders are elsewhere
        else:
            try:
                classes, _ = find_classes(str(self._dirs(root)["train"]))
            except FileNotFoundError as e:
                raise DatasetError(f"dataset 'imagefolder': {e}") from None
            if declared is not None and int(declared) != len(classes):
                raise DatasetError(
                    f"dataset 'imagefolder': dataset.kwargs.num_classes is {declared} but {root}/train has "
                    f"{len(classes)} class folders"
                )
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
