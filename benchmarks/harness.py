"""Where a study's time goes: Ray start-up, per-trial overhead versus the trials' own training time.

Usage:
    .venv/bin/python benchmarks/harness.py [--trials 6] [--epochs 2] [--concurrency 2] [--size resnet8]
        [--width 0.5] [--batch-size 128] [--variants before,default] [--repeats 1]
        [--skip-components] [--keep DIR] [--smoke [--smoke-dir DIR]]

A tiny study (mnist5k, resnet_cifar `--size`, `--epochs` per trial, no WLD) is generated in a temp folder
and run through `icbench.search.run_study`, with Ray started just before by the runner's own `init_ray`
(timed on its own, per variant). From the stored trials: the study's wall time W, the sum T of the
trials' own training time (the loop, `train_time_s`), the sum of `train_candidate`'s wall time and of each
trial's Optuna duration (ask to tell). With c trials at a time, c·W is the slot time on offer; the
overhead per trial is (c·W − T) / N, split into: inside `train_candidate` outside the loop (data load,
build, sites, test pass), the rest of the trial (Ray actor start, imports, reporting, the driver's
proposal), and idle slots (the driver's set-up before the first trial and after the last included).
The driver's study check (probe builds) and proposal time are measured by wrapping them in this process;
each trial's worker writes a trace (entry, imports, dataset, MACs counts it made, whether torch and
icbench were already imported).

Variants, run alternately `--repeats` times each so machine noise hits both alike (see `LEVERS`):
- `default`: the study runner as shipped (the sites hand-off; Tune's trial actors in Ray's pre-started
  workers); `before`: without these levers (each worker counts MACs once to find the sites; Tune's actors
  start new worker processes);
- `preload`: the shipped runner with the pre-started workers importing torch, Ray Tune and icbench as Ray
  starts them (off as shipped: measured no faster, see `icbench.search.executors.ray_tune.PRELOAD`).

`--skip-components` skips the fresh-interpreter measurements: the cold costs a new worker process pays
(imports, dataset load, build, MACs count, test pass) and Ray's start-up with and without the levers.

Targets (issue 31): overhead ≤ 1 s per trial; Ray start-up ≤ 5 s. The projection table gives the
overhead's share of the slot time for 10, 30 and 120 s trials (what a GPU would leave visible).
The default run takes about 4 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from _common import (  # noqa: E402
    add_smoke_options,
    header,
    quiet_ray_env,
    ray_worker_env,
    smoke_dir,
    table,
    timed,
    write_study,
)

OVERHEAD_TARGET = 0.10
LONG_TRIAL_S = 30.0
PER_TRIAL_TARGET_S = 1.0
#: Trial lengths of the projection (CIFAR-scale trials on one modern GPU take 10 s to 2 min).
PROJECTED_TRIALS_S = (10.0, 30.0, 120.0)
RAY_TARGET_S = 5.0

SPACE = """
params:
  unit: {type: categorical, choices: [ic, ic_dual, se, conv]}
  strategy: {type: categorical, choices: [all, every_other]}
  lr: {type: float, low: 0.03, high: 0.3, log: true}
"""

# Run in a fresh interpreter: what a new Ray worker process pays before and around its trial's loop.
COMPONENTS = r"""
import json, sys, time
out = {}
def t(key, fn):
    s = time.perf_counter(); r = fn(); out[key] = time.perf_counter() - s; return r
