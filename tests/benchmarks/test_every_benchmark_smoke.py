"""Every benchmark script runs in the suite: each `benchmarks/*.py` (not `_*.py`) has a `--smoke` mode, a tiny
but real run of the code paths that print its tables, and runs here in a subprocess. A new benchmark
without the mode fails this test (its `--smoke` is an unknown option); a smoke run that writes into
benchmarks/results (the committed figures) fails it too.

Scripts whose smoke run is a test of its own with more checks (`DEDICATED`) are not run twice: here only
their `--smoke` option and the dedicated test's use of it are checked.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"
RESULTS = BENCHMARKS / "results"
SCRIPTS = sorted(p.stem for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_"))

#: script -> the test file that runs its smoke mode with checks of its own output.
DEDICATED = {
    "cli_latency": "test_cli_latency_smoke.py",
    "gpu_check": "test_gpu_check_cpu.py",
    "peer": "test_peer_smoke.py",
    "samplers": "test_samplers_smoke.py",
}
#: Smoke runs that take under ~20 s on 2 cores; the others are marked slow (they still run in CI).
FAST = {"cost", "units"}


def results_state() -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in RESULTS.rglob("*") if p.is_file()}


def params() -> list[object]:
    out = []
    for name in SCRIPTS:
        marks = [pytest.mark.xdist_group("ray")]  # several start a local Ray: not beside other Ray tests
        if name not in FAST and name not in DEDICATED:
            marks.append(pytest.mark.slow)
        out.append(pytest.param(name, marks=marks, id=name))
    return out


def test_the_scripts_are_found() -> None:
    assert {"harness", "cost", "units", "training"} <= set(SCRIPTS)
    assert set(DEDICATED) <= set(SCRIPTS), "a dedicated smoke test names a script that is gone"


@pytest.mark.parametrize("name", params())
def test_benchmark_runs_in_its_smoke_mode(name: str, tmp_path: Path) -> None:
    script = BENCHMARKS / f"{name}.py"
    # Outputs go under tmp_path (TMPDIR); Ray keeps its own short temporary root (its socket paths are
    # limited to 107 bytes, which a pytest folder exceeds).
    ray_tmp = os.environ.get("RAY_TMPDIR", tempfile.gettempdir())
    env = {**os.environ, "TMPDIR": str(tmp_path), "RAY_TMPDIR": ray_tmp, "PYTHONPATH": str(ROOT)}
    if name in DEDICATED:
        out = subprocess.run(
            [sys.executable, str(script), "--help"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
            env=env,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        assert "--smoke" in out.stdout, f"{name}.py has no --smoke mode"
        test_file = Path(__file__).with_name(DEDICATED[name])
        assert '"--smoke"' in test_file.read_text(), f"{test_file.name} does not run {name}.py --smoke"
        return
    before = results_state()
    out = subprocess.run(
        [sys.executable, str(script), "--smoke"],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
        env=env,
    )
    assert out.returncode == 0, f"{name}.py --smoke failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    assert out.stdout.strip(), f"{name}.py --smoke printed nothing"
    assert results_state() == before, f"{name}.py --smoke wrote into {RESULTS}"
