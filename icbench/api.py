"""The Python API for notebooks and scripts: run a study, read its trials, build a candidate, read a table.

Everything here is re-exported by `icbench` itself, lazily: `import icbench` imports neither torch nor Ray;
each function imports what it needs when called.

    import icbench
    run = icbench.run_study("studies/quickstart.yaml", overrides={"n_trials": 4})  # a StudyRun
    trials = icbench.load_trials("studies/quickstart.yaml")      # one row per trial (pandas)
    model = icbench.build_candidate("resnet_cifar", "resnet8", dataset="mnist5k", placement="ic:0110011")
    table, shared = icbench.read_table("tables/icbench_resnet8_mnist5k.parquet")  # a BenchTable

What they return: `StudyRun` (`icbench.search.records`: counts by state, storage URL, report folder,
wall time, stop reason), a pandas DataFrame, a torch `nn.Module` carrying `model.icbench_spec` (a
`ModelSpec`: family, size, input shape, classes), and a `BenchTable` (rows, shared experiment).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from icbench.search.records import StudyRun

if TYPE_CHECKING:
    import pandas as pd
    from torch import nn

__all__ = ["BenchTable", "StudyRun", "build_candidate", "load_trials", "read_table", "run_study"]

PathLike = str | os.PathLike[str]


class BenchTable(NamedTuple):
    """A benchmark table read by `read_table`; unpacks as `rows, shared = icbench.read_table(path)`."""

    #: One row per candidate x seed (the columns are described in `tables/<name>.md` beside the table).
    rows: pd.DataFrame
    #: What every row shares: `experiment` (dataset, family, budget, ...), `fingerprint`, versions.
    shared: dict[str, Any]


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
        A `StudyRun`: what the run did (`counts` of trials by state, `storage_url`, `report_dir`,
        `wall_time_s`, `stop_reason`: None when the study reached its target).

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
    dataset: str | None = None,
    input_shape: Sequence[int] | None = None,
    num_classes: int | None = None,
    seed: int = 0,
    **settings: Any,
) -> nn.Module:
    """A candidate network, built and initialised exactly as a trial builds it (untrained, on the CPU).

    The input shape and number of classes come from `dataset` (its registered shape: `cifar10` is
    3x32x32 with 10 classes; nothing is loaded, the data need not be on disk) or from an explicit
    `input_shape` (and `num_classes`, default 10). With neither, the network is built for `mnist5k`
    (1x28x28, 10 classes, the default dataset of a study) and a warning says so. The shape used is on
    the model: `model.icbench_spec.input_shape`.

    Args:
        family, size, width: the network (`icbench sites FAMILY` lists a family's sites).
        unit: the unit placed at the chosen sites (`conv`, `ic`, `ic_dual`, `se`, or a registered one).
        placement: a canonical placement string such as `"ic:0110011"` (overrides unit and strategy).
        strategy: where the unit goes when no placement is given (`all`, `every_other`, `last_k`, ...).
        dataset: a registered dataset whose input shape and classes the network is built for.
        input_shape: (channels, height, width) instead of a dataset; height must equal width.
        num_classes: output classes with `input_shape` (default 10); with `dataset`, its own.
        seed: initialisation seed.
        settings: any other candidate setting (`strategy_args`, `family_kwargs`, `init`, ...).

    Returns:
        The model (`torch.nn.Module`, training mode) with `model.icbench_spec` (a `ModelSpec`).

    Raises:
        ConfigError, UnknownNameError: an invalid setting or name (the message lists the valid ones).
    """
    from icbench.errors import ConfigError
    from icbench.training.candidate import build_candidate as _build

    if dataset is not None and input_shape is not None:
        raise ConfigError("give `dataset` or `input_shape`, not both", field="input_shape")
    if input_shape is not None:
        shape = tuple(int(x) for x in input_shape)
        if len(shape) != 3 or shape[1] != shape[2] or min(shape) < 1:
            raise ConfigError(
                f"input_shape must be (channels, size, size) with equal height and width, got {tuple(input_shape)}",
                field="input_shape",
            )
        # the `synthetic` dataset takes any shape and class count: its info is exactly that shape
        settings["dataset_kwargs"] = {"in_chans": shape[0], "image_size": shape[1],
                                      "num_classes": num_classes or 10, **settings.get("dataset_kwargs", {})}  # fmt: skip
        dataset = "synthetic"
    elif num_classes is not None:
        raise ConfigError("num_classes goes with input_shape; a dataset has its own", field="num_classes")
    elif dataset is None:
        dataset = "mnist5k"
        warnings.warn(
            "build_candidate: no dataset or input_shape given; built for mnist5k (1x28x28 inputs, 10 "
            "classes). Pass dataset='cifar10' (3x32x32) or input_shape=(3, 32, 32) for other inputs.",
            UserWarning,
            stacklevel=2,
        )
    config = {"family": family, "size": size, "width": width, "unit": unit, "strategy": strategy,
              "placement": placement, "dataset": dataset, "seed": seed, **settings}  # fmt: skip
    model, _, _ = _build(config)
    return model


def read_table(path: PathLike) -> BenchTable:
    """A benchmark table written by `icbench tabulate`: its rows and the experiment every row shares.

    Returns:
        A `BenchTable(rows, shared)`; it unpacks as a pair.

    Raises:
        IcbenchError: the file is missing or not an icbench table.
    """
    from icbench.report.table import read_table as _read

    return BenchTable(*_read(path))
