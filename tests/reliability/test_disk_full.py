"""A disk that fills during a run, and places that cannot be written at all.

The study's run folder is a small tmpfs mount of its own. When the first trial is COMPLETE the test fills
the mount to the last byte; the run must then stop with one line that names the place and says "no space
left", exit status 1 (a fault of the machine, not of the input), keep every COMPLETE trial, and the same
command must finish the study once the space is freed. A read-only mount as `runs_dir` is refused before
anything is written (exit 2, the field named).

Mounting needs root (or CAP_SYS_ADMIN); where it is refused the tests skip and say why.
"""

from __future__ import annotations

import contextlib
import io
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from reliability_helpers import RUN_STUDY, db_path, ray_sandbox, run_cli, start, write_study

pytestmark = [pytest.mark.xdist_group("ray")]

STUDY = """
dataset: {name: synthetic, kwargs: {n: 200, image_size: 16, in_chans: 1}}
family: {name: resnet_cifar, size: resnet8, width: 0.25}
budget: {epochs: 1}
n_trials: 4
sampler: {name: random, seed: 0}
execution: {max_concurrent: 1, cpus_per_trial: 1, num_cpus: 2}
"""
SPACE = "params:\n  lr: {type: float, low: 0.01, high: 0.3, log: true}\n"


def _mount(point: Path, options: str) -> Iterator[Path]:
    point.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'mount refused'}); needs root")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)


@pytest.fixture
def small_runs(tmp_path: Path) -> Iterator[Path]:
    """`tmp_path/runs` as a 48 MiB tmpfs (a study database, Ray's trial folders and weights fit)."""
    yield from _mount(tmp_path / "runs", "size=48m,mode=0755")


@pytest.fixture
def read_only_runs(tmp_path: Path) -> Iterator[Path]:
    yield from _mount(tmp_path / "runs", "ro,size=1m,mode=0755")


def _complete(db: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
    except sqlite3.Error:
        return 0
    try:
        return int(con.execute("SELECT count(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0])
    except sqlite3.Error:
        return 0
    finally:
        con.close()


def _fill(folder: Path) -> Path:
    """Write `folder/filler` until the filesystem is full; returns it."""
    filler = folder / "filler"
    block = b"\0" * (1 << 16)
    with filler.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(block)
        except OSError:
            pass
        try:  # the last partial block, to the byte
            while True:
                f.write(b"\0" * 512)
        except OSError:
            pass
    return filler


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_full_disk_stops_the_run_in_one_line_and_the_same_command_resumes(
    small_runs: Path, tmp_path: Path
) -> None:
    study = write_study(tmp_path, "full", STUDY, SPACE)
    db = db_path(study)
    log = tmp_path / "run.log"
    with ray_sandbox() as ray:
        proc = start([sys.executable, str(RUN_STUDY), "run", str(study)], ray.env(), log)
        deadline = time.monotonic() + 600
        while _complete(db) < 1:
            assert proc.poll() is None, f"the run ended before its first trial:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "no COMPLETE trial in time"
            time.sleep(0.2)
        kept = _complete(db)
        filler = _fill(small_runs)
        try:
            code = proc.wait(timeout=600)
        finally:
            if proc.poll() is None:
                proc.kill()
        output = log.read_text()
        errors = [line for line in output.splitlines() if line.startswith("error: ")]
        assert code == 1, output[-3000:]
        assert "Traceback" not in output, output[-5000:]
        assert len(errors) == 1 and "no space left" in errors[0], output[-3000:]
        assert str(small_runs) in errors[0], errors[0]  # the place: the study database or a trial folder
        assert output.rstrip().endswith(errors[0]), "the error is the run's last word"
        filler.unlink()
        assert _complete(db) >= kept  # nothing COMPLETE lost
        done = run_cli(["run", str(study), "--no-report"], ray.env(), timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert _complete(db) >= 4


def test_a_read_only_runs_dir_is_refused_before_anything_is_written(
    read_only_runs: Path, tmp_path: Path
) -> None:
    from icbench.cli import main

    study = write_study(tmp_path, "ro", STUDY, SPACE)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["run", str(study)])
    lines = err.getvalue().strip().splitlines()
    assert code == 2 and len(lines) == 1, err.getvalue()
    assert "field 'runs_dir'" in lines[0] and "read-only filesystem" in lines[0], lines[0]
    assert list(read_only_runs.iterdir()) == []


def test_a_full_disk_is_recognised_through_the_wrappers_and_named(tmp_path: Path) -> None:
    """What the run's writers raise on a full disk, as they raise it: Python's OSError (with the file),
    SQLite's error inside SQLAlchemy's inside Optuna's; the line names the file, else the storage the
    command writes (`note_writing`). Any other error is not a full disk."""
    import errno

    import optuna

    from icbench.places import disk_full, note_writing

    oserror = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "weights.pt"))
    assert disk_full(RuntimeError("saving failed")) is None
    wrapped = RuntimeError("saving the weights failed")
    wrapped.__cause__ = oserror
    line = disk_full(wrapped)
    assert line is not None and "no space left" in line and str(tmp_path / "weights.pt") in line
    note_writing(tmp_path / "study.db")
    inner = sqlite3.OperationalError("database or disk is full")
    outer = optuna.exceptions.StorageInternalError("An exception is raised during the commit.")
    outer.__cause__ = inner
    line = disk_full(outer)
    assert line is not None and str(tmp_path / "study.db") in line and "run the same command again" in line
    assert disk_full(sqlite3.OperationalError("database is locked")) is None
