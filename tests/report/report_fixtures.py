"""Fixture studies for the report tests, created with plain Optuna in a temporary SQLite file.

They follow the storage schema the search layer writes: study user attributes (objectives, sampler,
versions, device, ...) and per-trial user attributes (status, placement, unit, metrics, curve).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

optuna.logging.set_verbosity(optuna.logging.WARNING)

T0 = dt.datetime(2026, 11, 2, 9, 0, 0)
OBJECTIVES = [{"name": "val_acc", "direction": "maximize"}, {"name": "macs", "direction": "minimize"}]
BASIC_MACS = 10_000_000
#: Categorical choices of the fixture parameters (Optuna needs the same choices in every trial).
CHOICES: dict[str, tuple[Any, ...]] = {
    "unit": ("conv", "ic", "ic_dual", "se"),
    "strategy": ("none", "all", "stages", "first_k", "mask"),
    "seed": (0, 1, 2),
    "wld": (False, True),
}


def curve(final: float, epochs: int = 4, start: float = 0.5) -> list[dict[str, Any]]:
    """A rising validation curve that ends at `final`."""
    return [
        {
            "epoch": e,
            "train_loss": 1.0 / (e + 1),
            "val_acc": start + (final - start) * (e + 1) / epochs,
            "epoch_time_s": 1.0,
        }
        for e in range(epochs)
    ]


def add_trial(
    study: optuna.Study,
    *,
    state: TrialState,
    params: dict[str, Any],
    attrs: dict[str, Any],
    start_s: float,
    duration_s: float,
) -> None:
    """Add a finished trial with the schema's attributes and explicit start/end times."""
    distributions = {
        k: FloatDistribution(1e-4, 1.0, log=True) if k == "lr" else CategoricalDistribution(CHOICES[k])
        for k in params
    }
    values = [attrs["val_acc"], attrs["macs"]] if state == TrialState.COMPLETE else None
    trial = optuna.trial.create_trial(
        state=state, values=values, params=params, distributions=distributions, user_attrs=attrs
    )
    trial.datetime_start = T0 + dt.timedelta(seconds=start_s)
    trial.datetime_complete = trial.datetime_start + dt.timedelta(seconds=duration_s)
    study.add_trial(trial)


def study_attrs(study: optuna.Study, sampler: str, n_trials: int) -> None:
    study.set_user_attr("objectives", OBJECTIVES)
    study.set_user_attr("study_file", "studies/fixture.yaml")
    study.set_user_attr("study_yaml", "name: fixture\nfamily: resnet_cifar\n")
    study.set_user_attr("space_hash", "abc123")
    study.set_user_attr("seed", 0)
    study.set_user_attr("sampler", sampler)
    study.set_user_attr("versions", {"torch": "2.14.1", "optuna": optuna.__version__})
    study.set_user_attr("device", "cpu (2 threads)")
    study.set_user_attr("max_macs", 30_000_000.0)
    study.set_user_attr("n_trials", n_trials)


def metrics(
    val: float | None,
    macs: float,
    *,
    unit: str,
    strategy: str,
    placement: str,
    seed: int = 0,
    wld: bool = True,
    status: str = "complete",
    test: float | None = None,
    epochs: int = 4,
    **extra: Any,
) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "status": status,
        "placement": placement,
        "unit": unit,
        "strategy": strategy,
        "family": "resnet_cifar",
        "size": "resnet8",
        "seed": seed,
        "wld": wld,
        "is_basic": unit == "conv",
        "macs": macs,
        "params": 78_000 + (0 if unit == "conv" else 500),
        "params_trainable": 78_000,
        "latency_ms": 3.5 + macs / 1e7,
        "epochs_target": 4,
    }
    if val is not None:
        attrs.update(
            val_acc=val,
            test_acc=test if test is not None else val - 0.01,
            epochs_done=epochs,
            wall_time_s=10.0 * epochs,
            curve=curve(val, epochs),
        )
    attrs.update(extra)
    return attrs


