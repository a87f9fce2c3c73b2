"""Tabulate a finite search space: train every distinct candidate × seed through the live path (IC-Bench).

`run_study.py tabulate STUDY` enumerates the study's search space (categoricals, ints, floats with a step
and masks; `when` conditions honoured), drops points that build the same experiment (every basic
placement is one network), orders the rest seed-major (an interrupted table holds whole seeds first) and
runs each once as an ordinary trial of the study: same storage, fingerprint, resume and report as any
study. The seeds are the space's `seed` parameter (or `training.seed` alone). Afterwards the table
(`icbench.report.table`) is written from the storage: one row per (candidate, seed).

A *pilot* (`--pilot N`) runs the rows of N placements drawn at random (the same N for every unit, the
basic network always) before anyone pays for the whole table: its table carries the signal diagnostics
(`report TABLE`) and the seconds per row. Its rows are rows of the full table, in the same storage, so
a full run of the same study afterwards trains none of them again.

Resume works as for `confirm`: a killed run leaves finished rows COMPLETE, the next run marks the
interrupted ones FAIL and queues exactly the rows without a settling trial, so nothing is trained twice.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from icbench.errors import ConfigError
from icbench.places import output_file_problem
from icbench.redact import mask_url
from icbench.report.table import ROW_ATTR, write_table
from icbench.search import space as sp
from icbench.search.checkpoints import checkpoint_root
from icbench.search.checks import check_run, check_study
from icbench.search.evaluation import evaluate_chosen
from icbench.search.executors import execute
from icbench.search.executors.ray_tune import cluster_connection
from icbench.search.interrupts import handled
from icbench.search.lock import study_lock
from icbench.search.propose import Proposer
from icbench.search.records import StudyRun
from icbench.search.samplers.queue import queue_sampler
from icbench.search.schema import FloatParam, LoadedStudy, MaskParam
from icbench.search.storage import make_storage, storage_url
from icbench.search.study import load_study, open_study, write_report
from icbench.search.trials import counts, mark_interrupted, queue_missing, settled_keys

#: Where tables go unless `--out` says otherwise: tables/<study>.parquet.
TABLES_DIR = "tables"


@dataclass(frozen=True)
class Row:
    """One (candidate, seed) of the table: the Optuna parameters of its trial."""

    params: dict[str, Any]

    @property
    def key(self) -> str:
        return json.dumps(self.params, sort_keys=True, default=str)


def check_finite(loaded: LoadedStudy) -> None:
    """A table needs a finite space: every float parameter must have a step."""
    for name, p in loaded.space.params.items():
        if isinstance(p, FloatParam) and p.step is None:
            raise ConfigError(
                "a table needs a finite search space: give this float parameter a `step` (or make it "
                "categorical)",
                source=str(loaded.space_path),
                field=f"params.{name}",
            )
    if loaded.config.evaluation.test != "all":
        raise ConfigError(
            f"a table records every row's test accuracy: set `evaluation: {{test: all}}` (it is "
            f"{loaded.config.evaluation.test!r}; no search selects on a table's test column)",
            source=str(loaded.study_path),
            field="evaluation.test",
        )
    if loaded.config.execution.asha.enabled:
        raise ConfigError(
            "a table trains every row to the full budget: turn early stopping off",
            source=str(loaded.study_path),
            field="execution.asha.enabled",
        )


def table_rows(loaded: LoadedStudy, proposer: Any, mask_len: int | None) -> list[Row]:
    """The distinct (candidate, seed) points of a finite space, seed-major, in enumeration order.

    Two points are one row when they build the same experiment (`Proposer.experiment_key`): e.g. every
    all-`False` mask is the basic network, whatever unit the point names.
    """
    import optuna

    seen: set[str] = set()
    rows: list[Row] = []
    networks: dict[str, str] = {}  # the network does not depend on the seed: build it once per point
    for params in sp.enumerate_points(loaded.space, mask_len):
        cand = proposer.candidate(optuna.trial.FixedTrial(params))
        arch = json.dumps({k: v for k, v in cand.items() if k != "seed"}, sort_keys=True, default=str)
        if arch not in networks:
            networks[arch] = proposer.cost(cand)[1]
        key = proposer.experiment_key(cand, networks[arch])
        if key not in seen:
            seen.add(key)
            rows.append(Row(params))
    default = loaded.config.training.seed
    return sorted(
        rows, key=lambda r: r.params.get("seed", default)
    )  # stable: enumeration order within a seed


def pilot_rows(loaded: LoadedStudy, rows: list[Row], n: int, seed: int = 0) -> list[Row]:
    """The rows of `n` placements drawn at random (seeded) from the space's non-basic masks, kept for
    every unit and seed, and the basic network's rows; `rows` unchanged when `n` is all the masks.

    Raises:
        ConfigError: (option `--pilot`) `n` below 2 (a pilot compares placements) or above the space's
            placements, or a space without a mask parameter (nothing to draw from).
    """
    if n < 2:
        raise ConfigError(f"a pilot needs at least 2 placements to compare (got {n})", field="--pilot")
    masks = [name for name, p in loaded.space.params.items() if isinstance(p, MaskParam)]

    def bits(row: Row) -> tuple[tuple[str, Any], ...]:
        return tuple(sorted((k, v) for k, v in row.params.items() if any(k.startswith(f"{m}_") for m in masks)))

    placed = sorted({bits(r) for r in rows if any(v for _, v in bits(r))})
    if not masks:
        raise ConfigError(
            f"a pilot draws placements of the space's mask parameter, and {loaded.space_path} has none",
            field="--pilot",
        )
    if n > len(placed):
        raise ConfigError(
            f"{n} placements asked for, but the space has {len(placed)} (besides the basic network); "
            f"use --pilot {len(placed)} or fewer, or no --pilot for the whole table",
            field="--pilot",
        )
    if len(placed) == n:
        return rows
    chosen = set(random.Random(seed).sample(placed, n))
    return [r for r in rows if bits(r) in chosen or not any(v for _, v in bits(r))]


def _row_of(trial: Any) -> str | None:
    return trial.user_attrs.get(ROW_ATTR)


def queue_rows(study: Any, rows: list[Row]) -> tuple[int, int]:
    """Enqueue every row without a settling trial; returns (rows to run now, rows already settled)
    (`trials.queue_missing`: a diverged row is an outcome, recorded in the table as such, and not retrained)."""
    return queue_missing(study, [(r.key, r.params, {ROW_ATTR: r.key}) for r in rows], _row_of)


def tabulate(
    path: str | Path,
    *,
    out: str | Path | None = None,
    report: bool = True,
    overrides: dict[str, Any] | None = None,
    pilot: int | None = None,
    pilot_seed: int = 0,
    echo: Callable[[str], None] = print,
) -> StudyRun:
    """Train every row of the study's finite space (resumable) and write its table.

    Args:
        path: the study file.
        out: the table's Parquet file (default `tables/<study>.parquet`, a pilot's
            `tables/<study>.pilot.parquet`); its schema is written beside it.
        report: also build the study's ordinary report.
        pilot: train only the rows of this many placements drawn at random (`pilot_rows`, `pilot_seed`).

    Raises:
        ConfigError: an infinite space, a test setting other than `all`, or any invalid input, before
            anything is written.
    """
    t0 = time.perf_counter()
    loaded = load_study(path, overrides)
    check_finite(loaded)
    checked = check_study(loaded)
    check_run(loaded)  # the run's own pre-training checks: data files, storage, resume, resources, tracking
    rows = table_rows(loaded, Proposer(loaded, checked), checked.mask_len)
    if pilot is not None:
        full = len(rows)
        rows = pilot_rows(loaded, rows, pilot, pilot_seed)
        echo(f"pilot: {len(rows)} of the table's {full} rows ({pilot} placements drawn with seed {pilot_seed})")
    c = loaded.config
    url = storage_url(loaded)
    run = StudyRun(name=c.name, storage_url=url)
    suffix = ".pilot.parquet" if pilot is not None else ".parquet"
    table_file = Path(out) if out else Path(TABLES_DIR) / f"{c.name}{suffix}"
    for problem in (output_file_problem(table_file), output_file_problem(table_file.with_suffix(".md"))):
        if problem:  # the table is written after every row is trained: refused before the first
            raise ConfigError(f"the table cannot be written: {problem}", field="--out" if out else None)
    with handled(), cluster_connection(loaded), study_lock(loaded, url):
        storage = make_storage(url)
        study = open_study(loaded, url, storage=storage, echo=echo)
        study.sampler = queue_sampler(rows[0].params)
        # A row left running with a checkpoint continues as the same trial; any other is queued again.
        n_stale, _ = mark_interrupted(study, storage, checkpoints=checkpoint_root(loaded))
        if n_stale:
            echo(f"resume: {n_stale} row(s) left running by an earlier driver marked FAIL (interrupted)")
        todo, done = queue_rows(study, rows)
        before = counts(study)
        echo(
            f"tabulate {c.name!r}: {len(rows)} rows (distinct candidates x seeds); {done} already settled, "
            f"{todo} to run; storage {mask_url(url)}"
        )
        if todo:
            target = before["complete"] + before["pruned"] + todo
            reason = execute(loaded, checked, study, target, echo)
            left = [r for r in rows if r.key not in settled_keys(study, _row_of)[0]]
            if left:
                run.stop_reason = f"{len(left)} row(s) not run ({reason or 'stopped'}); run tabulate again"
        after = counts(study)
        run.n_complete, run.n_pruned = after["complete"], after["pruned"]
        run.n_failed, run.n_rejected = after["failed"], after["rejected"]
        run.n_duplicate = after["duplicate"]
        evaluate_chosen(loaded, url, study, echo)  # records the setting (`all`: rows evaluated themselves)
        n = write_table(url, c.name, table_file, rows=[r.key for r in rows])
        echo(f"table written to {table_file} ({n} rows; schema in {table_file.with_suffix('.md')})")
        if report:
            run.report_dir = write_report(loaded, url, echo)
    run.wall_time_s = time.perf_counter() - t0
    echo(f"done in {run.wall_time_s:.1f} s")
    return run
