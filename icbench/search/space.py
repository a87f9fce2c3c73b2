"""From a search space to candidates: define-by-run sampling and grids."""

from __future__ import annotations

import copy
import itertools
from typing import TYPE_CHECKING, Any

from icbench.recipe import UNIT_RECIPE_KEYS
from icbench.search.schema import (
    CategoricalParam,
    FloatParam,
    IntParam,
    LoadedStudy,
    MaskParam,
    SearchSpace,
)

if TYPE_CHECKING:
    import optuna

#: Parameter names whose natural target is a nested field.
DEFAULT_TARGETS = {"wld": "wld.enabled"}
#: MaskParam.over -> the `mask` strategy's `by` argument.
MASK_LEVEL = {"blocks": "block", "sites": "site"}
#: Grids larger than this are refused: a grid study is meant for ablations, not for search.
MAX_GRID = 10_000


def target_of(name: str, param: Any) -> str:
    """The dotted CandidateConfig field a parameter sets."""
    if param.target:
        return param.target
    if isinstance(param, MaskParam):
        return "strategy_args.mask"
    return DEFAULT_TARGETS.get(name, name)


def is_active(param: Any, values: dict[str, Any]) -> bool:
    """Whether a parameter's `when` conditions hold for the values sampled so far."""
    return all(ref in values and values[ref] in allowed for ref, allowed in param.when.items())


def sample(trial: optuna.trial.BaseTrial, space: SearchSpace, mask_len: int | None) -> dict[str, Any]:
    """Sample one point define-by-run; returns {parameter name: value} for the active parameters.

    A mask parameter `m` is sampled as booleans `m_0 ... m_{n-1}` and returned as one list under `m`.
    """
    values: dict[str, Any] = {}
    for name, p in space.params.items():
        if not is_active(p, values):
            continue
        if isinstance(p, CategoricalParam):
            values[name] = trial.suggest_categorical(name, p.choices)
        elif isinstance(p, IntParam):
            values[name] = trial.suggest_int(name, p.low, p.high, step=p.step, log=p.log)
        elif isinstance(p, FloatParam):
            values[name] = trial.suggest_float(name, p.low, p.high, step=p.step, log=p.log)
        elif isinstance(p, MaskParam):
            if mask_len is None:
                raise ValueError(f"mask parameter {name!r} needs the number of blocks/sites")
            values[name] = [trial.suggest_categorical(f"{name}_{i}", [False, True]) for i in range(mask_len)]
    return values


def grid(space: SearchSpace, mask_len: int | None) -> dict[str, list[Any]]:
    """Optuna GridSampler's search space: every parameter enumerated (conditions are ignored there)."""
    out: dict[str, list[Any]] = {}
    for name, p in space.params.items():
        if isinstance(p, CategoricalParam):
            out[name] = list(p.choices)
        elif isinstance(p, IntParam):
            out[name] = list(range(p.low, p.high + 1, p.step))
        elif isinstance(p, FloatParam):
            if p.step is None:
                raise ValueError(f"params.{name}: a grid needs a step for float parameters")
            n = int(round((p.high - p.low) / p.step))
            out[name] = [p.low + i * p.step for i in range(n + 1)]
        elif isinstance(p, MaskParam):
            out.update({f"{name}_{i}": [False, True] for i in range(mask_len or 0)})
    return out


def enumerate_points(space: SearchSpace, mask_len: int | None) -> list[dict[str, Any]]:
    """Every distinct point of a finite space as a trial's Optuna parameters, `when` conditions honoured.

    A parameter inactive at a point is absent from it (a trial never suggests it), so points that differ
    only in inactive parameters are one point here (Optuna's grid would list them all). Mask parameters
    appear as their booleans `<name>_0 ...`. The order is the declaration order, the last parameter varying
    fastest.

    Raises:
        ValueError: a float parameter without a step, or a mask without `mask_len`.
    """
    choices = grid(space, mask_len)
    names = list(space.params)

    def expand(i: int, values: dict[str, Any], params: dict[str, Any]) -> list[dict[str, Any]]:
        if i == len(names):
            return [params]
        name, p = names[i], space.params[names[i]]
        if not is_active(p, values):
            return expand(i + 1, values, params)
        if isinstance(p, MaskParam):
            if mask_len is None:
                raise ValueError(f"mask parameter {name!r} needs the number of blocks/sites")
            out = []
            for bits in itertools.product([False, True], repeat=mask_len):
                bit_params = {f"{name}_{j}": b for j, b in enumerate(bits)}
                out += expand(i + 1, {**values, name: list(bits)}, {**params, **bit_params})
            return out
        return [
            point for v in choices[name] for point in expand(i + 1, {**values, name: v}, {**params, name: v})
        ]

    return expand(0, {}, {})


