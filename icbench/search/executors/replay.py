"""The replay executor: every trial's results come from a benchmark table, on a simulated clock.

A replay is an ordinary study (same searcher, sampler, scheduler, storage, completion semantics and
report) whose trials are not trained: each candidate's row is looked up in the table
(`execution.table`, written by `run_study.py tabulate`) by its network (placement), WLD and seed.

- Seed: the trial's own seed where the search space has a `seed` parameter. Otherwise, with
  `execution.replay_seed: drawn` (the default), one of the table's seeds drawn deterministically from
  (sampler seed, trial number), so a replay is reproducible and its trials see the seed-to-seed noise a
  search meets; with `study`, the study's `training.seed` for every trial, as a live search trains them,
  so the replay reproduces that very search's values.
- Clock: `execution.max_concurrent` simulated workers. The first trial starts at `replay_clock.start_s`;
  a trial starts when a worker is free; its epoch `e` ends after `trial_overhead_s` plus the row's set-up
  time (wall time minus training time: data, build, teacher, test) times `setup_scale` plus its first `e`
  recorded epoch times times `epoch_scale`. With the defaults (0, 0, 1, 1) the table's times are taken
  as they are and driver-side overheads are not simulated; benchmarks/live_replay.py calibrates them
  against live runs of this machine. Results reach the scheduler in simulated-time order; a trial the
  scheduler stops is PRUNED at that epoch and frees its worker at that time.
- Each trial records `sim_start_s` and `sim_end_s` (seconds from the replay's start), the table row it
  read (`replay_row`) and `executor: replay`; reports use the simulated times.

`check_replay` refuses, before anything is written, a study whose experiment differs from the table's
(data, network, budget, recipe, WLD settings) or whose search space holds candidates the table lacks.
"""

from __future__ import annotations

import heapq
import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icbench.errors import ConfigError, IcbenchError
from icbench.recipe import LEGACY_UNIT_RECIPE
from icbench.report.table import experiment_of, read_table
from icbench.search import space as sp
from icbench.search.executors import EXECUTORS
from icbench.search.executors.progress import Progress
from icbench.search.propose import Proposer
from icbench.search.schedulers import make_scheduler
from icbench.search.trainable import FINAL_KEY


@dataclass
class Table:
    """A benchmark table indexed by (placement, wld, seed)."""

    path: Path
    rows: dict[tuple[str, bool, int], dict[str, Any]]
    seeds: list[int]
    experiment: dict[str, Any] | None
    epochs: int

    @classmethod
    def open(cls, path: str | Path) -> Table:
        frame, shared = read_table(path)
        rows: dict[tuple[str, bool, int], dict[str, Any]] = {}
        for rec in frame.to_dict("records"):
            rows[(str(rec["placement"]), bool(rec["wld"]), int(rec["seed"]))] = rec
        epochs = max((len(r["val_acc_curve"]) for r in rows.values()), default=0)
        return cls(Path(path), rows, sorted({k[2] for k in rows}), shared.get("experiment"), epochs)

    def costs(self) -> dict[str, dict[str, Any]]:
        """MACs and parameters by placement, as measured when the table was made."""
        return {
            r["placement"]: {"macs": int(r["macs"]), "params": int(r["params"]),
                             "params_trainable": int(r["params_trainable"])}
            for r in self.rows.values() if r["macs"] == r["macs"]
        }  # fmt: skip

    def row(self, placement: str, wld: bool, seed: int) -> dict[str, Any] | None:
        return self.rows.get((placement, bool(wld), int(seed)))


_TABLES: dict[str, Table] = {}


def open_table(loaded: Any) -> Table:
    """The study's table, read once per process (a benchmark replays it many times)."""
    path = str(loaded.config.execution.table)
    if path not in _TABLES:
        _TABLES[path] = Table.open(path)
    return _TABLES[path]


