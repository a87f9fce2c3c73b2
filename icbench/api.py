"""The Python API for notebooks and scripts: run a study, read its trials, build a candidate, read a table.

Everything here is re-exported by `icbench` itself, lazily: `import icbench` imports neither torch nor Ray;
each function imports what it needs when called.

    import icbench
    run = icbench.run_study("studies/quickstart.yaml", overrides={"n_trials": 4})
    trials = icbench.load_trials("studies/quickstart.yaml")      # one row per trial (pandas)
    model = icbench.build_candidate("resnet_cifar", "resnet8", unit="ic", placement="ic:0110011")
    table, shared = icbench.read_table("tables/icbench_resnet8_mnist5k.parquet")
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from torch import nn

    from icbench.search.records import StudyRun

__all__ = ["build_candidate", "load_trials", "read_table", "run_study"]

PathLike = str | os.PathLike[str]


def run_study(
    study: PathLike, *, overrides: Mapping[str, Any] | None = None, report: bool = True, quiet: bool = False
) -> StudyRun:
    """Run a study file, or resume it, until it has its target number of evaluated trials.

    Args:
        study: the study file (YAML).
        overrides: dotted settings replacing the file's, as `icbench run --set KEY=VALUE` gives them
            (e.g. `{"n_trials": 4, "training.unit_lr_mult": 10}`).
        report: write the report under `reports/<study>/` at the end.
        quiet: print no progress lines.

    Returns:
        What the run did: counts of trials by state, storage URL, report folder, wall time, stop reason.

    Raises:
        ConfigError: invalid input (the message names the file and field), before anything is written.
    """
    from icbench.search.runner import run_study as _run

    return _run(
        study, report=report, overrides=dict(overrides or {}), echo=(lambda _: None) if quiet else print
    )


def load_trials(study: PathLike, *, storage: str | None = None) -> pd.DataFrame:
    """A study's trials as a DataFrame, one row per trial (the columns of the report's trials.csv: state,
    unit, placement, WLD, seed, val/test accuracy, MACs, unit liveness δ, parameters as `param_*`, ...).

    Args:
        study: a study file (its storage is found from it), or a study name when `storage` is given.
        storage: a storage URL (`sqlite:///...`, `postgresql://...`) or a SQLite or journal file.

    Raises:
        ConfigError: the study file is invalid.
        StorageError, StudyNotFoundError: the storage cannot be read or has no such study.
    """
    from icbench.report.load import load_study as _load

    if storage is None:
        from icbench.search.storage import storage_url
        from icbench.search.study import load_study

        loaded = load_study(study)
        name, storage = loaded.config.name, storage_url(loaded)
    else:
        name = os.fspath(study)
    data = _load(storage, name)
    assert data.trials is not None
    return data.trials


def build_candidate(
    family: str,
    size: str | None = None,
    *,
    unit: str = "ic",
    placement: str | None = None,
    strategy: str = "all",
    width: float = 1.0,
    dataset: str = "mnist5k",
    seed: int = 0,
    **settings: Any,
) -> nn.Module:
    """A candidate network, built and initialised exactly as a trial builds it (untrained, on the CPU).

    Args:
        family, size, width: the network (`icbench sites FAMILY` lists a family's sites).
        unit: the unit placed at the chosen sites (`conv`, `ic`, `ic_dual`, `se`, or a registered one).
        placement: a canonical placement string such as `"ic:0110011"` (overrides unit and strategy).
        strategy: where the unit goes when no placement is given (`all`, `every_other`, `last_k`, ...).
        dataset: sets the input shape and number of classes (nothing is loaded).
        seed: initialisation seed.
        settings: any other candidate setting (`strategy_args`, `family_kwargs`, `init`, ...).

    Raises:
        ConfigError, UnknownNameError: an invalid setting or name (the message lists the valid ones).
    """
    from icbench.training.candidate import build_candidate as _build

    config = {"family": family, "size": size, "width": width, "unit": unit, "strategy": strategy,
              "placement": placement, "dataset": dataset, "seed": seed, **settings}  # fmt: skip
    model, _, _ = _build(config)
    return model


def read_table(path: PathLike) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A benchmark table written by `icbench tabulate`: (rows, the experiment every row shares).

    Raises:
        IcbenchError: the file is missing or not an icbench table.
    """
    from icbench.report.table import read_table as _read

    return _read(path)
