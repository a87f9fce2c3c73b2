"""Every study file shipped in studies/ passes `run_study.py validate` (the dry run) on a machine that has
what it names (its data, GPU, database server and checkpoint: stood in here where this machine lacks them;
tests/search/test_dry_run_agreement.py checks the studies on this machine as it is)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from icbench.search import dry_run

STUDIES = sorted((Path(__file__).resolve().parents[2] / "studies").glob("*.yaml"))


def make_imagefolder(root: Path, classes: int = 2) -> Path:
    """A valid train/val image-folder layout with a few tiny images per class."""
    for split in ("train", "val"):
        for c in range(classes):
            d = root / split / f"class{c}"
            d.mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (40, 40), (40 * c, 10 * i, 0)).save(d / f"{i}.png")
    return root


def test_there_are_shipped_studies() -> None:
    names = {p.stem for p in STUDIES}
    assert {"quickstart", "ablation_unit_wld"} <= names


@pytest.mark.parametrize("study", STUDIES, ids=[p.stem for p in STUDIES])
def test_shipped_study_passes_the_dry_run(study: Path, tmp_path: Path) -> None:
    overrides: dict[str, object] = {}
    text = study.read_text()
    if "imagefolder" in text:
        # The cluster example points at /datasets/imagenet and a local teacher checkpoint: stand in a
        # tiny valid layout and the basic network's own weights, as a user's machine would have them.
        pytest.importorskip("PIL")
        from icbench.families import build_model
        from icbench.search.study import load_study

        root = make_imagefolder(tmp_path / "imagenet")
        c = load_study(study).config
        basic = build_model(c.family.name, c.family.size, num_classes=2, in_chans=3, image_size=224)
        ckpt = tmp_path / "basic.pt"
        torch.save(basic.state_dict(), ckpt)
        overrides = {"dataset.root": str(root), "wld.teacher_checkpoint": str(ckpt)}
        if "num_classes" in c.dataset.kwargs:  # declared for the real data; the stand-in has 2 classes
            overrides["dataset.kwargs.num_classes"] = 2
    if "storage_path: s3://" in text:  # the bucket it names is the user's (tests/search/test_paper_study.py
        overrides["execution.storage_path"] = str(tmp_path / "shared")  # checks it against an S3 server)
    if "storage: postgresql" in text:  # the database server it names is the user's
        overrides["storage"] = f"sqlite:///{tmp_path / 'study.db'}"
    if "name: cifar" in text:  # the CIFAR python batches (only their names are checked before training)
        from icbench.search.study import load_study

        name = load_study(study).config.dataset.name
        folder = tmp_path / name / ("cifar-10-batches-py" if name == "cifar10" else "cifar-100-python")
        folder.mkdir(parents=True)
        for f in (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta", "train", "test", "meta"):
            (folder / f).touch()
        overrides["dataset.root"] = str(tmp_path / name)
    if "device: cuda" in text and not torch.cuda.is_available():  # the GPU box it names is the user's
        overrides.update({"execution.device": "cpu", "execution.gpus_per_trial": 0, "execution.cpus_per_trial": 1})
    lines: list[str] = []
    dry_run(study, overrides, echo=lines.append)
    out = "\n".join(lines)
    assert "is valid" in out and "nothing trained, nothing written" in out
    assert "MMac" in out
