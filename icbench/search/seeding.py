"""`seed_with`: a cheap estimator's top candidates enqueued before a live search (`icbench.estimators`).

Every distinct candidate of the study's finite space (points that build the same network with the same
WLD setting are one) is scored by the estimator on the study's own data and network family, with the
estimator's seed; the `top` best are enqueued, so the sampler trains them first and learns from them. The
study records `seeded_by` (estimator, top, seed, seconds, the enqueued candidates with their scores) and
each enqueued trial `proposed_by: estimator:<name>`; a resumed study is not seeded twice. The seconds are
spent inside `run_study`, so they count in the study's wall time.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from icbench.estimators import ESTIMATORS, EstimateContext, TableCandidate
from icbench.report.table import experiment_of
from icbench.search import space as sp
from icbench.search.propose import Proposer
from icbench.search.records import Checked
from icbench.search.schema import LoadedStudy

#: Study attribute recording the seeding.
SEEDED_ATTR = "seeded_by"


def space_candidates(
    loaded: LoadedStudy, checked: Checked
) -> tuple[dict[tuple[str, bool], tuple[dict[str, Any], TableCandidate]], dict[str, Any]]:
    """Every distinct candidate of a finite space: (placement, WLD) -> (the trial parameters that build
    it, the candidate as an estimator sees it), and the experiment they share (`experiment_of`). A
    `seed` parameter is left out (the search's own seed trains them)."""
    import optuna

    proposer = Proposer(loaded, checked)
    points: dict[tuple[str, bool], tuple[dict[str, Any], TableCandidate]] = {}
    experiment: dict[str, Any] = {}
    for params in sp.enumerate_points(loaded.space, checked.mask_len):
        params = {k: v for k, v in params.items() if k != "seed"}
        cand = proposer.candidate(optuna.trial.FixedTrial(params))
        cost, placement = proposer.cost(cand)
        wld = bool((cand.get("wld") or {}).get("enabled"))
        if (placement, wld) in points:
            continue
        experiment = experiment or experiment_of(cand)
        unit = placement.split(":", 1)[0]
        n_sites = placement.split(":", 1)[1].count("1") if ":" in placement else 0
        points[(placement, wld)] = (params, TableCandidate(placement, wld, unit, float(cost["macs"]),
                                                           float(cost["params"]), n_sites, {}))  # fmt: skip
    return points, experiment


def ranked_keys(points: Mapping[tuple[str, bool], Any], scores: Mapping[tuple[str, bool], float]) -> list:
    """The candidates of `points` with a finite score, best first (ties in a fixed order)."""
    finite = (k for k in points if math.isfinite(scores.get(k, math.nan)))
    return sorted(finite, key=lambda k: (-scores[k], json.dumps(k)))


def seed_study(loaded: LoadedStudy, checked: Checked, study: Any, echo: Callable[[str], None]) -> dict | None:
    """Score the space with `seed_with.estimator` and enqueue its top candidates, once per study.

    Returns the record stored as `seeded_by`, or None when the study has no `seed_with` or was seeded
    before.
    """
    sw = loaded.config.seed_with
    if sw is None or SEEDED_ATTR in study.user_attrs:
        return None
    t0 = time.perf_counter()
    points, experiment = space_candidates(loaded, checked)
    ctx = EstimateContext(experiment, (int(sw.seed),))
    scores = ESTIMATORS.get(sw.estimator)().score([c for _, c in points.values()], ctx, 0)
    chosen = ranked_keys(points, scores.values)[: sw.top]
    for key in chosen:
        study.enqueue_trial(points[key][0], user_attrs={"proposed_by": f"estimator:{sw.estimator}"},
                            skip_if_exists=True)  # fmt: skip
    record = {
        "estimator": sw.estimator, "top": sw.top, "seed": sw.seed, "candidates_scored": len(points),
        "seconds": round(time.perf_counter() - t0, 3),
        "enqueued": [{"placement": k[0], "wld": k[1], "score": scores.values[k]} for k in chosen],
    }  # fmt: skip
    study.set_user_attr(SEEDED_ATTR, record)
    echo(
        f"seed_with: {sw.estimator} scored {len(points)} candidates in {record['seconds']:.1f} s; its top "
        f"{len(chosen)} enqueued first"
    )
    return record