def check_replay(loaded: Any, checked: Any) -> None:
    """Refuse a replay the table cannot answer, before anything is written.

    Raises:
        ConfigError: the table is unreadable; the study's experiment (data, network, budget, recipe, WLD)
            differs from the table's, naming each field; the space is not finite; or some of its
            candidates are not in the table (the first few are named).
    """
    import optuna

    source = str(loaded.study_path)
    try:
        table = open_table(loaded)
    except IcbenchError as e:
        raise ConfigError(str(e), source=source, field="execution.table") from None
    try:
        points = sp.enumerate_points(loaded.space, checked.mask_len)
    except ValueError as e:
        raise ConfigError(
            f"a replay enumerates its space to check the table holds it: {e}",
            source=str(loaded.space_path),
        ) from None
    proposer = Proposer(loaded, checked, table.costs())
    missing: list[str] = []
    for params in points:
        cand = proposer.candidate(optuna.trial.FixedTrial(params))
        if table.experiment is not None:
            _check_experiment(experiment_of(cand), table, source)
        placement = proposer.cost(cand)[1]
        wld = bool((cand.get("wld") or {}).get("enabled"))
        seeds = [int(params["seed"])] if "seed" in params else _replay_seeds(loaded, table)
        for seed in seeds:
            row = table.row(placement, wld, seed)
            if row is None:
                missing.append(f"{placement} wld={wld} seed={seed}")
    if missing:
        shown = "; ".join(missing[:5]) + (f"; ... ({len(missing)} in all)" if len(missing) > 5 else "")
        raise ConfigError(
            f"the search space asks for candidates that the table {table.path} does not hold: {shown}. "
            f"The table holds {len(table.rows)} rows (seeds {table.seeds}); narrow the space to them or "
            "tabulate a larger space",
            source=str(loaded.space_path),
            field="params",
        )


def _check_experiment(mine: dict[str, Any], table: Table, source: str) -> None:
    # A table made before the unit settings existed trained its units the legacy way.
    theirs = {**LEGACY_UNIT_RECIPE, **(table.experiment or {})}
    diff = [
        f"{k}: table {json.dumps(theirs.get(k), default=str)}, study {json.dumps(mine.get(k), default=str)}"
        for k in sorted(set(mine) | set(theirs))
        if json.dumps(mine.get(k), sort_keys=True, default=str)
        != json.dumps(theirs.get(k), sort_keys=True, default=str)
    ]
    if diff:
        raise ConfigError(
            f"the table {table.path} was made with another experiment, so its rows would not be this "
            f"study's results: {'; '.join(diff)}",
            source=source,
            field="execution.table",
        )


def _replay_seeds(loaded: Any, table: Table) -> list[int]:
    """The table seeds a trial without a `seed` parameter may read."""
    if loaded.config.execution.replay_seed == "study":
        return [int(loaded.config.training.seed)]
    return table.seeds


def replay_seed(sampler_seed: int, trial_number: int, seeds: list[int]) -> int:
    """The table seed a trial without a `seed` parameter reads: fixed by (sampler seed, trial number)."""
    return random.Random(f"{sampler_seed}/{trial_number}").choice(seeds)


@dataclass(order=True)
class _Event:
    time: float
    order: int
    trial_id: str = field(compare=False)
    epoch: int = field(compare=False)


