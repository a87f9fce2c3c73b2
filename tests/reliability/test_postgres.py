"""A study on a real PostgreSQL server (the session's throwaway one, `tests/conftest.py`).

End to end on `postgresql://`: trials, a SIGKILL of the driver in the middle of a trial, a second driver
from another machine's folder refused while the first runs, the resume from that other folder after the
kill, a dashboard-style reader polling all along, and the report. And the driver lock itself, between
two plain processes: held through the database, freed the moment its holder is SIGKILLed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState
from reliability_helpers import HERE, REPO, TINY_STUDY, kill_group, ray_sandbox, run_cli, start, write_study

from icbench.search.lock import DriverLockError, driver_lock
from icbench.search.storage import resolve_url

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]

N_TRIALS = 4
MARKER_TIMEOUT_S = 240


def _study(url: str) -> str:
    return TINY_STUDY + (
        f"budget: {{epochs: 2}}\nn_trials: {N_TRIALS}\nsampler: {{name: tpe, seed: 0}}\nstorage: {url}\n"
    )


class Dashboard(threading.Thread):
    """Polls the study the way optuna-dashboard does (a storage of its own, `get_trials` in a loop) and
    checks that no COMPLETE trial ever changes or disappears."""

    def __init__(self, url: str, name: str) -> None:
        super().__init__(daemon=True)
        self.url, self.name = url, name
        self.stop = threading.Event()
        self.polls = 0
        self.max_complete = 0
        self.errors: list[str] = []
        self.seen: dict[int, Any] = {}

    def run(self) -> None:
        storage = optuna.storages.RDBStorage(resolve_url(self.url))
        try:
            while not self.stop.wait(0.1):
                try:
                    if self.name not in optuna.get_all_study_names(storage):
                        continue
                    trials = optuna.load_study(study_name=self.name, storage=storage).get_trials()
                except Exception as e:  # a failing reader is a finding: keep polling, report at the end
                    self.errors.append(f"{type(e).__name__}: {e}")
                    continue
                self.polls += 1
                complete = {t.number: t.values for t in trials if t.state == TrialState.COMPLETE}
                for number, values in self.seen.items():
                    if complete.get(number) != values:
                        self.errors.append(f"COMPLETE trial {number} changed or vanished")
                self.seen.update(complete)
                self.max_complete = max(self.max_complete, len(complete))
        finally:
            storage.engine.dispose()


def _wait_for(marker: Path, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + MARKER_TIMEOUT_S
    while not marker.exists():
        assert proc.poll() is None, f"the run ended before {marker.name}:\n{log.read_text()[-4000:]}"
        assert time.monotonic() < deadline, f"{marker.name} not reached:\n{log.read_text()[-4000:]}"
        time.sleep(0.05)


def test_postgres_study_kill_second_driver_resume_report(tmp_path: Path, postgres_url: str) -> None:
    here = write_study(tmp_path / "machine_a", "pgsoak", _study(postgres_url))
    there = write_study(tmp_path / "machine_b", "pgsoak", _study(postgres_url))  # same study, other folder
    markers = tmp_path / "markers"
    markers.mkdir()
    log = tmp_path / "runs.log"
    dashboard = Dashboard(postgres_url, "pgsoak")
    dashboard.start()
    try:
        with ray_sandbox() as box:
            cmd = [sys.executable, str(HERE / "crash_hooks.py"), "run", str(here)]
            proc = start(cmd, box.env(ICBENCH_CRASH_AT="mid_trial", ICBENCH_CRASH_DIR=str(markers)), log)
            _wait_for(markers / "mid_trial", proc, log)

            # A second driver (another machine: its own folder, so no shared file) is refused by the database.
            refused = run_cli(["run", str(there)], box.env(), timeout=180)
            assert refused.returncode != 0
            assert "already being run by another driver" in refused.stdout + refused.stderr

            before = optuna.load_study(study_name="pgsoak", storage=postgres_url).get_trials()
            complete_before = {
                t.number: (t.params, t.values) for t in before if t.state == TrialState.COMPLETE
            }
            assert complete_before and any(t.state == TrialState.RUNNING for t in before)
            kill_group(proc)
            box.kill_leftovers()

            # The lock died with the killed driver's connection: the other machine resumes at once.
            done = run_cli(["run", str(there)], box.env(), timeout=300)
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
            assert "marked FAIL (interrupted)" in done.stdout
            report = run_cli(["report", str(there)], box.env(), timeout=120)
            assert report.returncode == 0, report.stdout[-3000:] + report.stderr[-3000:]
            assert box.kill_leftovers() == []
    finally:
        dashboard.stop.set()
        dashboard.join(timeout=30)

    trials = optuna.load_study(study_name="pgsoak", storage=postgres_url).get_trials()
    complete = {t.number: (t.params, t.values) for t in trials if t.state == TrialState.COMPLETE}
    assert len(complete) == N_TRIALS
    assert all(complete[n] == record for n, record in complete_before.items()), "a COMPLETE trial changed"
    interrupted = [t for t in trials if t.state == TrialState.FAIL]
    assert interrupted and all(t.user_attrs["status"] == "interrupted" for t in interrupted)
    trained = [json.dumps(t.params, sort_keys=True) for t in trials if "curve" in t.user_attrs]
    assert len(trained) == len(set(trained)), "a parameter set was trained twice"
    assert dashboard.errors == [], dashboard.errors[:5]
    assert dashboard.polls > 10 and dashboard.max_complete == N_TRIALS
    out = tmp_path / "machine_b" / "reports" / "pgsoak"
    assert {"summary.md", "trials.csv", "pareto.png"} <= {p.name for p in out.iterdir()}
    print(
        f"postgres soak: {len(trials)} trials, {len(complete)} complete, {len(interrupted)} interrupted, "
        f"dashboard polls {dashboard.polls}"
    )


HOLDER = """
import sys, time
from pathlib import Path
from icbench.search.lock import driver_lock
with driver_lock(sys.argv[1], "locked", Path(sys.argv[2])):
    print("held", flush=True)
    time.sleep(600)
"""


def test_database_driver_lock_between_two_processes(tmp_path: Path, postgres_url: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, postgres_url, str(tmp_path / "a")],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        # Another run folder (another machine): only the database can refuse it.
        refused = pytest.raises(DriverLockError, match="already being run by another driver")
        with refused, driver_lock(postgres_url, "locked", tmp_path / "b"):
            pass
        with driver_lock(postgres_url, "another_study", tmp_path / "b"):
            pass  # the lock is per study
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
    deadline = time.monotonic() + 30
    while True:  # the server notices the closed connection within moments
        try:
            with driver_lock(postgres_url, "locked", tmp_path / "b"):
                break
        except DriverLockError:
            assert time.monotonic() < deadline, "the killed holder's lock was never freed"
            time.sleep(0.2)
