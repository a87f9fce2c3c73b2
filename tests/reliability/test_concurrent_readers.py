"""Readers while a study writes: a dashboard-style poller (its own Optuna storage, `get_trials` in a loop)
and repeated report builds read the SQLite study while the CLI runs two trials at a time. The study must
not see "database is locked", must lose no trial, and the readers must never see a COMPLETE trial change.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState
from reliability_helpers import TINY_STUDY, db_path, integrity, load_trials, ray_sandbox, start, write_study

from icbench.report import build_report

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]

N_TRIALS = 4
STUDY = TINY_STUDY + f"budget: {{epochs: 2}}\nn_trials: {N_TRIALS}\nsampler: {{name: random, seed: 1}}\n"
REPORT_EVERY_S = 2.0
TIMEOUT_S = 300


def test_report_and_dashboard_read_while_two_trials_write(tmp_path: Path) -> None:
    study = write_study(tmp_path, "readers", STUDY)
    db = db_path(study)
    url = f"sqlite:///{db}"
    log = tmp_path / "run.log"
    errors: list[str] = []
    seen: dict[int, Any] = {}  # number -> values of a trial the readers saw COMPLETE
    polls = reports = reports_while_running = 0
    storage = None

    with ray_sandbox() as box:
        proc = start([sys.executable, "run_study.py", "run", str(study), "--no-report"], box.env(), log)
        deadline = time.monotonic() + TIMEOUT_S
        last_report = 0.0
        try:
            while proc.poll() is None:
                assert time.monotonic() < deadline, f"the study ran over {TIMEOUT_S} s"
                time.sleep(0.05)
                if storage is None:
                    if not db.exists():
                        continue
                    storage = optuna.storages.RDBStorage(url)
                try:
                    if "readers" not in optuna.get_all_study_names(storage):
                        continue
                    trials = optuna.load_study(study_name="readers", storage=storage).get_trials()
                    polls += 1
                    for t in trials:
                        if t.state == TrialState.COMPLETE:
                            assert seen.setdefault(t.number, t.values) == t.values, "a COMPLETE trial changed"
                    if time.monotonic() - last_report > REPORT_EVERY_S:
                        running = any(t.state == TrialState.RUNNING for t in trials)
                        build_report(url, "readers", tmp_path / "report_reads" / str(reports))
                        reports += 1
                        reports_while_running += running
                        last_report = time.monotonic()
                except AssertionError:
                    raise
                except (
                    Exception
                ) as e:  # a reader that fails is a finding too: keep polling, report at the end
                    errors.append(f"{type(e).__name__}: {e}")
        finally:
            if proc.poll() is None:
                proc.kill()
            if storage is not None:
                storage.engine.dispose()
        assert box.kill_leftovers() == []

    output = log.read_text()
    assert proc.returncode == 0, output[-4000:]
    assert "database is locked" not in output.lower()
    assert errors == [], errors[:5]
    assert polls >= 10 and reports >= 2 and reports_while_running >= 1, (
        polls,
        reports,
        reports_while_running,
    )

    print(f"{polls} dashboard polls, {reports} report builds ({reports_while_running} while trials ran)")
    trials = load_trials(study)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * N_TRIALS, "a trial was lost or failed"
    assert all(trials[n].values == values for n, values in seen.items())
    assert integrity(db) == "ok"