cfg = json.loads(sys.argv[1])
t("import torch", lambda: __import__("torch"))
import torch
torch.set_num_threads(1)
t("import icbench.training (families, torchvision)", lambda: __import__("icbench.training.candidate"))
t("import ray.tune", lambda: __import__("ray.tune"))
from icbench.data import load_dataset
from icbench.training import build_candidate
from icbench.training.loop import evaluate
from icbench.cost import measure_cost
splits = t("load_dataset(mnist5k), first call", lambda: load_dataset("mnist5k"))
t("load_dataset(mnist5k), cached", lambda: load_dataset("mnist5k"))
model, placement, shape = t("build_candidate (build, sites: one MACs count)", lambda: build_candidate(cfg))
t("measure_cost, MACs only (one more MACs count)", lambda: measure_cost(model, shape, latency=False))
t("measure_cost with latency (CPU, batch 32)", lambda: measure_cost(model, shape, latency=True))
t("evaluate on the test split", lambda: evaluate(model, splits.test, batch_size=2 * cfg["batch_size"]))
print("COMPONENTS " + json.dumps(out))
"""


# Run in a fresh interpreter: a local Ray started by the runner's own `init_ray` with the variant's levers
# (see `levers`), then, after 1 s (the Tuner's set-up), one actor per CPU made as Ray Tune makes its trial
# actors (its class cache, with the runtime_env Tune gives them), whose first call imports what a trial
# imports: the time from the actors' request to that call's return is what a study's first trials wait for
# their workers, and the pids say whether the actors took Ray's pre-started workers.
RAY_START = r"""
import json, os, sys, time
variant, study = sys.argv[1], sys.argv[2]
s = time.perf_counter(); import ray; imp = time.perf_counter() - s
from icbench.search.executors import ray_tune
from icbench.search.schema import load_study
on = json.loads(sys.argv[3])
ray_tune.SHARE_PRESTARTED, ray_tune.PRELOAD = "share" in on, "preload" in on
s = time.perf_counter(); ray_tune.init_ray(load_study(study)); init = time.perf_counter() - s
time.sleep(1.0)
def workers():  # the pids of Ray's worker processes now (Linux)
    out = set()
    for d in os.listdir("/proc"):
        try:
            cmd = open(f"/proc/{d}/cmdline", "rb").read() if d.isdigit() else b""
            if b"default_worker.py" in cmd or cmd.startswith(b"ray::"):
                out.add(int(d))
        except OSError:
            pass
    return out
before = workers()

class Trial:
    def ready(self):
        s = time.perf_counter()
        import torch, torch._dynamo, ray.tune, icbench.training.candidate, icbench.search.trainable
        return time.perf_counter() - s, os.getpid()

from ray.tune.execution.class_cache import _ActorClassCache
remote = _ActorClassCache().get(Trial)
s = time.perf_counter()
actors = [remote.options(num_cpus=1).remote() for _ in range(int(ray.available_resources().get("CPU", 1)))]
got = ray.get([a.ready.remote() for a in actors])
ready = time.perf_counter() - s
prestarted = sum(1 for _, pid in got if pid in before)  # started with Ray, not for the actor
s = time.perf_counter(); ray.shutdown(); down = time.perf_counter() - s
print("RAY " + json.dumps({"import": imp, "init": init, "ready": ready, "imports": [g[0] for g in got],
    "prestarted": prestarted, "shutdown": down}))
"""


def ray_start(mode: str, study: Path) -> dict[str, Any]:
    """Ray's start-up and the first trial actors' readiness in a fresh interpreter (see RAY_START)."""
    proc = subprocess.run(
        [sys.executable, "-c", RAY_START, mode, str(study), json.dumps(VARIANTS[mode])],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, **ray_worker_env()},
        check=True,
    )
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RAY "))
    return json.loads(line.removeprefix("RAY "))


def components(cfg: dict[str, Any]) -> dict[str, float]:
    """Cold costs in a fresh interpreter (see COMPONENTS), and an empty Ray actor's start."""
    proc = subprocess.run(
        [sys.executable, "-c", COMPONENTS, json.dumps(cfg)],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, **ray_worker_env()},
        check=True,
    )
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("COMPONENTS "))
    return json.loads(line.removeprefix("COMPONENTS "))


#: Levers against the per-trial overhead, each switchable here to measure what it gives:
#: - sites: the driver hands the basic network's sites to the trial (`Proposer.hand_off_sites`), so no
#:   worker counts MACs (the cost was handed over already);
#: - share: Ray Tune's trial actors take a local Ray's pre-started workers
#:   (`icbench.search.executors.ray_tune.share_prestarted_workers`);
#: - preload: those workers import torch, Ray Tune and icbench as Ray starts them
#:   (`icbench.search.executors.ray_tune.preload_modules`; only with `share`).
LEVERS = ("sites", "share", "preload")
#: Variants measured side by side: name -> the levers on. `before` is the runner without them.
VARIANTS: dict[str, tuple[str, ...]] = {
    "default": ("sites", "share"),  # as shipped: preloading was measured no faster and is off
    "before": (),
    "preload": LEVERS,
}


@contextlib.contextmanager
def levers(on: tuple[str, ...]) -> Iterator[None]:
    """The runner with only the levers `on` (in this process: the driver and the Ray it starts)."""
    from icbench.search.executors import ray_tune
    from icbench.search.propose import Proposer

    saved = (Proposer.hand_off_sites, ray_tune.SHARE_PRESTARTED, ray_tune.PRELOAD)
    Proposer.hand_off_sites = "sites" in on
    ray_tune.SHARE_PRESTARTED, ray_tune.PRELOAD = "share" in on, "preload" in on
    try:
        yield
    finally:
        Proposer.hand_off_sites, ray_tune.SHARE_PRESTARTED, ray_tune.PRELOAD = saved


