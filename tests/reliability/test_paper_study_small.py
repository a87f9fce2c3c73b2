"""The paper study's shape (studies/imagenet_resnet50_cluster.yaml) small enough for this CPU: an
ImageFolder (a few hundred 32x32 PNGs written here), the torchvision ResNet family (its tiny variant), IC
units over chosen stages, WLD from a teacher checkpoint in object storage, trials of 2 data-parallel
workers (gloo, 1 thread each), a checkpoint every epoch, `storage_path` in a real S3-protocol server (moto's
server mode), and the rank-0 worker of the WLD trial SIGKILLed in the middle of epoch 2.

The trial must continue from its epoch-1 checkpoint in the bucket (one epoch trained again), the study must
complete, and its weights must land in the bucket.

Two trials, one after the other on 2 CPUs: the basic network runs after the killed trial, so a worker group
that kept its CPUs after its trial ended (as one stopped at its final report did) would stall the study.
"""

from __future__ import annotations

import io
import os
import signal
import sys
from pathlib import Path

import pytest
import torch
from optuna.trial import TrialState
from reliability_helpers import HERE, load_trials, ray_sandbox, start, wait_for_marker, write_study

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]

CLASSES, TRAIN_PER_CLASS, VAL_PER_CLASS, SIZE = 4, 60, 15, 32


def make_imagefolder(root: Path) -> Path:
    """train/ and val/ class folders of 32x32 PNGs: each class a colour, plus noise (learnable, not trivial)."""
    from PIL import Image

    gen = torch.Generator().manual_seed(0)
    for split, n in (("train", TRAIN_PER_CLASS), ("val", VAL_PER_CLASS)):
        for c in range(CLASSES):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            base = torch.tensor([(c * 60) % 256, (c * 110) % 256, (255 - c * 60) % 256], dtype=torch.float32)
            for i in range(n):
                noise = torch.randint(-90, 90, (SIZE, SIZE, 3), generator=gen).float()
                pixels = (base + noise).clamp(0, 255).to(torch.uint8).numpy()
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


SPACE = """
params:
  unit: {type: categorical, choices: [ic, conv]}
  stages: {type: categorical, choices: ["3,4", "1,2,3,4"], target: strategy_args.stages, when: {unit: [ic]}}
  wld: {type: categorical, choices: [true, false], when: {unit: [ic]}}
"""


def test_the_paper_study_shape_survives_a_killed_worker(s3_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from icbench.families import build_model, tiny_size

    root = make_imagefolder(tmp_path / "imagenet_tiny")
    bucket = s3_server.new_bucket()
    size = tiny_size("resnet")
    basic = build_model("resnet", size, num_classes=CLASSES, in_chans=3, image_size=SIZE)
    buffer = io.BytesIO()
    torch.save(basic.state_dict(), buffer)
    s3_server.client().put_object(Bucket=bucket, Key="teachers/basic.pt", Body=buffer.getvalue())
    body = f"""
dataset: {{name: imagefolder, root: {root}, kwargs: {{num_classes: {CLASSES}, image_size: {SIZE}, val_fraction: 0.2, num_workers: 0}}}}
family: {{name: resnet, size: {size}}}
unit: ic
strategy: stages
strategy_args: {{stages: "1,2,3,4"}}
sampler: {{name: tpe, seed: 0}}
n_trials: 2
budget: {{epochs: 3}}
training: {{batch_size: 32, lr: 0.05, momentum: 0.9, weight_decay: 1.0e-4, schedule: cosine, warmup_epochs: 1}}
wld: {{teacher_checkpoint: "s3://{bucket}/teachers/basic.pt"}}
evaluation: {{test: chosen}}
execution: {{storage_path: "s3://{bucket}/icbench", workers_per_trial: 2, cpus_per_trial: 1, num_cpus: 2,
            max_concurrent: 1, checkpoint_every: 1}}
enqueue:
  - {{unit: ic, stages: "1,2,3,4", wld: true}}
  - {{unit: conv}}
"""
    study = write_study(tmp_path, "paper_small", body, SPACE)
    markers = tmp_path / "markers"
    markers.mkdir()
    log = tmp_path / "run.log"
    with ray_sandbox() as box:
        env = box.env(ICBENCH_FAULT_DIR=str(markers), ICBENCH_FAULT_TRIALS="0", **s3_server.environment())
        proc = start([sys.executable, str(HERE / "fault_hooks.py"), "run", str(study), "--no-report"], env, log)
        info = wait_for_marker(markers / "mid_epoch_0", proc, log)
        os.kill(info["pid"], signal.SIGKILL)  # rank 0's Ray Train worker, mid-epoch 2
        assert proc.wait(timeout=600) == 0, log.read_text()[-4000:]
        box.kill_leftovers()
    trials = load_trials(study)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2, [t.user_attrs.get("reason") for t in trials]
    killed = trials[0].user_attrs
    assert killed["attempts"] == 2 and killed["resumed_from_epoch"] == 1 and killed["epochs_retrained"] == 1, killed
    assert [e["epoch"] for e in killed["curve"]] == [1, 2, 3]
    keys = s3_server.keys(bucket)
    assert {"icbench/paper_small/weights/trial_00000.pt", "icbench/paper_small/weights/trial_00001.pt"} <= set(keys)
    assert any(k.startswith("icbench/paper_small/checkpoints/trial_00000") for k in keys), keys
    assert not [k for k in keys if k.endswith("state.pt")], keys  # removed once the outcomes were recorded
    assert not (tmp_path / "runs" / "paper_small" / "checkpoints").exists()  # they were in the bucket
