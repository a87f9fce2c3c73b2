"""A study as the study commands drive it: its file read with every registered name checked, its Optuna
study created or opened for a resume, and its report written.

Opening for a resume checks the experiment fingerprint (`fingerprint.py`) before anything is written, and
reseeds the sampler (seed + number of trials so far) so it does not replay the same parameters.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

from icbench.errors import IcbenchError
from icbench.redact import redact
from icbench.report import build_report
from icbench.search import fingerprint as fpr
from icbench.search import schema
from icbench.search.executors import EXECUTORS
from icbench.search.samplers import SAMPLERS, make_sampler
from icbench.search.schedulers import SCHEDULERS
from icbench.search.schema import LoadedStudy
from icbench.search.space import target_trials
from icbench.search.storage import make_storage, retry_locked
from icbench.versions import package_versions

#: The names a study file may give, by kind: `sampler.name`, `execution.scheduler`, `execution.backend`.
REGISTRIES = {"sampler": SAMPLERS, "scheduler": SCHEDULERS, "executor": EXECUTORS}


def load_study(path: str | Path, overrides: dict[str, Any] | None = None) -> LoadedStudy:
    """Read and validate a study file and the search-space file it names, every sampler, scheduler and
    executor name checked against its registry.

    Args:
        path: the study file.
        overrides: dotted keys replacing values of the file (the command line's `--set KEY=VALUE`).

    Raises:
        ConfigError: naming the file and the field for any syntax, type, range or reference problem.
    """
    return schema.load_study(path, overrides, registries=REGISTRIES)


def open_study(
    loaded: LoadedStudy,
    url: str,
    *,
    reseed_from_count: bool = True,
    storage: Any = None,
    echo: Callable[[str], None] | None = None,
) -> Any:
    """Create the study, or load it for a resume after checking that its experiment fingerprint is unchanged.

    Nothing is written to an existing study before that check. A study created before experiment
    fingerprints existed has only its search space and objectives checked; its fingerprint is then
    recorded, with the trial number from which it holds (`fingerprint_from_trial`).

    Args:
        storage: the Optuna storage for `url`, when the caller already opened it.
        echo: where to say that a study without a fingerprint was given one.

    Raises:
        ConfigError: when a fingerprinted setting changed since the study was created.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = storage if storage is not None else make_storage(url)
    name = loaded.config.name
    fp = fpr.experiment_fingerprint(loaded)
    directions = [o.resolved_direction for o in loaded.config.objectives]
    existing = retry_locked(lambda: optuna.get_all_study_names(storage))
    if name in existing:
        study = retry_locked(lambda: optuna.load_study(study_name=name, storage=storage))
        # created before experiment fingerprints (legacy): what it recorded is checked
        legacy = fpr.check_stored(loaded, study.user_attrs, url=url)
        n_before = len(study.get_trials(deepcopy=False))
        if legacy:
            _set_fingerprint(study, fp, from_trial=n_before)
            if echo is not None:
                echo(
                    f"resume: study {name!r} was created without an experiment fingerprint; the current "
                    f"settings are recorded as its fingerprint from trial {n_before} on (the settings of the "
                    "trials before cannot be checked)"
                )
        if study.metric_names is None:  # created before objectives were named in storage
            _name_metrics(study, loaded)
        seed = loaded.config.sampler.seed + (n_before if reseed_from_count else 0)
        study.sampler = make_sampler(loaded.config.sampler, seed, loaded)
        return study
    sampler = make_sampler(loaded.config.sampler, loaded.config.sampler.seed, loaded)
    study = optuna.create_study(study_name=name, storage=storage, directions=directions, sampler=sampler)
    _set_fingerprint(study, fp, from_trial=0)  # first: a study without one would be resumed unchecked
    _name_metrics(study, loaded)
    attrs = {
        "objectives": [{"name": o.name, "direction": o.resolved_direction} for o in loaded.config.objectives],
        "study_file": str(loaded.study_path),
        "study_yaml": redact(loaded.study_text),  # anyone who can open the study reads it
        "space_file": str(loaded.space_path),
        "space_yaml": loaded.space_text,
        "seed": loaded.config.sampler.seed,
        "sampler": loaded.config.sampler.name,
        "versions": package_versions(),
        "device": _device_name(loaded),
        "max_macs": loaded.config.constraints.max_macs,
        "n_trials": target_trials(loaded),
        "platform": f"{platform.platform()}, {os.cpu_count()} CPUs",
    }
    for k, v in attrs.items():
        study.set_user_attr(k, v)
    for point in loaded.config.enqueue:
        study.enqueue_trial(point, skip_if_exists=True)
    return study


def _name_metrics(study: Any, loaded: LoadedStudy) -> None:
    """Name the objectives in storage, so optuna-dashboard and `trials_dataframe()` show `val_acc` and
    `macs` instead of `values_0` and `values_1`."""
    import warnings

    with warnings.catch_warnings():  # experimental in some Optuna releases
        warnings.simplefilter("ignore")
        study.set_metric_names([o.name for o in loaded.config.objectives])


def _set_fingerprint(study: Any, fp: dict[str, Any], *, from_trial: int) -> None:
    study.set_user_attr(fpr.FINGERPRINT_ATTR, fp)
    study.set_user_attr(fpr.HASH_ATTR, fpr.fingerprint_hash(fp))
    study.set_user_attr(fpr.FROM_TRIAL_ATTR, from_trial)


def _device_name(loaded: LoadedStudy) -> str:
    import torch

    ex = loaded.config.execution
    if ex.device != "cpu" and (ex.gpus_per_trial > 0 or ex.device == "cuda") and torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return f"cpu ({platform.processor() or platform.machine()})"


def write_report(loaded: LoadedStudy, url: str, echo: Callable[[str], None]) -> Path | None:
    """Build the study's report under `reports_dir`; a report that cannot be built is said, not raised."""
    out = Path(loaded.config.reports_dir) / loaded.config.name
    try:
        build_report(url, loaded.config.name, out, study_file=str(loaded.study_path))
    except IcbenchError as e:
        echo(f"report: {e}")
        return None
    echo(f"report written to {out}/ (summary.md, pareto.md, pareto.png, ...)")
    return out
