"""Runner guards that act before Ray starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from filelock import FileLock
from search_helpers import write_study

from icbench.errors import IcbenchError
from icbench.search import run_study

STUDY = """
dataset: {name: mnist5k}
family: {name: resnet_cifar, size: resnet8, width: 0.5}
budget: {epochs: 1}
n_trials: 1
"""
SPACE = """
params:
  unit: {type: categorical, choices: [ic, conv]}
"""


def test_a_second_driver_of_the_same_study_is_refused(tmp_path: Path) -> None:
    path = write_study(tmp_path, STUDY, SPACE)
    lock = FileLock(str(tmp_path / "runs" / "s" / "driver.lock"))
    (tmp_path / "runs" / "s").mkdir(parents=True)
    with lock, pytest.raises(IcbenchError, match="already being run by another process"):
        run_study(path, report=False, echo=lambda s: None)
    assert not (tmp_path / "runs" / "s" / "study.db").exists()


def test_objectives_are_named_in_storage_for_plain_optuna_and_the_dashboard(tmp_path: Path) -> None:
    """A study opened with plain Optuna names its objectives (`set_metric_names`), so optuna-dashboard
    and `trials_dataframe()` show `val_acc` and `macs`, not `values_0` and `values_1`; a study stored
    before they were named gets the names on its next open."""
    import optuna

    from icbench.search.schema import load_study
    from icbench.search.storage import make_storage, storage_url
    from icbench.search.study import open_study

    loaded = load_study(write_study(tmp_path, STUDY, SPACE))
    url = storage_url(loaded)
    storage = make_storage(url)
    study = open_study(loaded, url, storage=storage)
    trial = study.ask()
    study.tell(trial, [0.9, 1.0e6])
    plain = optuna.load_study(study_name="s", storage=url)
    assert plain.metric_names == ["val_acc", "macs"]
    assert {"values_val_acc", "values_macs"} <= set(plain.trials_dataframe().columns)
    # An older study without names: named when icbench opens it again.
    storage.engine.dispose()
    from icbench.search import fingerprint as fpr

    old_loaded = load_study(write_study(tmp_path, STUDY, SPACE, "old"))
    old_url = storage_url(old_loaded)
    Path(old_url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    old = optuna.create_study(study_name="old", storage=old_url, directions=["maximize", "minimize"])
    old.set_user_attr(fpr.FINGERPRINT_ATTR, fpr.experiment_fingerprint(old_loaded))
    assert old.metric_names is None
    open_study(old_loaded, old_url)
    assert optuna.load_study(study_name="old", storage=old_url).metric_names == ["val_acc", "macs"]


def test_optuna_dashboard_shows_the_objective_names(tmp_path: Path) -> None:
    """optuna-dashboard (a test dependency) serves a study icbench created with its objectives named."""
    import json
    import shutil
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    from icbench.search.schema import load_study
    from icbench.search.storage import make_storage, storage_url
    from icbench.search.study import open_study

    exe = shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent))
    assert exe is not None, "optuna-dashboard is not installed (it is in the `test` extra)"
    loaded = load_study(write_study(tmp_path, STUDY, SPACE))
    url = storage_url(loaded)
    storage = make_storage(url)
    study = open_study(loaded, url, storage=storage)
    study.tell(study.ask(), [0.9, 1.0e6])
    storage.engine.dispose()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([exe, url, "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline, body = time.monotonic() + 60, None
        while body is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/1", timeout=5) as r:
                    body = json.loads(r.read())
            except OSError:
                time.sleep(0.5)
        assert body is not None, "optuna-dashboard did not answer within 60 s"
        assert body["name"] == "s" and body["objective_names"] == ["val_acc", "macs"]
        assert body["directions"] == ["maximize", "minimize"]
    finally:
        server.terminate()
        server.wait(timeout=30)
