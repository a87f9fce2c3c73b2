"""Where the report path writes, and with which mode: report files are readable by the group and others as
`open()` would make them (0644 under umask 022, respecting the umask), and running the quickstart's run,
report and confirm commands leaves the tracked tree as it was (`git status --porcelain` unchanged)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from report_fixtures import make_search_study

from icbench.files import new_file_mode, publish
from icbench.report import build_report

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _modes(folder: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir() if p.is_file()}


def test_report_files_are_0644_under_umask_022_and_follow_the_umask(tmp_path: Path, umask: None) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    make_search_study(url)
    out = build_report(url, "search", tmp_path / "reports" / "search").out_dir
    modes = _modes(out)
    assert {"summary.md", "trials.csv", "pareto.png"} <= set(modes)
    assert set(modes.values()) == {0o644}, {k: oct(v) for k, v in modes.items()}

    os.umask(0o077)  # a user who keeps their files private gets private reports
    assert new_file_mode() == 0o600
    out = build_report(url, "search", tmp_path / "private").out_dir
    assert set(_modes(out).values()) == {0o600}


def test_publish_gives_a_temporary_file_the_mode_of_open(tmp_path: Path, umask: None) -> None:
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=tmp_path)
    os.close(fd)
    assert stat.S_IMODE(os.stat(tmp).st_mode) == 0o600  # what mkstemp makes: the cause of 0600 reports
    publish(tmp, tmp_path / "final.txt")
    assert stat.S_IMODE((tmp_path / "final.txt").stat().st_mode) == 0o644
    assert not Path(tmp).exists()


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


@pytest.mark.slow
def test_the_quickstart_commands_leave_the_tracked_tree_unchanged(tmp_path: Path) -> None:
    """A copy of the checkout's tracked files (with its .gitignore) as a fresh repository: the quickstart's
    run (stopped where training starts), report and confirm write only git-ignored places (runs/,
    reports/), never the committed reference reports in docs/results/."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    work = tmp_path / "checkout"
    tracked = _git(REPO, "ls-files", "-z").split("\0")
    needed = [f for f in tracked if f and f.split("/")[0] in {".gitignore", "studies", "search_spaces", "docs", "run_study.py"}]
    for rel in needed:
        if (REPO / rel).is_file():
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, work / rel)
    _git(work, "init", "-q")
    _git(work, "add", "-A")
    _git(work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "checkout")
    assert _git(work, "status", "--porcelain") == ""

    env = {**os.environ, "PYTHONPATH": str(REPO), "ICBENCH_STOP_BEFORE_TRAINING": "1"}
    for command in (["run", "studies/quickstart.yaml"], ["report", "studies/quickstart.yaml"],
                    ["confirm", "studies/quickstart.yaml"]):  # fmt: skip
        done = subprocess.run([sys.executable, "-m", "icbench", *command], cwd=work, env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode in (0, 3), (command, done.stdout, done.stderr)

    assert (work / "runs" / "quickstart" / "study.db").is_file()
    assert (work / "reports" / "quickstart" / "summary.md").is_file()
    assert _git(work, "status", "--porcelain", "--untracked-files=all") == ""
