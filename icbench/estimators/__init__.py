"""Estimators: cheap scores of a table's candidates, measured against the table (`run_study.py estimate`).

One file per estimator, registered by name with `@ESTIMATORS.register` (`_base.Estimator`). Adding one is
one file here with one decorator, plus its import line below. `evaluate` scores a table's candidates with
each estimator over repeats and measures the scores against the held-out seeds; `report` writes
estimators.md, .csv and .png.
"""

from __future__ import annotations

from icbench.estimators import (  # noqa: E402,F401,I001 - registration (reports list them in `run.DEFAULT` order)
    final,
    grad_norm,
    jacob_cov,
    macs,
    nwot,
    params,
    random,
    snip,
    sotl,
    supernet,
    synflow,
    unit_sites,
    val_acc_e1,
    val_acc_e2,
)  # fmt: skip
from icbench.estimators._base import ESTIMATORS, EstimateContext, Estimator, Scores, TableCandidate

__all__ = ["ESTIMATORS", "EstimateContext", "Estimator", "Scores", "TableCandidate"]
