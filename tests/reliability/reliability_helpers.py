"""Shared by the reliability tests: tiny study files, CLI subprocesses in a Ray sandbox, storage checks."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from icbench.search.schema import write_study_files

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RUN_STUDY = REPO / "run_study.py"

#: A study whose trials take well under a second of training: what a trial costs here is Ray's worker
#: start-up. Two trials at a time on two CPUs.
TINY_STUDY = """
dataset: {name: synthetic, kwargs: {n: 400, image_size: 16, in_chans: 1}}
family: {name: resnet_cifar, size: resnet8, width: 0.25}
training: {batch_size: 64}
execution: {max_concurrent: 2, cpus_per_trial: 1, num_cpus: 2}
"""
#: Enough distinct points (a continuous learning rate) that no parameter set comes up twice by chance.
TINY_SPACE = """
params:
  unit: {type: categorical, choices: [ic, ic_dual, se, conv]}
  strategy: {type: categorical, choices: [all, every_other, last_k]}
  k: {type: int, low: 1, high: 2, target: strategy_args.k, when: {strategy: [last_k]}}
  lr: {type: float, low: 0.03, high: 0.3, log: true}
"""


def write_study(folder: Path, name: str, body: str, space: str = TINY_SPACE) -> Path:
    """`folder/<name>.yaml` and its space; runs/ and reports/ stay inside `folder`."""
    return write_study_files(folder, name, body, space)


def db_path(study: Path) -> Path:
    return study.parent / "runs" / study.stem / "study.db"


def load_trials(study: Path) -> list[Any]:
    """Every trial of the study, read the way a dashboard does (its own Optuna storage)."""
    import optuna

    storage = optuna.storages.RDBStorage(f"sqlite:///{db_path(study)}")
    try:
        return optuna.load_study(study_name=study.stem, storage=storage).get_trials()
    finally:
        storage.engine.dispose()


def integrity(db: Path) -> str:
    """SQLite's own verdict on the database file: "ok" when nothing is corrupt."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return ";".join(r[0] for r in con.execute("PRAGMA integrity_check"))
    finally:
        con.close()


class RaySandbox:
    """A Ray temp folder of our own (RAY_TMPDIR): every process a run starts carries it in its
    environment, so the ones left behind by a kill can be found and killed by pid, and nothing else."""

    def __init__(self) -> None:
        # Short: Ray puts unix sockets under it, and their paths are limited to 107 bytes.
        self.tmp = Path(tempfile.mkdtemp(prefix="icr-", dir="/tmp"))
        self.tag = f"RAY_TMPDIR={self.tmp}".encode()

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "ICBENCH_CRASH"))}
        env.update(
            RAY_TMPDIR=str(self.tmp),
            PYTHONPATH=os.pathsep.join([str(HERE), str(REPO)]),
            PYTHONUNBUFFERED="1",
            TUNE_DISABLE_AUTO_CALLBACK_LOGGERS="1",
            **extra,
        )
        return env

    def processes(self) -> list[int]:
        """Pids of live processes started under this sandbox."""
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:  # gone, or not ours
                continue
            if self.tag in environ.split(b"\0"):
                pids.append(int(entry.name))
        return pids

    def kill_leftovers(self, grace_s: float = 5.0) -> list[int]:
        """Wait up to `grace_s` for the sandbox's processes to exit, then SIGKILL the rest; returns those."""
        deadline = time.monotonic() + grace_s
        while (left := self.processes()) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return left

    def close(self) -> None:
        self.kill_leftovers(grace_s=0.0)
        shutil.rmtree(self.tmp, ignore_errors=True)


@contextmanager
def ray_sandbox() -> Iterator[RaySandbox]:
    box = RaySandbox()
    try:
        yield box
    finally:
        box.close()


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start a command in a session (and process group) of its own, output to `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(
            cmd, env=env, cwd=REPO, start_new_session=True, stdout=out, stderr=subprocess.STDOUT
        )


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group the command leads: the driver and the Ray processes it started."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def run_cli(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    """`run_study.py ARGS` to completion (killed with its group if it overruns)."""
    proc = subprocess.Popen(
        [sys.executable, str(RUN_STUDY), *args],
        env=env,
        cwd=REPO,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(
            f"run_study.py {' '.join(args)} ran over {timeout} s:\n{out[-3000:]}\n{err[-3000:]}"
        ) from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


MARKER_TIMEOUT_S = 240


def wait_for_marker(marker: Path, proc: subprocess.Popen[bytes], log: Path) -> dict:
    """Wait until a crash-hook run writes its marker file (or fails the test if it ends first)."""
    deadline = time.monotonic() + MARKER_TIMEOUT_S
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before reaching {marker.name}:\n{log.read_text()[-4000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{marker.name} not reached in {MARKER_TIMEOUT_S} s:\n{log.read_text()[-4000:]}"
            )
        time.sleep(0.05)
    return json.loads(marker.read_text())
