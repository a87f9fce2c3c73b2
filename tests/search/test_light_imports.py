"""The light commands (`run --dry-run`, `validate`, `report`) never import Ray.

Each command runs in a fresh interpreter through `run_study.py`'s own `main`, which then prints the
Ray modules it ended up with.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from icbench.search.schema import write_study_files

REPO = Path(__file__).resolve().parents[2]
RUN_STUDY = REPO / "run_study.py"

STUDY = """
dataset: {name: synthetic, kwargs: {n: 200, image_size: 16, in_chans: 1}}
family: {name: resnet_cifar, size: resnet8, width: 0.25}
budget: {epochs: 1}
"""
SPACE = """
params:
  unit: {type: categorical, choices: [ic, conv]}
  lr: {type: float, low: 0.03, high: 0.3, log: true}
"""

#: Runs the CLI in this interpreter; an exit handler prints every `ray` module imported (the command
#: may end with `os._exit` once torch is loaded, which runs exit handlers but no `except SystemExit`).
PROBE = """
import atexit, json, runpy, sys
sys.argv = ["run_study.py", *sys.argv[1:]]
atexit.register(lambda: print(json.dumps(
    {{"ray": sorted(m for m in sys.modules if m == "ray" or m.startswith("ray."))}}), flush=True))
runpy.run_path({run_study!r}, run_name="__main__")
"""


def _run(args: list[str], cwd: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(run_study=str(RUN_STUDY)), *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return {"code": done.returncode, **json.loads(done.stdout.strip().splitlines()[-1])}


@pytest.mark.parametrize("command", [["run", "--dry-run"], ["validate"]], ids=["dry_run", "validate"])
def test_dry_run_does_not_import_ray(command: list[str], tmp_path: Path) -> None:
    study = write_study_files(tmp_path, "light", STUDY, SPACE)
    out = _run([command[0], str(study), *command[1:]], tmp_path)
    assert out["code"] == 0
    assert out["ray"] == [], f"Ray modules imported by {command}: {out['ray'][:5]}"
    assert not (tmp_path / "runs").exists()


def test_report_does_not_import_ray(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "tests" / "report"))
    try:
        from report_fixtures import make_search_study
    finally:
        sys.path.remove(str(REPO / "tests" / "report"))
    study = write_study_files(tmp_path, "light", STUDY, SPACE)
    db = tmp_path / "runs" / "light" / "study.db"
    db.parent.mkdir(parents=True)
    make_search_study(f"sqlite:///{db}", name="light")
    out = _run(["report", str(study)], tmp_path)
    assert out["code"] == 0
    assert (tmp_path / "reports" / "light" / "summary.md").is_file()
    assert out["ray"] == [], f"Ray modules imported by report: {out['ray'][:5]}"