def traced_trainable(trace_dir: str) -> Any:
    """`run_trial` wrapped to write, per trial, when its worker process started, when the trial function
    was entered, when torch and icbench were imported and the dataset loaded, and when it returned.

    The wrapper calls `load_dataset` with the arguments `train_candidate` uses, so the trial then finds
    the dataset in the process's cache: the work done is the same, only split so it can be timed.
    Defined here and pickled by value (this file runs as __main__), so workers need no extra module.
    Every keyword the executor binds (`tune.with_parameters`) is passed through unchanged, and the
    wrapper carries the trial function's own signature (`functools.wraps`), so a new argument of
    `run_trial` reaches it without this file changing.
    """
    from icbench.search import trainable as _trainable

    @functools.wraps(_trainable.run_trial)
    def run_trial(config: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        import json as _json
        import os as _os
        import time as _time

        entered = _time.time()
        import sys as _sys

        preloaded = "torch" in _sys.modules and "icbench.training.candidate" in _sys.modules

        def process_start() -> float:
            try:  # Linux: the process's start in clock ticks after boot, plus the boot time
                with open(f"/proc/{_os.getpid()}/stat") as f:
                    ticks = float(f.read().rsplit(")", 1)[1].split()[19])
                with open("/proc/stat") as f:
                    boot = float(next(ln.split()[1] for ln in f if ln.startswith("btime")))
                return boot + ticks / _os.sysconf("SC_CLK_TCK")
            except (OSError, ValueError, IndexError, StopIteration):
                return float("nan")

        import torch

        from icbench.data import load_dataset
        from icbench.search import trainable
        from icbench.training import CandidateConfig
        from icbench.training.loop import num_threads, resolve_device

        imported = _time.time()
        cand = CandidateConfig.from_dict(config["candidate"])
        with num_threads(config.get("num_threads")):
            load_dataset(
                cand.dataset, cand.dataset_root, device=resolve_device(cand.device), **cand.dataset_kwargs
            )
        loaded = _time.time()
        import icbench.cost
        import icbench.placement

        counts = [0]  # MACs counts made by this trial (the cost model's and the site finder's)
        originals = (icbench.cost.count_macs, icbench.placement.count_macs)

        def counting(original: Any) -> Any:
            def count(*a: Any, **kw: Any) -> Any:
                counts[0] += 1
                return original(*a, **kw)

            return count

        icbench.cost.count_macs, icbench.placement.count_macs = map(counting, originals)
        try:
            return trainable.run_trial(config, *args, **kwargs)
        finally:
            icbench.cost.count_macs, icbench.placement.count_macs = originals
            record = {
                "macs_counts": counts[0],
                "preloaded": preloaded,
                "trial": config.get("trial_number"),
                "pid": _os.getpid(),
                "process_start": process_start(),
                "entered": entered,
                "imported": imported,
                "loaded": loaded,
                "returned": _time.time(),
                "torch_threads": torch.get_num_threads(),
            }
            name = f"{record['trial']}-{record['pid']}.json"
            with open(_os.path.join(trace_dir, name), "w") as f:
                _json.dump(record, f)

    # wraps() named the wrapper after the library's function; cloudpickle would then send it by reference
    # (the worker would import the untraced original): keep this file's name so it travels by value.
    run_trial.__module__, run_trial.__qualname__ = __name__, "traced_trainable.<locals>.run_trial"
    return run_trial


@contextlib.contextmanager
def traced(trace_dir: Path) -> Iterator[None]:
    import icbench.search.trainable as trainable

    original = trainable.run_trial
    trace_dir.mkdir(parents=True, exist_ok=True)
    trainable.run_trial = traced_trainable(str(trace_dir))
    try:
        yield
    finally:
        trainable.run_trial = original


class DriverTimes:
    """Wraps the driver-side steps of a study in this process and records their wall times."""

    def __init__(self) -> None:
        self.check_s: list[float] = []
        self.propose_s: list[float] = []
        self.suggest_s: list[float] = []  # Tune asking the searcher: Optuna ask, proposal, user attributes
        self.macs_counts = 0  # every MACs count in the driver
        self.macs_counts_proposing = 0  # those made while proposing trials (not the study check)
        self.final_received: dict[int, float] = {}  # trial number -> when the driver got its final result

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        import icbench.cost
        import icbench.placement
        import icbench.search.runner as runner
        from icbench.search.propose import Proposer
        from icbench.search.searcher import AskTellSearcher
        from icbench.search.trainable import FINAL_KEY

        saved = (runner.check_study, Proposer.__call__, icbench.cost.count_macs, icbench.placement.count_macs)
        check, propose, count_cost, count_placement = saved
        on_complete = AskTellSearcher.on_trial_complete
        suggest = AskTellSearcher.suggest

        def timed_suggest(searcher: Any, trial_id: str) -> Any:
            s, out = timed(lambda: suggest(searcher, trial_id))
            if isinstance(out, dict):
                self.suggest_s.append(s)
            return out

        def stamp_result(
            searcher: Any, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
        ) -> None:
            # Tune ends a trial on its final result (`stop`), handing that result to on_trial_complete.
            trial = searcher.running.get(trial_id)
            if result and result.get(FINAL_KEY) and trial is not None:
                self.final_received[trial.number] = time.time()
            on_complete(searcher, trial_id, result, error)

        def timed_check(*a: Any, **kw: Any) -> Any:
            s, out = timed(lambda: check(*a, **kw))
            self.check_s.append(s)
            return out

        def timed_propose(proposer: Any, trial: Any) -> Any:
            before = self.macs_counts
            s, out = timed(lambda: propose(proposer, trial))
            self.propose_s.append(s)
            self.macs_counts_proposing += self.macs_counts - before
            return out

        def counting(original: Any) -> Any:
            def count(*a: Any, **kw: Any) -> Any:
                self.macs_counts += 1
                return original(*a, **kw)

            return count

        runner.check_study = timed_check
        Proposer.__call__ = timed_propose  # type: ignore[method-assign]
        AskTellSearcher.on_trial_complete = stamp_result  # type: ignore[method-assign]
        AskTellSearcher.suggest = timed_suggest  # type: ignore[method-assign]
        icbench.cost.count_macs = counting(count_cost)
        icbench.placement.count_macs = counting(count_placement)
        try:
            yield
        finally:
            runner.check_study = check
            Proposer.__call__ = propose  # type: ignore[method-assign]
            AskTellSearcher.on_trial_complete = on_complete  # type: ignore[method-assign]
            AskTellSearcher.suggest = suggest  # type: ignore[method-assign]
            icbench.cost.count_macs, icbench.placement.count_macs = count_cost, count_placement


def study_yaml(args: argparse.Namespace, seed: int) -> str:
    return (
        "dataset: {name: mnist5k}\n"
        f"family: {{name: resnet_cifar, size: {args.size}, width: {args.width}}}\n"
        f"n_trials: {args.trials}\n"
        f"sampler: {{name: random, seed: {seed}}}\n"
        f"budget: {{epochs: {args.epochs}}}\n"
        f"training: {{batch_size: {args.batch_size}}}\n"
        f"execution: {{cpus_per_trial: 1, max_concurrent: {args.concurrency}}}\n"
    )


def forget_driver_caches() -> None:
    """Empty this process's caches of costs, placements and sites (`icbench.search.propose`,
    `icbench.training.candidate`): otherwise a variant run after another would find its candidates counted."""
    from icbench.search import propose
    from icbench.training import candidate

    propose._COSTS.clear()
    propose._REQUESTS.clear()
    candidate._SITES.clear()


def warm_driver() -> None:
    """Pay this process's first MACs count (ptflops' import and first meta-tensor pass, ~2 s) before the
    variants, so that the first variant does not pay it for all of them."""
    from icbench.cost import count_macs
    from icbench.families import build_model

    count_macs(build_model("resnet_cifar", "resnet8", num_classes=10, in_chans=1, image_size=28), (1, 28, 28))


def run_variant(args: argparse.Namespace, folder: Path, name: str, variant: str) -> dict[str, Any]:
    """Run one study and return its timing breakdown."""
    import optuna
    import ray

    from icbench.search import run_study
    from icbench.search.executors.ray_tune import init_ray
    from icbench.search.runner import storage_url
    from icbench.search.schema import load_study

    path = write_study(folder, name, study_yaml(args, seed=0), SPACE)
    driver = DriverTimes()
    trace_dir = folder / "trace" / name
    forget_driver_caches()  # every variant's driver builds and counts its candidates itself, as a new run does
    with levers(VARIANTS[variant]), driver.installed(), traced(trace_dir):
        # Ray is started for each variant (its options are one of the levers), timed on its own.
        init_s, _ = timed(lambda: init_ray(load_study(path)))
        try:
            started = time.time()
            wall, run = timed(lambda: run_study(path, report=False, echo=lambda s: None))
        finally:
            shutdown_s, _ = timed(ray.shutdown)
    url = storage_url(load_study(path))
    trials = optuna.load_study(study_name=name, storage=url).get_trials()
    done = [t for t in trials if t.state.name == "COMPLETE"]
    phases = trace_phases(done, trace_dir, driver.final_received)
    durations = [(t.datetime_complete - t.datetime_start).total_seconds() for t in done]
    train = [float(t.user_attrs["train_time_s"]) for t in done]
    inner = [float(t.user_attrs["wall_time_s"]) for t in done]
    # fit's train_time_s includes the per-epoch callback (tune.report, which waits for the driver's
    # acknowledgement); the curve's epoch_time_s do not: the difference is the time training stood still.
    stalls = [
        float(t.user_attrs["train_time_s"]) - sum(float(e["epoch_time_s"]) for e in t.user_attrs["curve"])
        for t in done
        if t.user_attrs.get("curve")
    ]
    from icbench.report import build_report

    report_s, _ = timed(lambda: build_report(url, name, folder / "reports" / name))
    c, n = args.concurrency, max(1, len(done))
    first = min((t.datetime_start.timestamp() for t in trials if t.datetime_start), default=started)
    last = max(
        (t.datetime_complete.timestamp() for t in trials if t.datetime_complete), default=started + wall
    )
    window = last - first  # the search itself: first trial's ask to last trial's tell
    slot = c * wall
    return {
        "name": name,
        "variant": variant,
        "ray_init": init_s,
        "ray_shutdown": shutdown_s,
        "n": len(done),
        "n_other": len(trials) - len(done),
        "wall": wall,
        "run_wall": run.wall_time_s,
        "train": sum(train),
        "inner": sum(inner),
        "durations": sum(durations),
        "per_trial_train": statistics.mean(train) if train else float("nan"),
        "per_trial_duration": statistics.mean(durations) if durations else float("nan"),
        "overhead_per_trial": (slot - sum(train)) / n,
        # The same within the search window: what each further trial of a longer study costs.
        "marginal_per_trial": (c * window - sum(train)) / n,
        "setup": first - started,
        "teardown": started + wall - last,
        "in_candidate": (sum(inner) - sum(train)) / n,
        "in_trial": (sum(durations) - sum(inner)) / n,
        "between": (slot - sum(durations)) / n,
        "utilisation": sum(train) / slot if slot else float("nan"),
        "check_s": sum(driver.check_s),
        "propose_s": statistics.mean(driver.propose_s) if driver.propose_s else float("nan"),
        "suggest_s": statistics.mean(driver.suggest_s) if driver.suggest_s else float("nan"),
        "n_proposed": len(driver.propose_s),
        "driver_macs_counts": driver.macs_counts,
        "driver_macs_counts_proposing": driver.macs_counts_proposing,
        "first_trial_duration": durations[0] if durations else float("nan"),
        "report_stall": statistics.mean(stalls) if stalls else float("nan"),
        "report_s": report_s,
        "phases": phases,
    }


#: Phases of a trial from the trace, in order: (label, start event, end event).
PHASES = [
    ("ask -> worker entered (Ray: schedule, start or reuse an actor)", "ask", "entered"),
    ("imports (torch, icbench)", "entered", "imported"),
    ("dataset load", "imported", "loaded"),
    ("train_candidate outside its loop (build, sites, test pass)", "loaded", "loop_start"),
    ("training loop (train_time_s)", "loop_start", "loop_end"),
    ("final tune.report -> the driver has the result", "loop_end", "received"),
    ("the driver has it -> the trial function returns", "received", "returned"),
    ("function returned -> Optuna tell", "returned", "told"),
]


def trace_phases(done: list[Any], trace_dir: Path, received: dict[int, float]) -> dict[str, Any]:
    """Mean seconds of each phase of the COMPLETE trials, and how many ran in a fresh worker process."""
    records = {}
    for f in trace_dir.glob("*.json"):
        rec = json.loads(f.read_text())
        records[rec["trial"]] = rec
    sums: dict[str, list[float]] = {label: [] for label, _, _ in PHASES}
    fresh = 0
    for t in done:
        rec = records.get(t.number)
        if rec is None:
            continue
        ev = dict(rec)
        ev["ask"] = t.datetime_start.timestamp()
        ev["told"] = t.datetime_complete.timestamp()
        ev["received"] = received.get(t.number, float("nan"))
        # train_candidate starts right after the trace's dataset load; of its wall time, train_time_s is
        # the loop and the rest (build, sites, test pass) is shown as one phase before it.
        wall, train = float(t.user_attrs["wall_time_s"]), float(t.user_attrs["train_time_s"])
        ev["loop_start"] = ev["loaded"] + wall - train
        ev["loop_end"] = ev["loaded"] + wall
        for label, a, b in PHASES:
            if ev[b] == ev[b] and ev[a] == ev[a]:  # not NaN
                sums[label].append(ev[b] - ev[a])
        fresh += int(rec["process_start"] >= ev["ask"] - 0.5)
    means = {label: (statistics.mean(v) if v else float("nan")) for label, v in sums.items()}
    # A trial in a worker that ran one before: its slot's whole cycle, from that trial's tell to its own,
    # minus its loop time, is what each further trial of a longer study costs (no process start-up, no
    # first-use costs: those are paid once per worker).
    warm: list[float] = []
    by_pid: dict[int, list[Any]] = {}
    for t in done:
        if t.number in records:
            by_pid.setdefault(records[t.number]["pid"], []).append(t)
    for runs in by_pid.values():
        runs.sort(key=lambda t: t.datetime_complete)
        for prev, t in zip(runs, runs[1:], strict=False):
            cycle = (t.datetime_complete - prev.datetime_complete).total_seconds()
            warm.append(cycle - float(t.user_attrs["train_time_s"]))
    traced = [records[t.number] for t in done if t.number in records]
    pids = {r["pid"] for r in traced}
    return {
        "means": means,
        "warm_cycle": statistics.mean(warm) if warm else float("nan"),
        "n_warm": len(warm),
        "fresh": fresh,
        "traced": len(traced),
        "workers": len(pids),
        "preloaded": sum(1 for r in traced if r.get("preloaded")),
        "trial_macs_counts": sum(int(r.get("macs_counts", 0)) for r in traced),
    }


def projected(overhead_s: float, trial_s: float = LONG_TRIAL_S) -> float:
    """Overhead's share of the slot time if each trial trained for `trial_s` seconds."""
    return overhead_s / (trial_s + overhead_s)


def print_results(args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    print(
        f"\n## Study of {args.trials} trials, {args.concurrency} at a time (mnist5k, resnet_cifar {args.size} "
        f"width {args.width}, {args.epochs} epoch(s), batch {args.batch_size}, 1 CPU thread per trial, "
        "no WLD); Ray already started"
    )
    cols = ["variant", "study s", "sum train s", "util", "ovh/trial s", "in cand", "in trial", "between",
            "in search ovh/trial s", "set-up s", "end s", "train/trial s", "report stall s",
            "ovh @30s trial"]  # fmt: skip
    rows = []
    for r in results:
        share = projected(r["overhead_per_trial"])
        verdict = "ok" if share < OVERHEAD_TARGET else "MISS"
        rows.append(
            [
                f"{r['variant']} ({r['name']})",
                f"{r['wall']:.1f}",
                f"{r['train']:.1f}",
                f"{r['utilisation']:.0%}",
                f"{r['overhead_per_trial']:.2f}",
                f"{r['in_candidate']:.2f}",
                f"{r['in_trial']:.2f}",
                f"{r['between']:.2f}",
                f"{r['marginal_per_trial']:.2f}",
                f"{r['setup']:.2f}",
                f"{r['teardown']:.2f}",
                f"{r['per_trial_train']:.2f}",
                f"{r['report_stall']:.2f}",
                f"{share:.0%} {verdict}",
            ]
        )
    print(table(rows, cols))
    print(
        "util = sum of the trials' loop time / (concurrency x study wall). ovh/trial = (concurrency x study "
        "wall - sum train) / trials = in cand (train_candidate outside its loop) + in trial (Optuna ask..tell "
        "minus train_candidate: actor start, imports, proposal, reporting) + between (idle slots, the study's "
        "set-up before the first trial and end after the last included). in search ovh/trial: the same from "
        "the first trial's ask to the last trial's tell (the cost of each further trial of a longer study; "
        "set-up s and end s are the fixed parts left out). "
        "report stall = per trial, train_time_s minus the sum of its epochs' times: the loop waiting in "
        f"tune.report for the driver (epochs before the last). ovh @30s trial = ovh/trial / (30 s + "
        f"ovh/trial), target < {OVERHEAD_TARGET:.0%}."
    )
    cols = ["variant", "check_study s", "propose ms/trial", "suggest ms/trial", "MACs counts in driver", "first trial s",
            "mean trial s", "report s", "not complete"]  # fmt: skip
    rows = [
        [
            f"{r['variant']} ({r['name']})",
            f"{r['check_s']:.2f}",
            f"{1e3 * r['propose_s']:.0f}",
            f"{1e3 * r['suggest_s']:.0f}",
            f"{r['driver_macs_counts_proposing']} for {r['n_proposed']} proposals "
            f"(+{r['driver_macs_counts'] - r['driver_macs_counts_proposing']} in the check)",
            f"{r['first_trial_duration']:.1f}",
            f"{r['per_trial_duration']:.1f}",
            f"{r['report_s']:.1f}",
            r["n_other"],
        ]
        for r in results
    ]
    print()
    print(table(rows, cols))
    print("\nMean seconds per trial by phase (from a trace written by each trial's worker):")
    cols = ["phase"] + [f"{r['variant']} ({r['name']})" for r in results]
    rows = [[label] + [f"{r['phases']['means'][label]:.2f}" for r in results] for label, _, _ in PHASES]
    rows.append(["trials whose worker process started after the trial was asked"] + [
        f"{r['phases']['fresh']}/{r['phases']['traced']}" for r in results])  # fmt: skip
    rows.append(["worker processes that ran trials"] + [str(r["phases"]["workers"]) for r in results])
    rows.append(["trials that found torch + icbench imported on entry"] + [
        f"{r['phases']['preloaded']}/{r['phases']['traced']}" for r in results])  # fmt: skip
    rows.append(["MACs counts inside the trials (all trials)"] + [
        str(r["phases"]["trial_macs_counts"]) for r in results])  # fmt: skip
    rows.append(["each further trial: slot cycle (previous tell on its worker -> its tell) minus loop, s"] + [
        f"{r['phases']['warm_cycle']:.2f} ({r['phases']['n_warm']})" for r in results])  # fmt: skip
    rows.append(["Ray start-up for this variant (ray.init) s"] + [f"{r['ray_init']:.2f}" for r in results])
    print(table(rows, cols))
    print(
        "\nProjected overhead share of the slot time, ovh/trial / (trial + ovh/trial), for longer trials "
        "(the fixed cost per trial measured above; what a GPU that trains 20-50x faster leaves visible):"
    )
    cols = ["variant", *(f"{t:.0f} s trials" for t in PROJECTED_TRIALS_S)]
    rows = [[f"{r['variant']} ({r['name']})", *(f"{projected(r['overhead_per_trial'], t):.1%}" for t in PROJECTED_TRIALS_S)]
            for r in results]  # fmt: skip
    print(table(rows, cols))
    base = [r for r in results if r["variant"] == "default"]
    if base:
        a = statistics.median(r["wall"] for r in base)
        oa = statistics.median(r["overhead_per_trial"] for r in base)
        for variant in VARIANTS:
            runs = [r for r in results if r["variant"] == variant]
            if variant == "default" or not runs:
                continue
            b = statistics.median(r["wall"] for r in runs)
            ob = statistics.median(r["overhead_per_trial"] for r in runs)
            print(
                f"{variant} / default: study wall {b / a:.2f}x ({b:.1f} s vs {a:.1f} s), "
                f"overhead per trial {ob:.2f} s vs {oa:.2f} s"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6, help="trials per study (default 6)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per trial (default 2)")
    parser.add_argument("--concurrency", type=int, default=2, help="trials at a time (default 2)")
    parser.add_argument("--size", default="resnet8", help="resnet_cifar size (default resnet8)")
    parser.add_argument("--width", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--variants",
        default="before,default",
        help=f"comma-separated subset of {', '.join(VARIANTS)} (default: before,default)",
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs of each variant, alternating (default 1)"
    )
    parser.add_argument("--skip-components", action="store_true", help="skip the cold-cost measurements")
    parser.add_argument("--keep", default=None, help="keep the studies in this folder (default: a temp dir)")
    add_smoke_options(parser, "2 trials of 1 epoch per variant, every part once")
    args = parser.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in variants:
        if v not in VARIANTS:
            parser.error(f"unknown variant {v!r}; known: {', '.join(VARIANTS)}")
    ray_repeats = 2
    if args.smoke:
        args.trials, args.epochs, args.repeats, args.width, ray_repeats = 2, 1, 1, 0.25, 1
        args.keep = str(smoke_dir(args))

    print(header("Study harness overhead: Ray start-up, per-trial overhead vs training time"))
    quiet_ray_env()
    start = time.perf_counter()
    cfg = {"dataset": "mnist5k", "family": "resnet_cifar", "size": args.size, "width": args.width,
           "epochs": args.epochs, "batch_size": args.batch_size, "unit": "ic", "strategy": "all"}  # fmt: skip
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="icbench-harness-"))
    probe = write_study(folder, "probe", study_yaml(args, 0), SPACE)

    comp: dict[str, float] = {}
    ray_modes: dict[str, list[dict[str, Any]]] = {"default": [], "before": [], "preload": []}
    if args.smoke:  # one fresh Ray start (as shipped) is enough to run the code path
        ray_modes = {"default": []}
    if not args.skip_components:
        comp = components(cfg)
        for rep in range(ray_repeats):
            for mode in list(ray_modes) if rep % 2 == 0 else list(ray_modes)[::-1]:
                ray_modes[mode].append(ray_start(mode, probe))
    else:
        ray_modes = {}

    import_s, _ = timed(lambda: __import__("ray"))
    warm_s, _ = timed(warm_driver)
    print(f"the driver's first MACs count (paid before the variants): {warm_s:.2f} s")
    results = []
    for rep in range(args.repeats):
        order = variants if rep % 2 == 0 else variants[::-1]
        for v in order:
            r = run_variant(args, folder, f"harness_{v}_{rep}", v)
            print(
                f"  ran {r['name']}: {r['n']} complete in {r['wall']:.1f} s (train {r['train']:.1f} s)",
                flush=True,
            )
            results.append(r)

    print("\n## Ray start-up (the runner's own init_ray: local, num_cpus = CPU count), in this process")
    ray_rows = [["import ray", f"{import_s:.2f}", "once"]]
    for r in results:
        ray_rows.append([f"ray.init, {r['variant']} ({r['name']})", f"{r['ray_init']:.2f}", ""])
        ray_rows.append([f"ray.shutdown, {r['variant']} ({r['name']})", f"{r['ray_shutdown']:.2f}", ""])
    print(table(ray_rows, ["step", "s", "note"]))
    if results:
        inits = [r["ray_init"] for r in results if r["variant"] == "default"] or [
            r["ray_init"] for r in results
        ]
        total = import_s + statistics.median(inits)
        verdict = "meets" if total < RAY_TARGET_S else "MISSES"
        print(
            f"Ray start-up (import + median ray.init as shipped) {total:.2f} s: {verdict} the {RAY_TARGET_S:.0f} s target"
        )
    if ray_modes:
        print(
            "\nFresh interpreters, alternating: init_ray as shipped (default), without the levers (before) and "
            "with preloading (preload); "
            "then (after 1 s) one actor per CPU made as Ray Tune makes its trial actors, whose first call "
            "imports torch, torch._dynamo, ray.tune and icbench's trial modules"
        )
        rows = []
        for mode, runs in ray_modes.items():
            imports = [a for r in runs for a in r["imports"]]
            rows.append([mode, f"{statistics.median(r['import'] + r['init'] for r in runs):.2f}",
                         f"{statistics.median(r['ready'] for r in runs):.2f}", f"{statistics.median(imports):.2f}",
                         f"{statistics.median(r['shutdown'] for r in runs):.2f}",
                         f"{sum(r['prestarted'] for r in runs)}/{sum(len(r['imports']) for r in runs)}",
                         len(runs)])  # fmt: skip
        print(table(rows, ["init_ray", "import+init s", "actors ready s", "their imports s",
                           "shutdown s", "actors in pre-started workers", "runs"]))  # fmt: skip

    if comp:
        print("\n## Cold costs in a fresh interpreter (a trial's new Ray worker pays these; 1 CPU thread)")
        print(table([[k, f"{v:.2f}"] for k, v in comp.items()], ["step", "s"]))

    print_results(args, results)
    default = [r for r in results if r["variant"] == "default"]
    for key, what in (
        ("overhead_per_trial", f"whole study of {args.trials} trials"),
        ("marginal_per_trial", "within the search"),
    ):
        if default:
            o = statistics.median(r[key] for r in default)
            verdict = "meets" if o <= PER_TRIAL_TARGET_S else "MISSES"
            print(
                f"overhead per trial as shipped ({what}): {o:.2f} s: {verdict} the {PER_TRIAL_TARGET_S:.0f} s target"
            )
    if default:
        w = statistics.median(r["phases"]["warm_cycle"] for r in default)
        n_warm = sum(r["phases"]["n_warm"] for r in default)
        verdict = "meets" if w <= PER_TRIAL_TARGET_S else "MISSES"
        print(
            f"overhead per trial as shipped (each further trial, in a worker that ran one before: its slot's "
            f"cycle from the previous tell to its own, minus its loop; {n_warm} trials): {w:.2f} s: {verdict} "
            f"the {PER_TRIAL_TARGET_S:.0f} s target"
        )
    print(f"\nstudies kept in {folder}" if args.keep else f"\n(studies written to {folder})")
    if hasattr(__import__("os"), "getloadavg"):
        print(
            "load average (1, 5, 15 min) at the end: "
            + ", ".join(f"{v:.2f}" for v in __import__("os").getloadavg())
        )
    print(f"total benchmark time {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
