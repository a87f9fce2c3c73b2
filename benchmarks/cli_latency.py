"""How long the `icbench` command takes to answer where no work is to be done: `--version`, and a study file
with a typo (a misspelt key, an unknown family, an unknown size). hyperfine-style: each command is run N
times as a fresh process, after one warm-up run, and the wall times' median, min, max and interquartile
range are printed.

Beside each typo case, the same study checked the way the command did before the light check existed:
torch and Ray imported first, then the file read and its names checked (`import torch, ray`, then
`icbench.search.load_study` and `checks.check_study`, which stops at the first unknown name).
The ratio is that over the light path. Target (issue 29): every typo case answers in < 1 s.

Then the end of a command that loaded torch (`icbench sites resnet_cifar`, which builds the network and
counts its MACs): as shipped (`icbench.cli.exit_now`: after a success, the exit handlers run, then `os._exit`) beside the
same command ending in `sys.exit`, which runs Python's teardown of every loaded module; run alternately.

Usage:
    .venv/bin/python benchmarks/cli_latency.py [--runs 10] [--no-baseline] [--out benchmarks/results/cli_latency.txt]
    .venv/bin/python benchmarks/cli_latency.py --smoke   (2 runs each, no baseline, nothing written)
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `_common`, from a checkout

from _common import ROOT, header, table  # noqa: E402

TARGET_S = 1.0
#: (case, edit of studies/quickstart.yaml's text)
TYPOS = {
    "key typo (budgt:)": ("budget:", "budgt:"),
    "unknown family (resnt_cifar)": ("name: resnet_cifar", "name: resnt_cifar"),
    "unknown size (resnet21)": ("size: resnet8", "size: resnet21"),
}
#: A command that loads torch, ending with Python's teardown (`sys.exit`) instead of `exit_now`.
TEARDOWN = "import sys\nfrom icbench.cli import main\nsys.exit(main(sys.argv[1:]))\n"
HEAVY_ARGS = ["sites", "resnet_cifar", "--size", "resnet8"]
#: The old path: torch and Ray first, then the file.
BASELINE = (
    "import sys, torch, ray\nfrom icbench.search import load_study\nfrom icbench.search.checks import check_study\n"
    "try:\n    check_study(load_study(sys.argv[1]))\nexcept Exception as e:\n"
    "    print(f'error: {e}', file=sys.stderr)\n    sys.exit(2)\n"
)


def wall_times(cmd: list[str], runs: int, expect: int, warm_up: bool = True) -> tuple[list[float], list[float]]:
    """Wall and CPU (user + system) seconds of `runs` fresh runs of `cmd` (after one warm-up unless
    `warm_up` is False), each checked for exit status `expect`. On a loaded machine the wall time is mostly
    waiting; the CPU time is not."""
    wall: list[float] = []
    cpu: list[float] = []
    for i in range(0 if warm_up else 1, runs + 1):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        dt = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != expect:
            raise SystemExit(f"{' '.join(cmd)}: exit {done.returncode}, expected {expect}\n{done.stderr}")
        if i:  # the first run warms the file cache
            wall.append(dt)
            cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return wall, cpu


def summary(times: list[float]) -> list[str]:
    q = statistics.quantiles(times, n=4) if len(times) >= 2 else [times[0]] * 3
    return [f"{statistics.median(times):.3f}", f"{min(times):.3f}", f"{max(times):.3f}", f"{q[2] - q[0]:.3f}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs per command (default 10)")
    parser.add_argument("--out", default=None, help="also write the output to this file")
    parser.add_argument("--smoke", action="store_true", help="2 runs each, no baseline, nothing written")
    parser.add_argument("--no-baseline", action="store_true", help="skip the torch+Ray-first path (slow)")
    args = parser.parse_args(argv)
    runs = 2 if args.smoke else args.runs
    icbench = [sys.executable, "-m", "icbench"]
    lines = [header("icbench command latency: --version and study files with a typo", device="device: not used")]
    rows: list[list[str]] = []
    worst = worst_cpu = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        source = (ROOT / "studies" / "quickstart.yaml").read_text()
        space = ROOT / "search_spaces" / "quickstart.yaml"
        cases: list[tuple[str, list[str], list[str] | None, int]] = [("--version", [*icbench, "--version"], None, 0)]
        for i, (case, (old, new)) in enumerate(TYPOS.items()):
            assert old in source, old
            path = Path(tmp) / f"typo{i}.yaml"
            path.write_text(source.replace(old, new).replace("../search_spaces/quickstart.yaml", str(space)))
            baseline = [sys.executable, "-c", BASELINE, str(path)]
            cases.append((case, [*icbench, "validate", str(path)], baseline, 2))
        for case, cmd, baseline, expect in cases:
            light, cpu = wall_times(cmd, runs, expect)
            row = [case, *summary(light), f"{statistics.median(cpu):.3f}"]
            if case != "--version":
                worst = max(worst, statistics.median(light))
                worst_cpu = max(worst_cpu, statistics.median(cpu))
            if baseline is not None and not args.smoke and not args.no_baseline:
                old, old_cpu = wall_times(baseline, runs, 2)
                row += [f"{statistics.median(old):.3f}", f"{statistics.median(old_cpu):.3f}",
                        f"{statistics.median(old) / statistics.median(light):.1f}x"]  # fmt: skip
            else:
                row += ["-", "-", "-"]
            rows.append(row)
    endings = {"exit_now (as shipped)": [*icbench, *HEAVY_ARGS],
               "sys.exit": [sys.executable, "-c", TEARDOWN, *HEAVY_ARGS]}  # fmt: skip
    heavy: dict[str, tuple[list[float], list[float]]] = {case: ([], []) for case in endings}
    for cmd in endings.values():
        wall_times(cmd, 0, 0)  # the warm-up
    for _ in range(runs):  # alternating, one run at a time, so both see the same load
        for case, cmd in endings.items():
            w, c = wall_times(cmd, 1, 0, warm_up=False)
            heavy[case][0].extend(w)
            heavy[case][1].extend(c)
    heavy_rows = [[case, *summary(w), f"{statistics.median(c):.3f}"] for case, (w, c) in heavy.items()]
    saved = statistics.median(heavy["sys.exit"][0]) - statistics.median(heavy["exit_now (as shipped)"][0])
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    lines += [
        "",
        f"{runs} fresh processes per command after one warm-up; seconds of wall time (median, min, max, IQR) "
        "and the median CPU time (user + system) of the process",
        table(rows, ["command", "median", "min", "max", "IQR", "CPU", "torch+Ray first: median", "its CPU",
                     "speed-up"]),  # fmt: skip
        "",
        f"A command that loads torch (icbench {' '.join(HEAVY_ARGS)}), {runs} runs of each ending, alternating, "
        "after one warm-up run of each",
        table(heavy_rows, ["ending", "median", "min", "max", "IQR", "CPU"]),
        f"skipping Python's teardown saves {saved:.3f} s of wall time per command here (median against median)",
        "",
        f"load average (1, 5, 15 min) at the end: {load}",
        f"slowest typo case: median wall {worst:.3f} s, median CPU {worst_cpu:.3f} s; target < {TARGET_S:.1f} s "
        f"of wall time: {'met' if worst < TARGET_S else 'NOT met on this run (see the load average)'}",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out and not args.smoke:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
