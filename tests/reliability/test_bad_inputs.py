"""Malformed inputs (bad_inputs/cases.yaml): each is refused by `run_study.py run` with one clear error
naming the file and the field, before Ray starts, before any training, and without writing anything.

The cases run in-process through the CLI's `main()` (one Python, so the whole corpus takes seconds);
one case also runs as a real subprocess to check the exit code and stderr end to end.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.abc
import importlib.util
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from reliability_helpers import HERE, RUN_STUDY

CORPUS = HERE / "bad_inputs"
CASES: dict[str, dict[str, Any]] = yaml.safe_load((CORPUS / "cases.yaml").read_text())["cases"]
#: What a payload in a pickle or a YAML tag would create in the working directory if it ran.
MARKER = "PAYLOAD_EXECUTED"


def _cli() -> Any:
    spec = importlib.util.spec_from_file_location("run_study_cli", RUN_STUDY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _snapshot(root: Path) -> dict[str, str]:
    """Every file under `root` with the hash of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _make_study_db(work: Path) -> None:
    """The setup of the resume cases: a study database created by the original study file."""
    from icbench.search.storage import storage_url
    from icbench.search.study import load_study, open_study

    loaded = load_study(work / "studies" / "resume_original.yaml")
    study = open_study(loaded, storage_url(loaded))
    storage = getattr(study._storage, "_backend", study._storage)  # Optuna wraps RDBStorage in a cache
    storage.engine.dispose()  # close it, as a finished run would


class _BlockImports(importlib.abc.MetaPathFinder):
    """Makes the named top-level modules fail to import, as they would where they are not installed."""

    def __init__(self, names: list[str]) -> None:
        self.names = set(names)

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if fullname.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


