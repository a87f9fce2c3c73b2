"""The light check of a study file: schema and registered names, before torch, Ray or Optuna load.

`icbench validate`, `icbench run` (and `--dry-run`), `confirm` and `tabulate` call `quick_check` first,
so a mistyped key or an unknown family, dataset, unit, strategy, size, sampler, scheduler, executor or
estimator is refused in well under a second. The full checks (`checks.check_study`: the space probed
by building networks, the data, the environment) follow, with the heavy imports; they check the same
names again against the registries themselves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from icbench.errors import ConfigError
from icbench.names import FAMILY_SIZES, NAMES, unknown_message
from icbench.search import schema
from icbench.search.schema import CategoricalParam, LoadedStudy
from icbench.search.space import target_of

__all__ = ["check_names", "quick_check"]

#: The registries `schema.load_study` checks in the schema (by the names in `icbench.names`).
SCHEMA_REGISTRIES = {kind: NAMES[kind] for kind in ("sampler", "scheduler", "executor")}


def quick_check(path: str | Path, overrides: dict[str, Any] | None = None) -> LoadedStudy:
    """Read a study file and its search space, validate both against the schema, and check every
    registered name they give; imports neither torch nor Ray.

    Raises:
        ConfigError: one line naming the file and the field (with the closest valid name, if any).
    """
    loaded = schema.load_study(path, overrides, registries=SCHEMA_REGISTRIES)
    check_names(loaded)
    return loaded


def check_names(loaded: LoadedStudy) -> None:
    """Every registered name of a loaded study (file and search space) against `icbench.names`.

    Raises:
        ConfigError: naming the file and field of the first unknown name.
    """
    c = loaded.config
    study, space = str(loaded.study_path), str(loaded.space_path)

    def refuse(kind: str, value: Any, known: tuple[str, ...], source: str, field: str) -> None:
        if value not in known:
            raise ConfigError(unknown_message(kind, value, known), source=source, field=field)

    for field, kind, value in (("dataset.name", "dataset", c.dataset.name), ("family.name", "family",
                               c.family.name), ("unit", "unit", c.unit), ("strategy", "strategy", c.strategy)):  # fmt: skip
        refuse(kind, value, NAMES[kind], study, field)
    sizes = FAMILY_SIZES[c.family.name]
    if c.family.size is not None and sizes is not None:
        refuse(f"{c.family.name} size", c.family.size, sizes, study, "family.size")
    if c.seed_with is not None:
        refuse("estimator", c.seed_with.estimator, NAMES["estimator"], study, "seed_with.estimator")
    targets = {name: target_of(name, p) for name, p in loaded.space.params.items()}
    family_searched = any(t.partition(".")[0] == "family" for t in targets.values())
    for name, p in loaded.space.params.items():
        if not isinstance(p, CategoricalParam):
            continue
        target = targets[name]
        for choice in p.choices:
            if target in ("dataset", "family", "unit", "strategy"):
                refuse(target, choice, NAMES[target], space, f"params.{name}.choices")
            elif target == "size" and not family_searched and sizes is not None:
                refuse(f"{c.family.name} size", choice, sizes, space, f"params.{name}.choices")
