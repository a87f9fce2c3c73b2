"""Measure estimators against a benchmark table (`run_study.py estimate TABLE`).

Protocol, per repeat r (one per table seed, `--repeats` of them): every estimator scores every candidate
with seed s_r (initialisation, warm-start batches, or the s_r rows of the table's curves); the *truth* of
repeat r is each candidate's mean final validation accuracy over the table's other seeds, so an estimator
never shares seed noise with its truth. Against it, over all candidates and within each stratum (unit x
WLD: the candidates of one unit that differ only in placement):

- Spearman ρ and Kendall τ-b of score and truth;
- precision of the top 10 %: the share of the estimator's top 10 % (at least one) in the true top 10 %;
- regret: the truth of the true best minus the truth of the estimator's top pick, in accuracy points;
- cost: seconds to score every candidate (set-up + per candidate x candidates).

Each figure is averaged over the repeats with its 95 % t interval. The estimator `final` (one seed's full
training) is the noise ceiling in this protocol: no estimator scored by one seed does better except by
chance.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from icbench.errors import IcbenchError
from icbench.estimators._base import ESTIMATORS, EstimateContext, Key, Scores, TableCandidate

#: Share of candidates that counts as the top.
TOP = 0.10
#: Scope label of the measurement over every candidate.
ALL = "all candidates"


class EstimateError(IcbenchError):
    """A table an estimate cannot measure against: no seeds to hold out, or no networks to build."""


def table_candidates(frame: Any) -> list[TableCandidate]:
    """The table's candidates (placement x WLD) with their complete rows by seed."""
    ok = frame[(frame["status"] == "complete") & frame["val_acc"].notna()]
    out = []
    for (placement, wld), group in ok.groupby(["placement", "wld"], sort=True):
        first = group.iloc[0]
        out.append(TableCandidate(
            placement=str(placement), wld=bool(wld), unit=str(first["unit"]), macs=float(first["macs"]),
            params=float(first["params"]), n_unit_sites=int(first["n_unit_sites"]),
            rows={int(r["seed"]): r for r in group.to_dict("records")},
        ))  # fmt: skip
    return out


#: The table columns every estimate reads (the candidates, their seeds and the truth); an estimator's
#: own further columns are its `reads`.
REQUIRED = ("placement", "wld", "unit", "macs", "params", "n_unit_sites", "seed", "status", "val_acc")


def check_names(names: Sequence[str]) -> None:
    """The estimators asked for: at least one, each registered, none twice.

    Raises:
        EstimateError: (option `--estimators`) none, or one named twice. UnknownNameError: an unknown name.
    """
    known = ", ".join(sorted(ESTIMATORS.keys()))
    if not names:
        raise EstimateError(f"option --estimators: no estimator named; choose from {known}")
    twice = sorted({n for n in names if list(names).count(n) > 1})
    if twice:
        raise EstimateError(f"option --estimators: {', '.join(twice)} named more than once")
    for n in names:
        ESTIMATORS.get(n)  # an unknown name: UnknownNameError, listing the valid ones


def check_table(
    frame: Any, shared: Mapping[str, Any], names: Sequence[str], path: str, repeats: int | None = None
) -> tuple[int, ...]:
    """The table's seeds, after refusing what an estimate cannot use (one line naming what is missing).

    Raises:
        EstimateError: a column an estimator reads is missing, fewer than two seeds (nothing to hold
            out), more `repeats` than seeds (each repeat holds out another seed), or no experiment to
            build networks from when a proxy needs them.
    """
    for name in [None, *names]:
        wanted = REQUIRED if name is None else ESTIMATORS.get(name).reads
        missing = [c for c in wanted if c not in frame.columns]
        if missing:
            who = "an estimate" if name is None else f"the estimator {name}"
            raise EstimateError(
                f"{path}: the table has no column {missing[0]!r}, which {who} reads"
                + (f" (also missing: {', '.join(missing[1:])})" if missing[1:] else "")
                + "; is it a table written by `icbench tabulate`?"
            )
    seeds = tuple(sorted({int(s) for s in frame["seed"]})) if "seed" in frame else ()
    if len(seeds) < 2:
        raise EstimateError(
            f"{path}: the table has {len(seeds)} seed(s); an estimate holds one seed out as the truth and "
            "needs at least 2 (tabulate a space with a `seed` parameter)"
        )
    if repeats is not None and repeats > len(seeds):
        raise EstimateError(
            f"option --repeats: {repeats} repeats, but {path} has {len(seeds)} seeds ({', '.join(map(str, seeds))}) "
            f"and each repeat holds out another one; use --repeats {len(seeds)} or fewer"
        )
    needs_net = [n for n in names if ESTIMATORS.get(n).kind == "proxy"]
    exp = shared.get("experiment") or {}
    lacking = [k for k in ("family", "dataset") if not exp.get(k)]
    if needs_net and lacking:
        raise EstimateError(
            f"{path}: the table's metadata names no {' or '.join(lacking)}, so the networks of the "
            f"candidates cannot be built for {', '.join(needs_net)}"
        )
    return seeds


def truth(cands: Sequence[TableCandidate], held_out: int) -> dict[Key, float]:
    """Each candidate's mean final validation accuracy over the seeds other than `held_out`."""
    out = {}
    for c in cands:
        vals = [float(r["val_acc"]) for s, r in c.rows.items() if s != held_out]
        if vals:
            out[c.key] = float(np.mean(vals))
    return out