def _number(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def final_result(row: dict[str, Any], epochs: int, test: str = "all") -> dict[str, Any]:
    """The final result a live trial would report for this row (the searcher's input).

    `test` is the study's `evaluation.test`: the table's test accuracy is part of the result only with
    `all`; with `chosen` the driver takes it from the table after the search, for the chosen trials.
    """
    curve = [
        {"epoch": i + 1, "val_acc": float(v), "train_loss": float(loss), "epoch_time_s": float(t)}
        for i, (v, loss, t) in enumerate(
            zip(row["val_acc_curve"], row["train_loss_curve"], row["epoch_time_s_curve"], strict=True)
        )
    ][:epochs]
    out: dict[str, Any] = {
        FINAL_KEY: True,
        "status": row["status"],
        "epoch": len(curve),
        "curve": curve,
        "epochs_done": len(curve),
        "epochs_target": epochs,
    }
    for key in ("val_acc", "test_acc", "macs", "params", "params_trainable", "latency_ms", "wall_time_s",
                "train_time_s", "teacher_val_acc", "n_sites", "n_unit_sites", "unit_delta"):  # fmt: skip
        if key in row:
            out[key] = _number(row[key])
    for key in ("test_evaluated", "family", "size", "machine", "unit", "placement", "reason"):
        if row.get(key) is not None:
            out[key] = row[key]
    if test != "all":
        out.pop("test_acc", None)
        out.pop("test_evaluated", None)
    out["seed"], out["wld"] = int(row["seed"]), bool(row["wld"])
    if out["status"] != "complete":
        out.setdefault("reason", f"{out['status']} when the table was made")
    return out


@EXECUTORS.register("replay")
def execute_replay(
    loaded: Any, checked: Any, study: Any, target: int, echo: Callable[[str], None] | None
) -> str | None:
    """Replay the study against its table until the target is reached; returns why it stopped early.
    `echo` None: no progress lines (and none of their cost: a benchmark replays thousands of trials)."""
    from icbench.search.searcher import FINISHED, make_searcher  # imports torch (the trial's metric names)

    table = open_table(loaded)
    epochs = loaded.config.budget.epochs
    scheduler = make_scheduler(loaded)
    progress = Progress(study, target, echo, every=10) if echo is not None else None
    searcher = make_searcher(
        loaded, checked, study, target, progress, scheduler,
        executor="replay", known_costs=table.costs(),
    )  # fmt: skip
    has_seed = "seed" in loaded.space.params
    seeds = _replay_seeds(loaded, table)
    clock = loaded.config.execution.replay_clock
    workers = loaded.config.execution.max_concurrent
    events: list[_Event] = []
    running: dict[str, tuple[dict[str, Any], float, list[float]]] = {}  # id -> row, start, epoch ends
    order = 0
    finished = False

    def launch(now: float) -> None:
        nonlocal order, finished
        while not finished and len(running) < workers:
            trial_id = f"replay_{order:06d}"
            order += 1
            config = searcher.suggest(trial_id)
            if config is None or config == FINISHED:
                finished = finished or config == FINISHED or not running
                return
            trial = searcher.running[trial_id]
            attrs = trial.user_attrs
            seed = int(attrs["seed"]) if has_seed else replay_seed(
                loaded.config.sampler.seed, trial.number, seeds
            )  # fmt: skip
            row = table.row(attrs["placement"], bool(attrs["wld"]), seed)
            if row is None:  # `check_replay` rules this out for the space; a guard, not a path
                raise ConfigError(f"table {table.path} has no row {attrs['placement']} seed {seed}")
            setup = max(0.0, float(row["wall_time_s"]) - float(row["train_time_s"]))
            ends, t = [], now + clock.trial_overhead_s + clock.setup_scale * setup
            for dt in list(row["epoch_time_s_curve"])[:epochs]:
                t += clock.epoch_scale * float(dt)
                ends.append(t)
            trial.set_user_attr("sim_start_s", now)
            trial.set_user_attr("replay_row", str(row["row"]))
            trial.set_user_attr("seed", seed)
            scheduler.on_start(trial_id, config.get("cost"))
            running[trial_id] = (row, now, ends)
            heapq.heappush(events, _Event(ends[0], order, trial_id, 1))

    launch(clock.start_s)
    while events:
        ev = heapq.heappop(events)
        row, _, ends = running[ev.trial_id]
        trial = searcher.running[ev.trial_id]
        if ev.epoch >= len(ends):  # the last epoch: the final result
            trial.set_user_attr("sim_end_s", ev.time)
            del running[ev.trial_id]
            searcher.on_trial_complete(ev.trial_id, final_result(row, epochs, loaded.config.evaluation.test))
        else:
            i = ev.epoch - 1
            result = {
                "epoch": ev.epoch,
                "val_acc": float(row["val_acc_curve"][i]),
                "train_loss": float(row["train_loss_curve"][i]),
                "epoch_time_s": float(row["epoch_time_s_curve"][i]),
            }
            searcher.on_trial_result(ev.trial_id, result)
            if scheduler.on_result(ev.trial_id, ev.epoch, result):
                heapq.heappush(events, _Event(ends[ev.epoch], order, ev.trial_id, ev.epoch + 1))
                order += 1
            else:
                trial.set_user_attr("sim_end_s", ev.time)
                del running[ev.trial_id]
                searcher.on_trial_complete(ev.trial_id, result)
        launch(ev.time)
    return searcher.stop_reason
