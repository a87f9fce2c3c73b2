"""A study's experiment fingerprint: every setting that changes what a trial measures.

The fingerprint is the whole validated study config minus `MAY_CHANGE`, the explicit list of settings a
resume may change (trial count, execution resources, where things are written, the description). Files
and paths are replaced by what they stand for: the search-space path by the space itself, the teacher
checkpoint path by the sha256 of its content, the dataset root by its resolved path, and `device: auto` by
the device the trials train on. Because it starts from the whole config, a setting added to the schema is
fingerprinted from the day it is added, until someone decides it belongs in `MAY_CHANGE`.

It is stored with the Optuna study when the study is created; a resume compares it with the study as it
is now and refuses any difference, listing each changed field with its old and new value.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from icbench.errors import ConfigError
from icbench.recipe import LEGACY_UNIT_RECIPE
from icbench.redact import mask_url
from icbench.search.schema import LoadedStudy, StudyConfig
from icbench.search.space import base_candidate
from icbench.study_attrs import FINGERPRINT_ATTR as FINGERPRINT_ATTR  # the stored names (re-exported)
from icbench.study_attrs import FROM_TRIAL_ATTR as FROM_TRIAL_ATTR
from icbench.study_attrs import HASH_ATTR as HASH_ATTR
from icbench.study_attrs import LEGACY_ATTR as LEGACY_ATTR

_SEEDING = "which candidates are trained first (once, before the first trial), not what a trial measures"
#: Settings (dotted paths into the study config) that do not change what a trial measures; everything
#: else is fingerprinted.
MAY_CHANGE: dict[str, str] = {
    "name": "the study's identity: it is how the stored study is found",
    "description": "free text",
    "n_trials": "how many trials to run, not what one measures",
    **{f"seed_with.{k}": _SEEDING for k in ("estimator", "top", "seed")},
    "confirm_seeds": "how many seeds a later confirmation gives each candidate, not what a trial measures",
    "storage": "where the study is stored",
    "storage_password_env": "where the storage password is read from",
    "runs_dir": "where run folders are written",
    "reports_dir": "where reports are written",
    "search_space.description": "free text",
    "execution.address": "which Ray cluster runs the trials",
    "execution.storage_path": "where Ray writes trial folders",
    "execution.cpus_per_trial": "resources per trial",
    "execution.gpus_per_trial": "resources per trial (the device it implies is fingerprinted)",
    "execution.max_concurrent": "concurrency",
    "execution.num_cpus": "resources of the local Ray",
    "execution.num_gpus": "resources of the local Ray",
    "execution.max_failures": "when this run gives up, not what a trial measures",
    "execution.max_consecutive_rejections": "when this run gives up, not what a trial measures",
    "execution.tracking": "where per-epoch metrics are also written, not what a trial measures",
    "execution.mlflow_uri": "where per-epoch metrics are also written, not what a trial measures",
    "execution.workers_per_trial": (
        "resources per trial: N workers train the same global batch in the same data order "
        "(BatchNorm per worker unless training.sync_bn, which is fingerprinted)"
    ),
    "execution.checkpoint_every": "how often progress is saved; a resumed trial continues exactly",
    "execution.trial_restarts": "how often a trial is restarted after a crash, not what it measures",
}
#: Shown in the refusal: what may change, in words.
MAY_CHANGE_SUMMARY = (
    "n_trials, confirm_seeds, seed_with, description, storage, runs_dir, reports_dir and the execution resources, "
    "concurrency, workers per trial, checkpoint interval and "
    "failure caps"
)


def file_sha256(path: str | Path) -> str:
    from icbench.objectstore import is_uri, read_file

    if is_uri(str(path)):  # a file in object storage
        data = read_file(str(path))
        if data is None:
            raise FileNotFoundError(f"{path} does not exist")
        return hashlib.sha256(data).hexdigest()
    digest = hashlib.sha256()
    with Path(path).expanduser().open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def experiment_fingerprint(loaded: LoadedStudy) -> dict[str, Any]:
    """The fingerprint of a loaded study (plain JSON data, as it is stored).

    Raises:
        ConfigError: when the teacher checkpoint named in the study cannot be read.
    """
    c = loaded.config
    fp: dict[str, Any] = c.model_dump(mode="json")
    fp["search_space"] = loaded.space.model_dump(mode="json")
    # An omitted direction and the objective's default direction are the same experiment.
    fp["objectives"] = [{"name": o.name, "direction": o.resolved_direction} for o in c.objectives]
    if c.dataset.root is not None:
        fp["dataset"]["root"] = str(Path(c.dataset.root).expanduser().resolve())
    if c.wld.teacher_checkpoint:
        try:
            fp["wld"]["teacher_checkpoint"] = "sha256:" + file_sha256(c.wld.teacher_checkpoint)
        except OSError as e:
            raise ConfigError(
                f"cannot read the teacher checkpoint to fingerprint it: {e}",
                source=str(loaded.study_path),
                field="wld.teacher_checkpoint",
            ) from None
    if c.execution.table:  # a replay's results are the table's content, wherever the file lies
        fp["execution"]["table"] = "sha256:" + file_sha256(c.execution.table)
    fp["execution"]["device"] = base_candidate(loaded)["device"]  # `auto` resolved as the trials resolve it
    for dotted in MAY_CHANGE:
        _drop(fp, dotted)
    return json.loads(json.dumps(fp))  # exactly what a JSON round trip through storage gives back


def fingerprint_hash(fp: Mapping[str, Any]) -> str:
    return hashlib.sha256(_canonical(fp).encode()).hexdigest()[:16]


def from_legacy(record: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a fingerprint that a study created before experiment fingerprints recorded."""
    out: dict[str, Any] = {}
    if "space" in record:
        out["search_space"] = record["space"]
    if "objectives" in record:
        out["objectives"] = [{"name": n, "direction": d} for n, d in record["objectives"]]
    return out