def measure(scores: Mapping[Key, float], true: Mapping[Key, float]) -> dict[str, float]:
    """Spearman, Kendall τ-b, top-10 % precision and regret (points) of `scores` against `true`, over
    the keys both hold with finite values. NaN where the scores are constant (they rank nothing)."""
    from scipy.stats import kendalltau, spearmanr

    keys = [k for k in true if k in scores and math.isfinite(scores[k])]
    nan = math.nan
    if len(keys) < 2:
        return {"spearman": nan, "kendall": nan, "top_precision": nan, "regret": nan, "n": len(keys)}
    s = np.array([scores[k] for k in keys])
    t = np.array([true[k] for k in keys])
    ranked = np.ptp(s) > 0
    top = max(1, int(round(TOP * len(keys))))
    # ties in the scores are broken at random (fixed generator), so a constant score is no better than chance
    jitter = np.random.default_rng(0).random(len(keys)) * 1e-12 * (np.abs(s).max() + 1)
    pick = np.argsort(-(s + jitter), kind="stable")
    true_top = set(np.argsort(-t, kind="stable")[:top])
    return {
        "spearman": float(spearmanr(s, t).statistic) if ranked else nan,
        "kendall": float(kendalltau(s, t).statistic) if ranked else nan,
        "top_precision": len(true_top & set(pick[:top])) / top,
        "regret": 100.0 * float(t.max() - t[pick[0]]),
        "n": len(keys),
    }


@dataclass(frozen=True)
class Measurement:
    """One estimator, one scope, one repeat."""

    estimator: str
    scope: str
    repeat: int
    seed: int
    metrics: dict[str, float]
    cost_s: float
    #: The part of `cost_s` paid once, whatever the number of candidates (a supernet's training).
    setup_s: float = 0.0


def _jobs(names: Sequence[str], repeats: int) -> list[tuple[int, tuple[str, ...]]]:
    """(repeat, estimators) units of work: estimators sharing state (`Estimator.shares`) together, the
    cheap ones (`free`, `training`) together, every other proxy alone; the longest first."""
    groups: dict[str, list[str]] = {}
    for n in names:
        cls = ESTIMATORS.get(n)
        key = cls.shares or ("cheap" if cls.kind in ("free", "training") else f"own:{n}")
        groups.setdefault(key, []).append(n)
    order = sorted(groups.items(), key=lambda kv: kv[0] == "cheap")
    return [(r, tuple(g)) for _, g in order for r in range(repeats)]


def _score_job(
    job: tuple[int, tuple[str, ...]], cands: Sequence[TableCandidate], experiment: Mapping[str, Any],
    seeds: tuple[int, ...], threads: int | None,
) -> list[tuple[str, int, Scores]]:  # fmt: skip
    """Score one job's estimators on one repeat (in a worker process: one context of its own)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    repeat, names = job
    ctx = EstimateContext(experiment, seeds)
    return [(n, repeat, ESTIMATORS.get(n)().score(cands, ctx, repeat)) for n in names]


def evaluate(
    frame: Any,
    shared: Mapping[str, Any],
    names: Sequence[str],
    *,
    repeats: int = 3,
    path: str = "table",
    echo: Any = None,
    workers: int = 1,
) -> list[Measurement]:
    """Every estimator of `names` on every repeat, measured over all candidates and within each stratum.

    With `workers` > 1 the (repeat, estimator group) jobs run in that many processes with one torch
    thread each, as a table's rows are trained (one thread per trial, two at a time): the costs are then
    those of one core. The scores are those of a serial run with one torch thread (a network
    trained on more threads sums its floats in another order and ends slightly elsewhere).

    Raises:
        EstimateError: see `check_table`. UnknownNameError: an estimator name (listing the valid ones).
    """
    for n in names:
        ESTIMATORS.get(n)
    seeds = check_table(frame, shared, names, path, repeats)
    cands = table_candidates(frame)
    ctx = EstimateContext(shared.get("experiment") or {}, seeds)
    n_rep = min(repeats, len(seeds))
    jobs = _jobs(names, n_rep)
    scored: dict[tuple[str, int], Scores] = {}

    def record(batch: list[tuple[str, int, Scores]]) -> None:
        for name, r, sc in batch:
            scored[(name, r)] = sc
            if echo:
                echo(f"  repeat {r} (seed {ctx.seed(r)}): {name} in {sc.cost_s():.1f} s")

    if workers > 1:
        import functools
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        work = functools.partial(_score_job, cands=cands, experiment=ctx.experiment, seeds=seeds, threads=1)
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
            for fut in as_completed([pool.submit(work, j) for j in jobs]):
                record(fut.result())
    else:  # one context for all: the data is loaded once
        for r, group in sorted(jobs):
            record([(n, r, ESTIMATORS.get(n)().score(cands, ctx, r)) for n in group])
    strata: dict[str, list[TableCandidate]] = {}
    for c in cands:
        if c.stratum != "basic":
            strata.setdefault(c.stratum, []).append(c)
    out: list[Measurement] = []
    for r in range(n_rep):
        held = ctx.seed(r)
        true = truth(cands, held)
        for name in names:
            sc = scored[(name, r)]
            out.append(Measurement(name, ALL, r, held, measure(sc.values, true), sc.cost_s(), sc.setup_s))
            for label, members in sorted(strata.items()):
                keys = {c.key for c in members}
                sub = {k: v for k, v in true.items() if k in keys}
                out.append(
                    Measurement(name, label, r, held, measure(sc.values, sub), sc.cost_s(), sc.setup_s)
                )
    return out
