"""The teacher cache (train once, then load; safe under concurrency) and teacher checkpoints."""

from __future__ import annotations

import json
import threading
import time

import pytest
import torch
from torch import nn

from icbench.data import load_dataset
from icbench.errors import CheckpointError
from icbench.training import TrainConfig
from icbench.training import teacher as teacher_mod
from icbench.training.teacher import (
    cached_teacher,
    checkpoint_teacher,
    read_state_dict,
    teacher_key,
)


@pytest.fixture(scope="module")
def splits():
    return load_dataset("synthetic", n=120, image_size=8, in_chans=3, num_classes=4)


def basic_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 4)
    )


RECIPE = TrainConfig(epochs=1, batch_size=32, lr=0.05)
SPEC = {"family": "tiny", "size": "t", "dataset": "synthetic", "recipe": {"epochs": 1}, "seed": 0}


@pytest.fixture
def count_training(monkeypatch):
    calls = []
    real = teacher_mod.train_teacher

    def counting(*args, **kwargs):
        calls.append(1)
        time.sleep(0.2)  # widen the window in which a second process could start training too
        return real(*args, **kwargs)

    monkeypatch.setattr(teacher_mod, "train_teacher", counting)
    return calls


def test_cache_trains_once_and_then_loads_from_disk(tmp_path, splits, count_training):
    first = cached_teacher(SPEC, tmp_path, build_basic=basic_net, splits=splits, recipe=RECIPE)
    assert first.source == "trained" and len(count_training) == 1
    key = teacher_key(SPEC)
    assert first.key == key
    assert (tmp_path / f"{key}.pt").is_file() and (tmp_path / f"{key}.json").is_file()
    second = cached_teacher(SPEC, tmp_path, build_basic=basic_net, splits=splits, recipe=RECIPE)
    assert second.source == "cache" and len(count_training) == 1
    assert second.val_acc == first.val_acc and second.metrics["spec"] == SPEC
    for k, v in first.state_dict.items():
        assert torch.equal(v, second.state_dict[k])
    assert not second.model.training
    # no temporary files are left behind
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json", ".jsonl", ".lock", ".pt"]
    uses = [json.loads(line) for line in (tmp_path / f"{key}.uses.jsonl").read_text().splitlines()]
    assert [u["event"] for u in uses] == ["trained", "loaded"]  # who trained it, who loaded it


def test_another_recipe_is_another_teacher(tmp_path, splits, count_training):
    cached_teacher(SPEC, tmp_path, build_basic=basic_net, splits=splits, recipe=RECIPE)
    other = {**SPEC, "recipe": {"epochs": 2}}
    assert teacher_key(other) != teacher_key(SPEC)
    cached_teacher(other, tmp_path, build_basic=basic_net, splits=splits, recipe=RECIPE)
    assert len(count_training) == 2


def test_concurrent_requests_train_once(tmp_path, splits, count_training):
    results, errors = [], []

    def worker():
        try:
            results.append(
                cached_teacher(SPEC, tmp_path, build_basic=basic_net, splits=splits, recipe=RECIPE)
            )
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 3
    assert len(count_training) == 1
    assert sorted(r.source for r in results) == ["cache", "cache", "trained"]


def test_corrupt_cache_entry_is_a_checkpoint_error(tmp_path, splits):
    cached_teacher(SPEC, tmp_path, build_basic=basic_net, splits=splits, recipe=RECIPE)
    (tmp_path / f"{teacher_key(SPEC)}.pt").write_bytes(b"\x80\x02garbage")
    with pytest.raises(CheckpointError, match="cached teacher"):
        cached_teacher(SPEC, tmp_path, build_basic=basic_net, splits=splits, recipe=RECIPE)


def test_checkpoint_teacher_loads_a_state_dict(tmp_path, splits):
    torch.manual_seed(0)
    net = basic_net()
    path = tmp_path / "teacher.pt"
    torch.save({"state_dict": net.state_dict(), "epoch": 3}, path)
    teacher = checkpoint_teacher(path, build_basic=basic_net, splits=splits)
    assert teacher.source == "checkpoint" and teacher.key.startswith("checkpoint:")
    assert 0 <= teacher.val_acc <= 1
    x = splits.val.x[:5]
    torch.testing.assert_close(teacher.model(x), net.eval()(x))


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read teacher checkpoint") as err:
        read_state_dict(path, what="teacher checkpoint")
    assert err.value.__cause__ is None and "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_state_dict(tmp_path / "missing.pt")


class _Arbitrary:
    pass


def test_checkpoint_needing_arbitrary_unpickling_is_refused(tmp_path):
    path = tmp_path / "unsafe.pt"
    torch.save({"weight": torch.zeros(2), "obj": _Arbitrary()}, path)
    with pytest.raises(CheckpointError, match="weights-only"):
        read_state_dict(path)


def test_mismatched_checkpoint_lists_the_keys(tmp_path, splits):
    net = basic_net()
    state = net.state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["4.bias"]
    state["0.weight"] = torch.zeros(5, 3, 3, 3)
    path = tmp_path / "mismatch.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as err:
        checkpoint_teacher(path, build_basic=basic_net)
    msg = str(err.value)
    assert "missing keys: 4.bias" in msg and "unexpected keys: extra.weight" in msg and "0.weight" in msg


def test_data_parallel_prefix_is_removed(tmp_path):
    net = basic_net()
    path = tmp_path / "dp.pt"
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, path)
    assert set(read_state_dict(path)) == set(net.state_dict())
