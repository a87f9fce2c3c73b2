"""Shared pieces of the benchmark scripts: the header every script prints first, timing, tables, studies.

Not a library module: the scripts import it as `_common` (they put `benchmarks/` on `sys.path` when
run from a checkout) and nothing under `icbench/` depends on it.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    """The CPU's model name (`icbench.machine.cpu_model`)."""
    from icbench.machine import cpu_model as model

    return model()


def device_line() -> str:
    """The CUDA devices torch sees, or a sentence saying there is none."""
    import torch

    if not torch.cuda.is_available():
        return "device: cpu (no CUDA device visible to torch)"
    names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    return f"device: cuda: {names} (CUDA {torch.version.cuda})"


def header(title: str, *, device: str | None = None) -> str:
    """The lines every benchmark prints first: what ran, where, when, with which torch and device.

    Args:
        title: the script's one-line purpose.
        device: the device line to print (default: `device_line()`).
    """
    import torch

    lines = [
        f"# {title}",
        f"machine: {platform.platform()} | {cpu_model()} | {os.cpu_count()} CPUs",
        f"date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"python {platform.python_version()} | torch {torch.__version__} | torch CPU threads "
        f"{torch.get_num_threads()}",
        device or device_line(),
    ]
    if hasattr(os, "getloadavg"):  # other work on a shared machine skews every figure: say how much there was
        lines.append(
            "load average (1, 5, 15 min) at start: " + ", ".join(f"{v:.2f}" for v in os.getloadavg())
        )
    lines.append(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    return "\n".join(lines)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, result) of one call."""
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def interleaved(
    steps: dict[str, Callable[[], Any]],
    *,
    repeats: int,
    warmup: int = 1,
    sync: Callable[[], None] = lambda: None,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """Seconds per call of each step, the steps taking turns (the first one rotating every round).

    Comparing steps timed in the same rounds keeps a slow spell of a noisy machine from favouring one.
    `sync` is called around each timed call (torch.cuda.synchronize on a GPU); `clock` reads the time
    (wall clock by default; `time.process_time` for CPU time).
    """
    names = list(steps)
    for _ in range(warmup):
        for name in names:
            steps[name]()
    sync()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            sync()
            start = clock()
            steps[name]()
            sync()
            times[name].append(clock() - start)
    return times


def median_ratio(num: Sequence[float], den: Sequence[float]) -> float:
    """Median over rounds of num[i] / den[i] (both timed in the same round)."""
    return statistics.median(a / b for a, b in zip(num, den, strict=True))


def mean_std(values: Sequence[float], fmt: str = "{:.3f}") -> str:
    """'mean ± std' (sample std; 0 for one value), '-' for none."""
    vals = [v for v in values if v == v]  # NaN-free
    if not vals:
        return "-"
    std = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{fmt.format(statistics.mean(vals))} ± {fmt.replace('+', '').format(std)}"  # no sign on a spread


def table(rows: Sequence[Sequence[Any]], columns: Sequence[str], *, first_left: bool = True) -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned.

    Floats are printed as given by the caller (format them first); None prints as '-'.
    """
    cells = [[("-" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        out = []
        for i, (v, w) in enumerate(zip(values, widths, strict=True)):
            out.append(v.ljust(w) if i == 0 and first_left else v.rjust(w))
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(list(columns)), rule, *(line(r) for r in cells)])


def write_study(folder: Path, name: str, study: str, space: str) -> Path:
    """A generated study in `folder` (see `icbench.search.schema.write_study_files`)."""
    from icbench.search.schema import write_study_files

    return write_study_files(folder, name, study, space)


def ray_worker_env() -> dict[str, str]:
    """Environment for Ray workers: the checkout on PYTHONPATH, so they import this icbench."""
    paths = [str(ROOT)] + [p for p in sys.path if p and Path(p).is_dir()]
    return {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}


def quiet_ray_env() -> None:
    """The environment variables the study runner sets before importing Ray (set here before timing it)."""
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")


def read_cells(path: Path) -> dict[tuple[Any, ...], float]:
    """The finished cells of a resumable benchmark: key -> validation accuracy (JSON lines at `path`)."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        return {}
    return {tuple(r["key"]): r["val_acc"] for r in map(json.loads, path.read_text().splitlines())}


def append_cell(path: Path, key: tuple[Any, ...], val_acc: float, seconds: float) -> None:
    """Record one finished cell, so that a killed run resumes after it."""
    import json

    with path.open("a") as f:
        f.write(json.dumps({"key": list(key), "val_acc": val_acc, "seconds": seconds}) + "\n")


#: Where committed results live: a smoke run never writes there.
RESULTS = ROOT / "benchmarks" / "results"


def add_smoke_options(parser: argparse.ArgumentParser, what: str) -> None:
    """`--smoke` (a tiny but real run of the code paths that print the script's tables: `what`) and
    `--smoke-dir` (where it writes). Every benchmark has both; the suite runs each script with `--smoke`
    (tests/benchmarks/test_every_benchmark_smoke.py), so a script without the mode fails the suite."""
    parser.add_argument(
        "--smoke",
        action="store_true",
        help=f"a tiny run for the test suite ({what}); its figures mean nothing",
    )
    parser.add_argument(
        "--smoke-dir",
        default=None,
        help="where a --smoke run writes (default: a new temporary folder; never benchmarks/results)",
    )


def smoke_dir(args: argparse.Namespace) -> Path:
    """The folder a `--smoke` run writes to: `--smoke-dir`, or a new temporary folder.

    Raises:
        SystemExit: `--smoke-dir` is inside benchmarks/results (committed figures are never overwritten
            by a smoke run).
    """
    folder = Path(args.smoke_dir) if args.smoke_dir else Path(tempfile.mkdtemp(prefix="icbench-smoke-"))
    folder = folder.resolve()
    if folder == RESULTS or RESULTS in folder.parents:
        print(f"--smoke-dir {folder}: must not be inside {RESULTS} (committed results)", file=sys.stderr)
        raise SystemExit(2)
    folder.mkdir(parents=True, exist_ok=True)
    print(f"smoke run: writing under {folder}")
    return folder


#: A tiny live experiment for smoke runs: synthetic images, ResNet-8 at width 0.25, one unit per block.
SMOKE_EXPERIMENT = """
dataset: {{name: synthetic, kwargs: {{n: 240, image_size: 16, in_chans: 1}}}}
family: {{name: resnet_cifar, size: resnet8, width: 0.25}}
strategy: mask
objectives: [val_acc, macs]
budget: {{epochs: {epochs}}}
"""
SMOKE_SPACE = """
params:
  unit: {type: categorical, choices: [conv, ic]}
  blocks: {type: mask, over: blocks}
"""


def smoke_live_study(folder: Path, *, name: str, extra: str = "", epochs: int = 2) -> tuple[Path, Path]:
    """(study file, replay table) for a smoke run of a live-against-replay benchmark, under `folder`.

    The study is a real, tiny live experiment (`SMOKE_EXPERIMENT` + `extra`); the table holds every
    candidate of its space x seeds 0-2 with curves made by hand (`tests/replay_helpers.make_table`, as
    the replay tests make theirs), since training a table is what the full benchmark's inputs took hours
    for: the smoke run exercises the replay and the comparison, not the table's values.
    """
    sys.path.insert(0, str(ROOT / "tests"))
    from replay_helpers import make_table

    from icbench.search import load_study

    study = write_study(folder, name, SMOKE_EXPERIMENT.format(epochs=epochs) + extra, SMOKE_SPACE)

    def curve(placement: str, wld: bool, seed: int) -> tuple[list[float], list[float]]:
        acc = 0.5 + 0.05 * placement.split(":")[1].count("1") + 0.01 * seed
        return [acc - 0.1 * (epochs - e - 1) for e in range(epochs)], [0.5] * epochs

    table = make_table(folder / f"{name}.parquet", load_study(study), [0, 1, 2], curve)
    return study, table
