"""benchmarks/cli_latency.py in its smoke mode: every case runs and exits as expected (no timing asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "cli_latency.py"


def test_cli_latency_smoke() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--smoke"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for case in ("--version", "key typo (budgt:)", "unknown family (resnt_cifar)", "unknown size (resnet21)"):
        assert case in done.stdout, done.stdout
    assert "slowest typo case: median wall" in done.stdout
