"""Where a study's time goes: Ray start-up, per-trial overhead versus the trials' own training time.

Usage:
    .venv/bin/python benchmarks/harness.py [--trials 6] [--epochs 2] [--concurrency 2] [--size resnet8]
        [--width 0.5] [--batch-size 128] [--variants default,reuse_actors] [--repeats 1]
        [--skip-components] [--keep DIR]

A tiny study (mnist5k, resnet_cifar `--size`, `--epochs` per trial, no WLD) is generated in a temp folder
and run through `icbench.search.run_study` with Ray already started (its start-up is timed on its own).
From the stored trials: the study's wall time W, the sum T of the trials' own training time (the loop,
`train_time_s`), the sum of `train_candidate`'s wall time and of each trial's Optuna duration (ask to
tell). With c trials at a time, c·W is the slot time on offer; the overhead per trial is (c·W − T) / N,
split into: inside `train_candidate` outside the loop (data load, build, sites, test pass), the rest of
the trial (Ray actor start, imports, reporting, the driver's proposal), and idle slots between trials.
The driver's study check (probe builds) and proposal time are measured by wrapping them in this process.

Variants, run alternately `--repeats` times each so machine noise hits both alike:
- `default`: the study runner as shipped.
- `reuse_actors`: the same study with Ray Tune's `reuse_actors=True` (patched into `tune.TuneConfig` in
  this process only): the fix proposed for the per-trial process start, measured here before it is made.

`--skip-components` skips the cold costs measured in a fresh interpreter (imports, dataset load, build,
MACs count, test pass, an empty Ray actor's start): what every trial's new worker process pays.

Targets (issue 7): overhead under 10 % of study time when trials last 30 s or more (projected from the
measured overhead per trial when the trials are shorter); Ray start-up under 5 s.
The default run takes about 3 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import contextlib
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

from _common import header, quiet_ray_env, ray_worker_env, table, timed, write_study  # noqa: E402

OVERHEAD_TARGET = 0.10
LONG_TRIAL_S = 30.0
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


# Run in a fresh interpreter: a local Ray started with the runner's arguments, PYTHONPATH given either as
# a job runtime_env (as the runner does) or in the driver's environment before ray.init (inherited by
# Ray's prestarted workers); then actors that import nothing are started one after another.
RAY_START = r"""
import json, os, sys, time
mode, path = sys.argv[1], sys.argv[2]
kw = dict(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
if mode == "runtime_env":
    kw["runtime_env"] = {"env_vars": {"PYTHONPATH": path}}
else:
    os.environ["PYTHONPATH"] = path
s = time.perf_counter(); import ray; imp = time.perf_counter() - s
s = time.perf_counter(); ray.init(num_cpus=2, num_gpus=0, **kw); init = time.perf_counter() - s
time.sleep(1.0)  # let the prestarted workers come up, as they do while a study's driver sets up

@ray.remote(num_cpus=1)
class Empty:
    def path(self):
        return os.environ.get("PYTHONPATH")

starts = []
for _ in range(3):
    s = time.perf_counter(); a = Empty.remote(); seen = ray.get(a.path.remote())
    starts.append(time.perf_counter() - s); ray.kill(a)
s = time.perf_counter(); ray.shutdown(); down = time.perf_counter() - s
print("RAY " + json.dumps({"import": imp, "init": init, "actors": starts, "shutdown": down, "seen": seen}))
"""


def ray_start(mode: str) -> dict[str, Any]:
    """Ray's start-up and empty-actor starts in a fresh interpreter (see RAY_START)."""
    path = ray_worker_env()["PYTHONPATH"]
    proc = subprocess.run(
        [sys.executable, "-c", RAY_START, mode, path], capture_output=True, text=True, check=True
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


#: Variants of the runner measured side by side: name -> (reuse actors, stop a trial on its final result).
VARIANTS = {
    "default": (False, False),
    "reuse_actors": (True, False),
    "stop_on_final": (False, True),
    "both": (True, True),
}


@contextlib.contextmanager
def patched_tune(reuse: bool, stop_on_final: bool) -> Iterator[None]:
    """Ray Tune configured as a proposed fix would configure it, in this process only.

    reuse: `TuneConfig(reuse_actors=True)` (the runner leaves Tune's default, False: a new worker
        process per trial).
    stop_on_final: `RunConfig(stop={FINAL_KEY: True})`: Tune ends a trial as soon as its final result
        arrives, instead of waiting for the trial function's last `tune.report` to return.
    """
    from ray import tune

    from icbench.search.trainable import FINAL_KEY

    tune_config, run_config = tune.TuneConfig, tune.RunConfig

    # Subclasses, not functions: Tune checks isinstance(run_config, tune.RunConfig).
    class WithReuse(tune_config):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("reuse_actors", True)
            super().__init__(*args, **kwargs)

    class WithStop(run_config):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("stop", {FINAL_KEY: True})
            super().__init__(*args, **kwargs)

    if reuse:
        tune.TuneConfig = WithReuse  # type: ignore[misc]
    if stop_on_final:
        tune.RunConfig = WithStop  # type: ignore[misc]
    try:
        yield
    finally:
        tune.TuneConfig, tune.RunConfig = tune_config, run_config  # type: ignore[misc]


def traced_trainable(trace_dir: str) -> Any:
    """`run_trial` wrapped to write, per trial, when its worker process started, when the trial function
    was entered, when torch and icbench were imported and the dataset loaded, and when it returned.

    The wrapper calls `load_dataset` with the arguments `train_candidate` uses, so the trial then finds
    the dataset in the process's cache: the work done is the same, only split so it can be timed.
    Defined here and pickled by value (this file runs as __main__), so workers need no extra module.
    """

    def run_trial(config: dict[str, Any]) -> None:
        import json as _json
        import os as _os
        import time as _time

        entered = _time.time()

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
        try:
            trainable.run_trial(config)
        finally:
            record = {
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
        on_result = AskTellSearcher.on_trial_result

        def stamp_result(searcher: Any, trial_id: str, result: dict[str, Any]) -> None:
            trial = searcher.running.get(trial_id)
            if result.get(FINAL_KEY) and trial is not None:
                self.final_received[trial.number] = time.time()
            on_result(searcher, trial_id, result)

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
        AskTellSearcher.on_trial_result = stamp_result  # type: ignore[method-assign]
        icbench.cost.count_macs = counting(count_cost)
        icbench.placement.count_macs = counting(count_placement)
        try:
            yield
        finally:
            runner.check_study = check
            Proposer.__call__ = propose  # type: ignore[method-assign]
            AskTellSearcher.on_trial_result = on_result  # type: ignore[method-assign]
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


def run_variant(args: argparse.Namespace, folder: Path, name: str, variant: str) -> dict[str, Any]:
    """Run one study and return its timing breakdown."""
    import optuna

    from icbench.search import run_study
    from icbench.search.runner import storage_url
    from icbench.search.schema import load_study

    path = write_study(folder, name, study_yaml(args, seed=0), SPACE)
    driver = DriverTimes()
    trace_dir = folder / "trace" / name
    with driver.installed(), patched_tune(*VARIANTS[variant]), traced(trace_dir):
        wall, run = timed(lambda: run_study(path, report=False, echo=lambda s: None))
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
    slot = c * wall
    return {
        "name": name,
        "variant": variant,
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
        "in_candidate": (sum(inner) - sum(train)) / n,
        "in_trial": (sum(durations) - sum(inner)) / n,
        "between": (slot - sum(durations)) / n,
        "utilisation": sum(train) / slot if slot else float("nan"),
        "check_s": sum(driver.check_s),
        "propose_s": statistics.mean(driver.propose_s) if driver.propose_s else float("nan"),
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
    return {"means": means, "fresh": fresh, "traced": sum(1 for t in done if t.number in records)}


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
            "train/trial s", "report stall s", "ovh @30s trial"]  # fmt: skip
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
                f"{r['per_trial_train']:.2f}",
                f"{r['report_stall']:.2f}",
                f"{share:.0%} {verdict}",
            ]
        )
    print(table(rows, cols))
    print(
        "util = sum of the trials' loop time / (concurrency x study wall). ovh/trial = (concurrency x study "
        "wall - sum train) / trials = in cand (train_candidate outside its loop) + in trial (Optuna ask..tell "
        "minus train_candidate: actor start, imports, proposal, reporting) + between (idle slots). "
        "report stall = per trial, train_time_s minus the sum of its epochs' times: the loop waiting in "
        f"tune.report for the driver (epochs before the last). ovh @30s trial = ovh/trial / (30 s + "
        f"ovh/trial), target < {OVERHEAD_TARGET:.0%}."
    )
    cols = ["variant", "check_study s", "propose ms/trial", "MACs counts in driver", "first trial s",
            "mean trial s", "report s", "not complete"]  # fmt: skip
    rows = [
        [
            f"{r['variant']} ({r['name']})",
            f"{r['check_s']:.2f}",
            f"{1e3 * r['propose_s']:.0f}",
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
    rows.append(["trials run in a fresh worker process"] + [
        f"{r['phases']['fresh']}/{r['phases']['traced']}" for r in results])  # fmt: skip
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
        default="default,reuse_actors,stop_on_final,both",
        help=f"comma-separated subset of {', '.join(VARIANTS)}",
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs of each variant, alternating (default 1)"
    )
    parser.add_argument("--skip-components", action="store_true", help="skip the cold-cost measurements")
    parser.add_argument("--keep", default=None, help="keep the studies in this folder (default: a temp dir)")
    args = parser.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in variants:
        if v not in VARIANTS:
            parser.error(f"unknown variant {v!r}; known: {', '.join(VARIANTS)}")

    print(header("Study harness overhead: Ray start-up, per-trial overhead vs training time"))
    quiet_ray_env()
    start = time.perf_counter()
    cfg = {"dataset": "mnist5k", "family": "resnet_cifar", "size": args.size, "width": args.width,
           "epochs": args.epochs, "batch_size": args.batch_size, "unit": "ic", "strategy": "all"}  # fmt: skip

    comp: dict[str, float] = {}
    ray_modes: dict[str, list[dict[str, Any]]] = {"runtime_env": [], "environ": []}
    if not args.skip_components:
        comp = components(cfg)
        for _ in range(2):
            for mode in ray_modes:
                ray_modes[mode].append(ray_start(mode))
    else:
        ray_modes = {}

    import_s, _ = timed(lambda: __import__("ray"))
    import ray

    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="icbench-harness-"))
    from icbench.search.executors.ray_tune import init_ray  # the runner's own start-up, timed on its own
    from icbench.search.schema import load_study

    probe = load_study(write_study(folder, "probe", study_yaml(args, 0), SPACE))
    init_s, _ = timed(lambda: init_ray(probe))

    results = []
    try:
        for rep in range(args.repeats):
            order = variants if rep % 2 == 0 else variants[::-1]
            for v in order:
                r = run_variant(args, folder, f"harness_{v}_{rep}", v)
                print(
                    f"  ran {r['name']}: {r['n']} complete in {r['wall']:.1f} s (train {r['train']:.1f} s)",
                    flush=True,
                )
                results.append(r)
    finally:
        shutdown_s, _ = timed(ray.shutdown)

    print("\n## Ray start-up (the runner's own ray.init arguments, local, num_cpus = CPU count)")
    ray_rows = [
        ["import ray", f"{import_s:.2f}"],
        ["ray.init", f"{init_s:.2f}"],
        ["ray.shutdown", f"{shutdown_s:.2f}"],
        ["start-up total (import + init)", f"{import_s + init_s:.2f}"],
    ]
    print(table(ray_rows, ["step", "s"]))
    verdict = "meets" if import_s + init_s < RAY_TARGET_S else "MISSES"
    print(f"Ray start-up {import_s + init_s:.2f} s: {verdict} the {RAY_TARGET_S:.0f} s target")
    if ray_modes:
        print(
            "\nFresh interpreters, alternating: PYTHONPATH as a job runtime_env (what the runner does) vs in "
            "the driver's environment before ray.init; an actor that imports nothing, created to first call"
        )
        rows = []
        for mode, runs in ray_modes.items():
            actors = [a for r in runs for a in r["actors"]]
            rows.append([mode, f"{statistics.median(r['import'] + r['init'] for r in runs):.2f}",
                         f"{statistics.median(actors):.2f}", f"{min(actors):.2f}-{max(actors):.2f}",
                         f"{statistics.median(r['shutdown'] for r in runs):.2f}", len(actors)])  # fmt: skip
        print(table(rows, ["PYTHONPATH given as", "import+init s", "actor start s (median)", "range",
                           "shutdown s", "actors"]))  # fmt: skip

    if comp:
        print("\n## Cold costs in a fresh interpreter (a trial's new Ray worker pays these; 1 CPU thread)")
        print(table([[k, f"{v:.2f}"] for k, v in comp.items()], ["step", "s"]))

    print_results(args, results)
    print(f"\nstudies kept in {folder}" if args.keep else f"\n(studies written to {folder})")
    print(f"total benchmark time {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