def _block_imports(names: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    for mod in [m for m in sys.modules if m.partition(".")[0] in names]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setattr(sys, "meta_path", [_BlockImports(names), *sys.meta_path])


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the corpus as the working directory; Ray and training are booby-trapped."""
    from icbench.search import confirm, runner, tabulate
    from icbench.search.executors import ray_tune

    dst = tmp_path / "corpus"
    shutil.copytree(CORPUS, dst, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.chdir(dst)

    def unreachable(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("validation let a malformed input through to Ray or training")

    monkeypatch.setattr(ray_tune, "init_ray", unreachable)
    for command in (runner, confirm, tabulate):  # the study commands, each as it calls them
        monkeypatch.setattr(command, "execute", unreachable)
    for command in (runner, tabulate):
        monkeypatch.setattr(command, "write_report", unreachable)
    return dst


def test_the_corpus_is_indexed_and_large_enough() -> None:
    studies = {p.stem for p in (CORPUS / "studies").glob("*.yaml")}
    assert studies - set(CASES) == {"resume_original"}, "every study file is a case (or a case's setup)"
    assert set(CASES) <= studies
    assert len(CASES) >= 25


@pytest.mark.parametrize("name", sorted(CASES))
def test_malformed_input_is_refused_before_any_compute(
    name: str, work: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    case = CASES[name]
    if case.get("setup") == "resume_original":
        _make_study_db(work)
    if case.get("block_imports"):
        _block_imports(case["block_imports"], monkeypatch)
    before = _snapshot(work)
    capsys.readouterr()

    code = _cli().main(["run", f"studies/{name}.yaml"])

    out, err = capsys.readouterr()
    assert code != 0
    assert err.startswith("error: ") and "Traceback" not in err, err
    message = err[len("error: ") :]
    assert case.get("file", f"studies/{name}.yaml") in message, "the error must name the file"
    field = case["field"]
    if field is not None:
        named = f"field '{field}'" in message or (case.get("field_in_text") and field in message)
        assert named, f"the error must name the field {field!r}: {message}"
    for text in case["contains"]:
        assert text in message, f"{text!r} not in: {message}"
    assert not (work / MARKER).exists(), "something in an input file was executed"

    after = _snapshot(work)
    if case.get("setup") == "resume_original":
        # Opening the database for the check may leave SQLite's lock files and the driver lock; the
        # database itself, and its write-ahead log, must hold nothing new.
        db = "runs/resume/study.db"
        assert after[db] == before[db], "the refused resume changed the study database"
        extra = set(after) - set(before)
        assert extra <= {"runs/resume/study.db-wal", "runs/resume/study.db-shm", "runs/resume/driver.lock"}
        if "runs/resume/study.db-wal" in extra:
            assert (work / "runs/resume/study.db-wal").stat().st_size == 0
        assert {k: v for k, v in after.items() if k in before} == before
    else:
        assert after == before, f"files written or changed: {sorted(set(after) ^ set(before))}"
        assert not (work / "runs").exists()


COMMANDS: dict[str, dict[str, Any]] = yaml.safe_load((CORPUS / "commands.yaml").read_text())["commands"]
#: The password some corpus files hold in a storage URL: no case may print it.
SECRET = "corpus-s3cret"


def test_the_command_corpus_covers_every_sub_command() -> None:
    from icbench.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    covered = {case["argv"][0] for case in COMMANDS.values()}
    # `data` and `completion` read no file a user writes (a dataset name and a shell name, each checked
    # by argparse's choices)
    assert set(sub.choices) - covered <= {"data", "completion"}, set(sub.choices) - covered
    assert len(COMMANDS) >= 50


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_bad_command_is_refused_in_one_line(
    name: str, work: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`icbench <argv>` with one bad argument or one place that cannot work (bad_inputs/commands.yaml):
    its exit status, one line naming the option or field, nothing written, no secret printed."""
    from icbench.estimators import run as estimate_run

    def unreachable(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a bad command got as far as scoring")

    monkeypatch.setattr(estimate_run, "evaluate", unreachable)
    case = COMMANDS[name]
    for rel, text in (case.get("write") or {}).items():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text(text)
    for key, value in (case.get("env") or {}).items():
        monkeypatch.setenv(key, value)
    if case.get("block_imports"):
        _block_imports(case["block_imports"], monkeypatch)
    before = _snapshot(work)
    capsys.readouterr()

    code = _cli().main([str(a) for a in case["argv"]])

    out, err = capsys.readouterr()
    assert code == case.get("exit", 2), (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert case.get("progress") or out == "", out
    assert case["named"] in lines[0], f"{case['named']!r} not named in: {lines[0]}"
    for text in case.get("contains", []):
        assert text in lines[0], f"{text!r} not in: {lines[0]}"
    assert SECRET not in out + err
    assert _snapshot(work) == before, "a refused command wrote or changed a file"
    assert not (work / MARKER).exists()


def test_load_trials_says_what_is_wrong_with_the_study_database(work: Path) -> None:
    """`icbench.load_trials` on a study whose database is not an SQLite file names the file and what is
    wrong with it (not "no study named ...")."""
    import icbench
    from icbench.report.load import StorageError

    db = work / "runs" / "places" / "study.db"
    db.parent.mkdir(parents=True)
    db.write_text("a text file where the study database belongs\n")
    with pytest.raises(StorageError, match=r"runs/places/study\.db is not an SQLite database"):
        icbench.load_trials("command_studies/ok.yaml")
    db.unlink()
    db.mkdir()
    with pytest.raises(StorageError, match="is a directory"):
        icbench.load_trials("command_studies/ok.yaml")


def test_the_payloads_are_live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pickle payloads of the corpus really run code when loaded unsafely (so the test above, where
    the marker never appears, means something)."""
    import torch

    monkeypatch.chdir(tmp_path)
    with (CORPUS / "checkpoints" / "legacy_pickle_payload.pt").open("rb") as f:
        pickle.load(f)  # noqa: S301 - on purpose: this is the unsafe load the harness never does
    assert (tmp_path / MARKER).exists()
    (tmp_path / MARKER).unlink()
    torch.load(CORPUS / "checkpoints" / "pickle_payload.pt", weights_only=False)
    assert (tmp_path / MARKER).exists()


def test_cli_subprocess_exit_code_and_stderr(tmp_path: Path) -> None:
    """One case end to end as a real process: exit code 2, one error line on stderr, nothing run."""
    work = tmp_path / "corpus"
    shutil.copytree(CORPUS, work)
    done = subprocess.run(
        [sys.executable, str(RUN_STUDY), "run", "studies/python_tag.yaml"],
        cwd=work,
        env={**os.environ, "PYTHONPATH": str(RUN_STUDY.parent)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: file studies/python_tag.yaml: not valid YAML")
    assert done.stdout == ""
    assert not (work / MARKER).exists() and not (work / "runs").exists()


#: Runs `run_study.py` with the named modules made unimportable (as if not installed).
BLOCKED_CLI = """
import importlib.abc, runpy, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{fullname!r}}", name=fullname)
sys.meta_path.insert(0, Block())
sys.argv = ["run_study.py", *sys.argv[1:]]
runpy.run_path({run_study!r}, run_name="__main__")
"""


@pytest.mark.parametrize("command", ["run", "report"])
def test_missing_database_driver_is_one_line(command: str, tmp_path: Path) -> None:
    """`storage: postgresql://...` where no PostgreSQL driver can be imported: exit 2, one line that says
    what to install, nothing written; for `report` as for `run`."""
    work = tmp_path / "corpus"
    shutil.copytree(CORPUS, work)
    script = BLOCKED_CLI.format(blocked=["psycopg", "psycopg2"], run_study=str(RUN_STUDY))
    done = subprocess.run(
        [sys.executable, "-c", script, command, "studies/storage_driver_missing.yaml"],
        cwd=work,
        env={**os.environ, "PYTHONPATH": str(RUN_STUDY.parent)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: file studies/storage_driver_missing.yaml, field 'storage': ")
    assert "pip install 'icbench[postgres]'" in lines[0]
    assert not (work / "runs").exists() and not (work / "reports").exists()


def test_a_plain_postgresql_url_uses_the_installed_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    """`postgresql://` names no driver: with only psycopg2 (or only psycopg) installed, that one is used."""
    from icbench.search import storage

    for installed in ("psycopg", "psycopg2"):
        monkeypatch.setattr(
            storage,
            "_driver_missing",
            lambda d, ok=installed: None if d.driver == ok else f"No module named {d.driver!r}",
        )
        url = storage.resolve_url("postgresql://icbench:pw@db-host/icbench")
        default = "postgresql://icbench:pw@db-host/icbench"
        assert url in (default, f"postgresql+{installed}://icbench:pw@db-host/icbench")
        from sqlalchemy.engine import make_url

        assert make_url(url).get_dialect().driver == installed


def _datasets() -> list[str]:
    from icbench.data import DATASETS

    return sorted(DATASETS.keys())


@pytest.mark.parametrize("dataset", _datasets())
def test_every_dataset_option_is_declared_and_checked(dataset: str) -> None:
    """Each dataset's options have a type and range: the defaults pass, and a value of the wrong type or
    past a bound is a ConfigError naming `dataset_kwargs.<option>` and the valid values."""
    from icbench.data import DATASETS
    from icbench.errors import ConfigError

    ds = DATASETS.get(dataset)(dataset)
    assert ds.options(ds.defaults) == ds.defaults
    for name, spec in ds.option_specs.items():
        bad: list[Any] = ["many", True, float("nan")]
        if spec.kind is int:
            bad.append(1.5)
        if spec.low is not None:
            bad.append(spec.low - 1 if spec.low_inclusive else spec.low)
        if spec.high is not None:
            bad.append(spec.high + 1 if spec.high_inclusive else spec.high)
        for value in bad:
            with pytest.raises(ConfigError) as err:
                ds.options({name: value})
            assert err.value.field == f"dataset_kwargs.{name}"
            assert spec.describe() in str(err.value) and repr(value) in str(err.value)


DOWN_STUDY = """name: down
search_space: space.yaml
dataset: {{name: synthetic, kwargs: {{n: 200, image_size: 16, in_chans: 1}}}}
family: {{name: resnet_cifar, size: resnet8, width: 0.25}}
budget: {{epochs: 1}}
storage: postgresql://icbench:s3cret@127.0.0.1:{port}/icbench
"""


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("server", ["refuses", "does not answer"])
@pytest.mark.parametrize("command", ["run", "report"])
def test_a_database_server_that_is_down_is_one_line(command: str, server: str, tmp_path: Path) -> None:
    """`storage:` a PostgreSQL URL whose server refuses the connection (a closed loopback port) or accepts
    it and never answers (a listening socket that never replies): exit 2, one line naming `storage`, the
    host and port and the cause, never the password; nothing written; the connection gives up after
    `CONNECT_TIMEOUT_S` instead of the operating system's TCP timeout."""
    import socket
    import time

    pytest.importorskip("psycopg", reason="the `postgres` extra (installed by `make`) provides the driver")
    from icbench.dbserver import CONNECT_TIMEOUT_S

    listener = None
    if server == "refuses":
        port = _closed_port()
    else:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # the kernel completes the handshake; nobody ever reads or replies
        port = int(listener.getsockname()[1])
    (tmp_path / "space.yaml").write_text("params:\n  unit: {type: categorical, choices: [ic, conv]}\n")
    (tmp_path / "down.yaml").write_text(DOWN_STUDY.format(port=port))
    start = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, str(RUN_STUDY), command, "down.yaml"],
            cwd=tmp_path, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        if listener is not None:
            listener.close()
    elapsed = time.perf_counter() - start
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    line = lines[0]
    assert "storage" in line and f"127.0.0.1:{port}" in line and "s3cret" not in line, line
    assert "cannot connect to the database server" in line, line
    assert ("refused" in line) if server == "refuses" else ("timeout" in line.lower()), line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["down.yaml", "space.yaml"]
    # Python and torch start-up take a few seconds here; the connection itself at most the timeout.
    assert elapsed < 60 + CONNECT_TIMEOUT_S, elapsed