#: (state, val_acc, macs, unit, strategy, placement, seed, extra attrs) of the search fixture, in
#: trial-number order. Expected (val_acc, MACs) front over COMPLETE trials: #0 basic (0.90, 10M) is
#: dominated by #2/#3 (0.93, 10M, a tie: both kept), #4 (0.95, 15M), #6 (0.97, 20M). #5 duplicates the
#: dominated (0.92, 15M) twice with #7. PRUNED #8 and FAIL #9/#10 would dominate everything if counted.
SEARCH_ROWS: list[tuple[Any, ...]] = [
    (TrialState.COMPLETE, 0.90, 10e6, "conv", "none", "conv:000000", 0, {}),
    (TrialState.COMPLETE, 0.91, 10e6, "ic", "first_k", "ic:110000", 0, {}),
    (TrialState.COMPLETE, 0.93, 10e6, "ic", "all", "ic:111111", 0, {}),
    (TrialState.COMPLETE, 0.93, 10e6, "ic", "all", "ic:111111", 1, {}),
    (TrialState.COMPLETE, 0.95, 15e6, "ic_dual", "stages", "ic_dual:001100", 0, {}),
    (TrialState.COMPLETE, 0.92, 15e6, "ic_dual", "first_k", "ic_dual:110000", 0, {}),
    (TrialState.COMPLETE, 0.97, 20e6, "ic_dual", "all", "ic_dual:111111", 0, {}),
    (TrialState.COMPLETE, 0.92, 15e6, "ic_dual", "first_k", "ic_dual:110000", 1, {}),
    (TrialState.PRUNED, 0.99, 5e6, "se", "mask", "se:101010", 0, {"status": "pruned", "reason": "ASHA"}),
    (TrialState.FAIL, 0.995, 4e6, "ic", "mask", "ic:010101", 0, {"status": "diverged", "reason": "NaN loss"}),
    (
        TrialState.FAIL,
        None,
        60e6,
        "ic_dual",
        "all",
        "ic_dual:111111",
        0,
        {"status": "rejected", "rejected": True, "reason": "MACs 60000000 over ceiling 30000000"},
    ),
    (TrialState.COMPLETE, 0.94, 12e6, "se", "stages", "se:001100", 0, {}),
]

#: Expected front trial numbers (val_acc max, MACs min), sorted by MACs then number.
SEARCH_FRONT = [2, 3, 11, 4, 6]


def make_search_study(storage: str, name: str = "search") -> optuna.Study:
    study = optuna.create_study(study_name=name, storage=storage, directions=["maximize", "minimize"])
    study_attrs(study, "TPESampler", len(SEARCH_ROWS))
    for i, (state, val, macs, unit, strategy, placement, seed, extra) in enumerate(SEARCH_ROWS):
        attrs = metrics(val, macs, unit=unit, strategy=strategy, placement=placement, seed=seed, **extra)
        params = {"unit": unit, "strategy": strategy, "lr": 0.05, "seed": seed}
        add_trial(study, state=state, params=params, attrs=attrs, start_s=60 * i, duration_s=50 + i)
    return study


def make_grid_study(storage: str, name: str = "grid") -> optuna.Study:
    """unit {conv, ic} x wld {False, True} x seed {0, 1, 2}, all COMPLETE, 4-epoch curves."""
    study = optuna.create_study(study_name=name, storage=storage, directions=["maximize", "minimize"])
    study_attrs(study, "GridSampler", 12)
    i = 0
    for unit in ("conv", "ic"):
        for wld in (False, True):
            for seed in range(3):
                base = 0.90 if unit == "conv" else 0.92 + (0.02 if wld else 0.0)
                val = base + 0.005 * seed
                attrs = metrics(
                    val,
                    BASIC_MACS,
                    unit=unit,
                    strategy="none" if unit == "conv" else "all",
                    placement="conv:000000" if unit == "conv" else "ic:111111",
                    seed=seed,
                    wld=wld,
                    test=val - 0.02,
                )
                # WLD starts near the teacher: a higher first epoch, so it reaches targets sooner.
                attrs["curve"] = curve(val, 4, start=0.85 if wld else 0.4)
                params = {"unit": unit, "wld": wld, "seed": seed}
                add_trial(
                    study,
                    state=TrialState.COMPLETE,
                    params=params,
                    attrs=attrs,
                    start_s=30 * i,
                    duration_s=25,
                )
                i += 1
    return study


def is_nan(x: Any) -> bool:
    return isinstance(x, float) and math.isnan(x)
