"""icbench's files under `execution.storage_path`: a local folder or object storage (`s3://...`).

The object-storage tests run against a real S3-protocol server (moto's server mode, started by the
`s3_server` fixture in tests/conftest.py), never an in-process mock.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from icbench.errors import CheckpointError
from icbench.objectstore import Folder, ObjectStoreError, is_uri, join


def test_join_keeps_local_paths_and_uri_queries() -> None:
    assert join("/data/runs", "study", "w.pt") == os.path.join("/data/runs", "study", "w.pt")
    assert join("s3://b/pre/", "study", "/w.pt") == "s3://b/pre/study/w.pt"
    assert join("s3://b/pre?scheme=http", "x") == "s3://b/pre/x?scheme=http"
    assert is_uri("s3://b/x") and is_uri("gs://b/x")
    assert not is_uri("/tmp/x") and not is_uri("file:///tmp/x") and not is_uri("runs/x")


def test_local_folder_round_trip(tmp_path: Path) -> None:
    folder = Folder(str(tmp_path / "root"))
    assert folder.is_local and folder.unreachable() is None
    assert folder.read("w.pt") is None and not folder.exists("w.pt") and folder.names() == []
    folder.write("a/w.pt", b"\x00first")
    folder.write("a/w.pt", b"second")
    assert folder.read("a/w.pt") == b"second" and folder.exists("a/w.pt")
    child = folder.child("a")
    assert child.read("w.pt") == b"second" and child.local_path == tmp_path / "root" / "a"
    # the atomic write leaves no temporary file behind
    assert folder.names() == ["a/w.pt"]
    child.delete("w.pt")
    child.delete("w.pt")  # absent: no error
    assert folder.read("a/w.pt") is None and folder.names() == []


@pytest.mark.parametrize("uri", ["s3://", "s3:///prefix", "nosuchscheme://bucket/x"])
def test_malformed_uri_is_refused(uri: str) -> None:
    with pytest.raises(ObjectStoreError, match="storage URI"):
        Folder(uri)


def test_s3_folder_round_trip(s3_env) -> None:  # type: ignore[no-untyped-def]
    bucket = s3_env.new_bucket()
    folder = Folder(f"s3://{bucket}/runs/study")
    assert not folder.is_local and folder.local_path is None and folder.unreachable() is None
    assert folder.read("w.pt") is None and not folder.exists("w.pt")
    payload = bytes(range(256)) * 4096  # 1 MiB, binary
    folder.write("weights/t1.pt", payload)
    assert folder.read("weights/t1.pt") == payload and folder.exists("weights/t1.pt")
    child = folder.child("weights")
    assert child.uri == f"s3://{bucket}/runs/study/weights" and child.read("t1.pt") == payload
    assert folder.names() == ["weights/t1.pt"]
    # the object is in the bucket, seen by another client (boto3), not only through icbench
    assert "runs/study/weights/t1.pt" in s3_env.keys(bucket)
    child.delete("t1.pt")
    child.delete("t1.pt")
    assert folder.read("weights/t1.pt") is None
    assert "runs/study/weights/t1.pt" not in s3_env.keys(bucket)


def test_s3_missing_bucket_and_unreachable_endpoint_are_named(s3_env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    assert Folder("s3://icbench-no-such-bucket/x").unreachable() == "bucket 'icbench-no-such-bucket' does not exist"
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    reason = Folder(f"s3://{s3_env.new_bucket()}/x").unreachable()
    assert reason is not None and reason.startswith("cannot reach")


def test_credentials_in_a_uri_are_never_shown() -> None:
    from icbench.objectstore import shown

    assert shown("s3://AKIA:s3cret@bucket/p?region=x") == "s3://***@bucket/p?region=x"
    assert shown("s3://b/p?access_key=AKIA&secret_key=s3cret&scheme=http") == (
        "s3://b/p?access_key=***&secret_key=***&scheme=http"
    )
    assert shown("/local/path") == "/local/path"
    with pytest.raises(ObjectStoreError) as e:
        Folder("s3://AKIA:s3cret@/prefix")
    assert "s3cret" not in str(e.value)


# ------------------------------------------------------------------------- icbench's files in the store


def _tiny_basic() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 64, 4),
    )


def test_teacher_cache_in_object_storage_trains_once_then_loads(s3_env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from icbench.data import load_dataset
    from icbench.training import TrainConfig
    from icbench.training import teacher as teacher_mod

    calls: list[int] = []
    real = teacher_mod.train_teacher

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(teacher_mod, "train_teacher", counting)
    torch.set_num_threads(1)
    splits = load_dataset("synthetic", n=120, image_size=8, in_chans=3, num_classes=4)
    recipe = TrainConfig(epochs=1, batch_size=32, lr=0.05)
    spec = {"family": "tiny", "size": "t", "dataset": "synthetic", "recipe": {"epochs": 1}, "seed": 0}
    bucket = s3_env.new_bucket()
    cache = f"s3://{bucket}/study/.teachers"

    first = teacher_mod.cached_teacher(spec, cache, build_basic=_tiny_basic, splits=splits, recipe=recipe)
    second = teacher_mod.cached_teacher(spec, cache, build_basic=_tiny_basic, splits=splits, recipe=recipe)

    assert (first.source, second.source, len(calls)) == ("trained", "cache", 1)
    for k, v in first.state_dict.items():
        assert torch.equal(v, second.state_dict[k]), k
    key = teacher_mod.teacher_key(spec)
    keys = s3_env.keys(bucket)
    assert f"study/.teachers/{key}.pt" in keys and f"study/.teachers/{key}.json" in keys
    assert sum(k.startswith(f"study/.teachers/{key}.uses/") for k in keys) == 2  # trained, loaded
    # a corrupt entry is a one-line CheckpointError naming the object, not a pickle traceback
    Folder(cache).write(f"{key}.pt", b"not a checkpoint")
    with pytest.raises(CheckpointError, match=f"{bucket}/study/.teachers/{key}.pt"):
        teacher_mod.cached_teacher(spec, cache, build_basic=_tiny_basic, splits=splits, recipe=recipe)


def test_trial_weights_saved_to_and_evaluated_from_object_storage(s3_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from icbench.families import tiny_size
    from icbench.search.trainable import weights_file
    from icbench.training import train_candidate
    from icbench.training.candidate import evaluate_saved

    cand = {
        "dataset": "synthetic",
        "dataset_kwargs": {"n": 160, "image_size": 16, "num_classes": 4},
        "family": "resnet_cifar",
        "size": tiny_size("resnet_cifar"),
        "width": 0.25,
        "epochs": 1,
        "batch_size": 32,
        "lr": 0.05,
        "latency": False,
        "device": "cpu",
        "cache_dir": str(tmp_path / "teachers"),
    }
    bucket = s3_env.new_bucket()
    path = weights_file(f"s3://{bucket}/runs/s/weights", 7)
    assert path == f"s3://{bucket}/runs/s/weights/trial_00007.pt"
    torch.set_num_threads(1)
    trained = train_candidate(cand, weights_path=path)
    assert s3_env.keys(bucket) == ["runs/s/weights/trial_00007.pt"]
    later = evaluate_saved(cand, path)
    assert later["test_acc"] == trained["test_acc"]
    with pytest.raises(CheckpointError, match="trial_00008.pt does not exist"):
        evaluate_saved(cand, weights_file(f"s3://{bucket}/runs/s/weights", 8))
    Folder(f"s3://{bucket}/runs/s/weights").write("trial_00009.pt", b"\x00garbage")
    with pytest.raises(CheckpointError, match=f"s3://{bucket}/runs/s/weights/trial_00009.pt: not a weights-only"):
        evaluate_saved(cand, weights_file(f"s3://{bucket}/runs/s/weights", 9))


# ----------------------------------------------------------------------- a whole study, storage in S3

S3_STUDY = """
dataset: {{name: synthetic, kwargs: {{n: 240, image_size: 16, num_classes: 4}}}}
family: {{name: resnet_cifar, size: {size}, width: 0.25}}
sampler: {{name: random, seed: 0}}
n_trials: 2
budget: {{epochs: 1}}
training: {{batch_size: 32, lr: 0.05}}
wld: {{teacher_epochs: 1}}
evaluation: {{test: chosen}}
execution: {{cpus_per_trial: 1, max_concurrent: 1, num_cpus: 2, storage_path: "s3://{bucket}/cluster"}}
enqueue: [{{unit: ic, wld: true}}, {{unit: conv, wld: false}}]
"""
S3_SPACE = """
params:
  unit: {type: categorical, choices: [ic, conv]}
  wld: {type: categorical, choices: [true, false], when: {unit: [ic]}}