class _Absent:
    def __repr__(self) -> str:
        return "(not set)"


ABSENT: Any = _Absent()


@dataclass(frozen=True)
class Change:
    """One fingerprinted setting that differs between the stored study and the study file."""

    field: str
    old: Any
    new: Any
    #: What an absent old value ran as (a setting added to the schema later), when known.
    old_ran_as: Any = ABSENT

    def __str__(self) -> str:
        old = _show(self.old)
        if self.old is ABSENT and self.old_ran_as is not ABSENT:
            old = f"(not set: studies of that time ran as {_show(self.old_ran_as)})"
        return f"{self.field} was {old}, now {_show(self.new)}"


def schema_defaults() -> dict[str, Any]:
    """What a study stored before a setting existed ran with, by fingerprint field: the schema's default,
    except for settings added later with a default that changed the behaviour (the unit settings of
    `LEGACY_UNIT_RECIPE`): an old study ran with the old behaviour, so resuming it under the new default
    is a change."""
    out = StudyConfig(name="defaults", search_space="-").model_dump(mode="json")
    out["training"].update(LEGACY_UNIT_RECIPE)
    return out


def changes(old: Any, new: Any, prefix: str = "", defaults: Any = None) -> list[Change]:
    """Every leaf where two fingerprints differ, as dotted paths; a key only one side has is one change,
    except a setting added to the schema after the study was stored, at its default value: studies made
    before it existed ran with what its default does (`defaults`: `schema_defaults()`)."""
    defaults = schema_defaults() if defaults is None and not prefix else defaults
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out: list[Change] = []
        for key in [*old, *(k for k in new if k not in old)]:
            path = f"{prefix}.{key}" if prefix else str(key)
            sub = defaults.get(key, ABSENT) if isinstance(defaults, Mapping) else ABSENT
            out += changes(old.get(key, ABSENT), new.get(key, ABSENT), path, sub)
        return out
    if (
        old is ABSENT
        and new is not ABSENT
        and defaults is not ABSENT
        and _canonical(new) == _canonical(defaults)
    ):
        return []
    if old is not ABSENT and new is not ABSENT and _canonical(old) == _canonical(new):
        return []
    return [Change(prefix or "(the whole fingerprint)", old, new, defaults if old is ABSENT else ABSENT)]


def check_stored(loaded: LoadedStudy, attrs: Mapping[str, Any], *, url: str) -> bool:
    """Refuse to resume the stored study whose user attributes are `attrs` unless its experiment
    fingerprint is the current one. A study created before fingerprints existed has what it recorded
    checked (its search space and objectives).

    Returns:
        True for such a study (it has no fingerprint yet), False otherwise.

    Raises:
        ConfigError: listing each changed field (`check_unchanged`).
    """
    fp = experiment_fingerprint(loaded)
    stored = attrs.get(FINGERPRINT_ATTR)
    legacy = stored is None
    if legacy:
        stored = from_legacy(attrs.get(LEGACY_ATTR) or {})
        current = {k: fp[k] for k in stored}
    else:
        current = fp
    check_unchanged(stored, current, study=loaded.config.name, url=url, source=str(loaded.study_path))
    return legacy


def check_unchanged(
    stored: Mapping[str, Any], current: Mapping[str, Any], *, study: str, url: str, source: str
) -> None:
    """Refuse a resume whose fingerprint differs from the stored one, naming every changed field.

    Raises:
        ConfigError: listing each changed field with its stored and current value.
    """
    found = changes(stored, current)
    if not found:
        return
    raise ConfigError(
        f"study {study!r} already exists in {mask_url(url)} as another experiment, and resuming it would mix "
        f"incomparable trials. Changed since the study was created: {'; '.join(map(str, found))}. Give the "
        f"study a new name, or restore these settings (only {MAY_CHANGE_SUMMARY} may change on resume)",
        source=source,
        field=", ".join(ch.field for ch in found),
    )


def _drop(d: dict[str, Any], dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        d = d.get(key)  # type: ignore[assignment]
        if not isinstance(d, dict):
            return
    d.pop(leaf, None)


def _canonical(value: Any) -> str:
    # Strict: `1`, `1.0` and `true` are three values (Python's == would call them equal).
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _show(value: Any) -> str:
    return repr(value) if value is ABSENT else json.dumps(value, sort_keys=True, separators=(", ", ": "))
