"""The paper's experiment as a study (studies/imagenet_resnet50_cluster.yaml): its dry run prints the plan a
researcher needs before booking a cluster, with its object storage (bucket, teacher checkpoint) checked
against a real S3-protocol server (moto's server mode), and nothing else of the cluster needed."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
import torch

from icbench.search.preview import (
    IMAGENET_TRAIN_IMAGES,
    REFERENCE_MACS,
    REFERENCE_THROUGHPUT_IMG_S_PER_GPU,
)

STUDY = Path(__file__).resolve().parents[2] / "studies" / "imagenet_resnet50_cluster.yaml"


def test_the_shipped_paper_study_is_the_paper_scale_experiment() -> None:
    from icbench.search.study import load_study

    c = load_study(STUDY).config
    assert (c.family.name, c.family.size, c.dataset.name) == ("resnet", "resnet50", "imagefolder")
    assert c.budget.epochs == 100 and c.training.momentum == 0.9 and c.training.weight_decay == 1e-4
    assert c.training.lr == pytest.approx(0.1 * c.training.batch_size / 256)  # the linear scaling rule
    ex = c.execution
    assert (ex.workers_per_trial, ex.gpus_per_trial, ex.checkpoint_every) == (8, 1, 1)
    assert ex.storage_path.startswith("s3://") and c.wld.teacher_checkpoint.startswith("s3://")


@pytest.mark.slow
def test_the_paper_study_dry_run_prints_its_plan(s3_env, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from icbench.cli import main
    from icbench.families import build_model

    bucket = s3_env.new_bucket()
    # The teacher: the basic ResNet-50's weights, put in the bucket with boto3 (not through icbench).
    basic = build_model("resnet", "resnet50", num_classes=1000, in_chans=3, image_size=224)
    buffer = io.BytesIO()
    torch.save(basic.state_dict(), buffer)
    s3_env.client().put_object(Bucket=bucket, Key="teachers/resnet50_basic.pt", Body=buffer.getvalue())
    n_params = sum(p.numel() for p in basic.parameters())
    n_buffer_bytes = sum(b.numel() * b.element_size() for b in basic.buffers())
    capsys.readouterr()

    code = main([
        "run", str(STUDY), "--dry-run",
        "--set", f"execution.storage_path=s3://{bucket}/icbench",
        "--set", f"wld.teacher_checkpoint=s3://{bucket}/teachers/resnet50_basic.pt",
        "--set", f"storage=sqlite:///{tmp_path / 'study.db'}",  # the database server is the user's
    ])  # fmt: skip

    out, err = capsys.readouterr()
    assert code == 0, err
    assert "nothing trained, nothing written" in out
    # what was not checked here, and why: the data is on the cluster's nodes, and so are its GPUs
    assert re.search(r"not checked here: the dataset files: the cluster's workers read them", out), out
    assert re.search(r"not checked here: the trials' resources on the Ray cluster at auto", out), out
    assert "trials: 12, 100 epoch(s) each; 8 worker(s) x 8 CPU(s) + 1 GPU(s) per trial (8 GPUs)" in out
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("candidates"))
    low, high = (int(x.replace(",", "")) for x in re.findall(r"([\d,]+) to ([\d,]+) parameters", line)[0])
    assert low == n_params < high  # IC units add 2 parameters per output channel of each site
    assert re.search(r"4\.\d{3} GMac to 4\.\d{3} GMac", line), line
    # the checkpoint: fp32 weights + SGD momentum + BatchNorm buffers of the largest candidate probed
    expected = 2 * 4 * high + n_buffer_bytes
    size = re.search(r"checkpoint: ([\d.]+) MB per running trial", out)
    assert size and float(size.group(1)) == pytest.approx(expected / 1e6, abs=0.05), out
    assert f"at s3://{bucket}/icbench/imagenet_resnet50/checkpoints/trial_NNNNN/state.pt" in out
    assert f"at s3://{bucket}/icbench/imagenet_resnet50/weights" in out
    images = round(IMAGENET_TRAIN_IMAGES * 0.95)
    assert f"data per epoch: {images:,} images" in out and "assumed: ImageNet-1k" in out
    assert f"WLD teacher: read from s3://{bucket}/teachers/resnet50_basic.pt, not trained" in out
    # the compute, from the stated and sourced throughput scaled by MACs
    hours = re.search(r"compute: ([\d,.]+) to ([\d,.]+) GPU-hours per trial", out)
    assert hours, out
    basic_macs = float(re.findall(r"(4\.\d{3}) GMac", line)[0]) * 1e9
    per_trial = images * 100 / (REFERENCE_THROUGHPUT_IMG_S_PER_GPU * REFERENCE_MACS / basic_macs) / 3600
    assert float(hours.group(1).replace(",", "")) == pytest.approx(per_trial, rel=0.01)
    assert "GPU-hours for 12 trials" in out
    assert "906 images/s per GPU" in out and "DeepLearningExamples" in out and "7,248 img/s on 8 GPUs" in out


def test_sync_bn_reaches_the_trials_candidate_and_is_fingerprinted(tmp_path: Path) -> None:
    from icbench.search.fingerprint import experiment_fingerprint
    from icbench.search.schema import write_study_files
    from icbench.search.space import base_candidate, teacher_recipe
    from icbench.search.study import load_study
    from icbench.training.config import CandidateConfig

    body = "dataset: {name: synthetic}\nexecution: {workers_per_trial: 2}\ntraining: {sync_bn: true}\n"
    loaded = load_study(write_study_files(tmp_path, "s", body, "params:\n  lr: {type: float, low: 0.01, high: 0.1}\n"))
    cand = base_candidate(loaded)
    assert cand["sync_bn"] is True and CandidateConfig.from_dict(cand).sync_bn is True
    assert "sync_bn" not in teacher_recipe(loaded)  # one teacher for both settings
    on = experiment_fingerprint(loaded)
    off = experiment_fingerprint(load_study(tmp_path / "s.yaml", {"training.sync_bn": False}))
    assert on["training"]["sync_bn"] is True and off["training"]["sync_bn"] is False
    # how many workers and how often a trial checkpoints may change on resume; sync_bn may not
    assert "workers_per_trial" not in on["execution"] and "checkpoint_every" not in on["execution"]