"""


@pytest.mark.slow
def test_a_study_with_storage_in_s3_leaves_weights_teacher_and_ray_results_in_the_bucket(
    s3_server, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    """`execution.storage_path: s3://...` with a local Ray, as a user runs it (`icbench run`, a fresh
    process whose Ray workers inherit the AWS_* variables): everything icbench and Ray Tune keep under
    storage_path lands in the bucket, listed here with boto3."""
    import subprocess
    import sys

    import optuna
    from search_helpers import write_study

    from icbench.families import tiny_size

    bucket = s3_server.new_bucket()
    path = write_study(tmp_path, S3_STUDY.format(bucket=bucket, size=tiny_size("resnet_cifar")), S3_SPACE)
    env = {**os.environ, **s3_server.environment(), "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "icbench", "run", str(path)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    keys = s3_server.keys(bucket)
    assert {"cluster/s/weights/trial_00000.pt", "cluster/s/weights/trial_00001.pt"} <= set(keys), keys
    teachers = [k for k in keys if k.startswith("cluster/.teachers/") and k.endswith(".pt")]
    assert len(teachers) == 1, keys  # trained once by the WLD trial, in the bucket
    assert any(k.startswith("cluster/") and "experiment_state" in k for k in keys), keys  # Ray Tune's own
    assert not (tmp_path / "runs" / "s" / "weights").exists()  # nothing of it on the local disk
    # checkpoints went to the bucket too (each trial's folder is left as pyarrow's empty folder marker once
    # its files are removed, after the trial's outcome was recorded)
    assert not (tmp_path / "runs" / "s" / "checkpoints").exists()
    assert any(k.startswith("cluster/s/checkpoints/trial_00000") for k in keys), keys
    assert not [k for k in keys if k.endswith("state.pt")], keys
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'runs' / 's' / 'study.db'}")
    trials = study.get_trials(deepcopy=False)
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    # the chosen trials were evaluated on the test split after the search, from their weights in S3
    evaluated = [v for k, v in study.user_attrs.items() if k.startswith("test_eval")]
    assert evaluated and all(e["test_acc"] is not None for e in evaluated), evaluated
    assert all(e["weights"].startswith(f"s3://{bucket}/cluster/s/weights/") for e in evaluated)