def grid_size(space: SearchSpace, mask_len: int | None) -> int:
    n = 1
    for values in grid(space, mask_len).values():
        n *= len(values)
    return n


def set_dotted(d: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for k in keys[:-1]:
        d = d.setdefault(k, {})
    d[keys[-1]] = value


def base_candidate(loaded: LoadedStudy) -> dict[str, Any]:
    """The candidate every trial starts from, before its sampled parameters are applied."""
    c = loaded.config
    return {
        "dataset": c.dataset.name,
        "dataset_root": c.dataset.root,
        "dataset_kwargs": dict(c.dataset.kwargs),
        "family": c.family.name,
        "size": c.family.size,
        "width": c.family.width,
        "family_kwargs": dict(c.family.kwargs),
        "unit": c.unit,
        "strategy": c.strategy,
        "strategy_args": dict(c.strategy_args),
        "epochs": c.budget.epochs,
        "time_budget_s": c.budget.time_s,
        # sync_bn only when on: a candidate without it is the one-worker candidate of before
        **c.training.model_dump(exclude=set() if c.training.sync_bn else {"sync_bn"}),
        # "auto" follows the trial's resources: a trial given no GPU by Ray trains on the CPU.
        "device": c.execution.device
        if c.execution.device != "auto"
        else ("cuda" if c.execution.gpus_per_trial > 0 else "cpu"),
        "wld": {**c.wld.model_dump(), "teacher_recipe": teacher_recipe(loaded)},
    }


def teacher_recipe(loaded: LoadedStudy) -> dict[str, Any]:
    """The cached teacher's recipe, pinned to the study file's values.

    Without it every sampled learning rate (or batch size...) would be a different recipe and train a
    teacher of its own; pinned, one teacher serves every trial of the study (DESIGN.md §4).
    """
    c = loaded.config
    # sync_bn: how a data-parallel student is normalised; the teacher's cache key stays what it was
    recipe = c.training.model_dump(exclude={"seed", "sync_bn", *UNIT_RECIPE_KEYS})
    if c.wld.teacher_epochs is None:
        recipe["epochs"] = c.budget.epochs
    return recipe


def candidate(base: dict[str, Any], space: SearchSpace, values: dict[str, Any]) -> dict[str, Any]:
    """`base` with each sampled value written to its parameter's target field."""
    cand = copy.deepcopy(base)
    for name, value in values.items():
        param = space.params[name]
        set_dotted(cand, target_of(name, param), value)
        if isinstance(param, MaskParam):  # the mask strategy's level: one bit per block or per eligible site
            set_dotted(cand, "strategy_args.by", MASK_LEVEL[param.over])
    return cand


def mask_length(loaded: LoadedStudy) -> int | None:
    """Booleans a `mask` parameter expands into: blocks or eligible sites of the study's family and size."""
    masks = [p for p in loaded.space.params.values() if isinstance(p, MaskParam)]
    if not masks:
        return None
    from icbench.placement import eligible_blocks, sites  # torch: only a space with a mask needs it
    from icbench.training import build_candidate

    base = base_candidate(loaded)
    model, _, input_shape = build_candidate({**base, "strategy": "none", "strategy_args": {}})
    site_list = sites(model, input_shape, family=base["family"])
    if masks[0].over == "blocks":
        return len(eligible_blocks(site_list))
    return sum(s.eligible for s in site_list)


def target_trials(loaded: LoadedStudy) -> int:
    """The study's target number of evaluated trials: `n_trials`, else a grid's size, else 10."""
    c = loaded.config
    if c.n_trials is not None:
        return c.n_trials
    if c.sampler.name == "grid":
        return grid_size(loaded.space, mask_length(loaded))
    return 10
