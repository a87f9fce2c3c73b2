"""Samplers that learn from every trial they caused: the pruned, and the rejected (DESIGN.md §11).

Optuna's samplers learn from COMPLETE trials (TPE also ranks PRUNED ones, but in a multi-objective study
only below every complete one, since such trials carry no intermediate values); FAIL trials teach them
nothing. icbench records an early-stopped trial as PRUNED and a candidate over the MACs ceiling as FAIL
`rejected`, which is what the storage and every report must say. `InformedSampler` wraps the study's
sampler and shows it a *view* of the study in which

- a PRUNED trial with a partial accuracy appears COMPLETE, valued at the accuracy of the rung it reached
  and its exactly known costs. A partial accuracy is below what the trial would have reached, so the view
  is pessimistic about exactly the trials the scheduler judged worse, and the sampler ranks them among the
  others instead of ignoring them (or, TPE, treating every one alike);
- a `rejected` trial appears COMPLETE and infeasible (Optuna's constraint mechanism: constraint
  `max_macs` = its MACs minus the ceiling, > 0), valued at the worst accuracy and its MACs, so samplers
  that honour constraints (TPE, NSGA-II, GP) learn where the ceiling lies.

Chosen over a constant-liar value (one made-up accuracy for all stopped trials, which throws away their
ranking) and over writing these values to storage (which would put a stopped trial on a front). The view
only changes what the sampler reads; storage, fronts and hypervolumes see the trials as they are.

This module is the one place that touches Optuna's private study API (`Study._get_trials`, which the
samplers call); `tests/search/test_samplers.py` checks it against every registered sampler.
"""

from __future__ import annotations

import math
from collections.abc import Container, Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

#: Accuracy-like objectives whose value a pruned trial has only partially; costs are known exactly.
PARTIAL = ("val_acc",)
CONSTRAINT = "constraints:max_macs"


def _value(t: FrozenTrial, name: str) -> float | None:
    v = t.user_attrs.get(name)
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def informed_trial(
    t: FrozenTrial, objectives: Sequence[tuple[str, str]], max_macs: float | None
) -> FrozenTrial | None:
    """How the sampler sees trial `t`: an informed copy, or None (left as it is).

    Under a ceiling every trial the sampler reads carries the constraint (GP needs as many constraints
    on every trial): its MACs minus the ceiling, 0 (feasible) for one that recorded no MACs.
    """
    status = t.user_attrs.get("status")
    if t.state in (TrialState.COMPLETE, TrialState.RUNNING):
        if max_macs is None:
            return None
        macs = _value(t, "macs")
        return _copy(
            t, t.state, t.values, {**t.system_attrs, CONSTRAINT: 0.0 if macs is None else macs - max_macs}
        )
    if t.state == TrialState.PRUNED:
        values = [_value(t, n) for n, d in objectives]
        if any(v is None for v in values):
            return None
        system = dict(t.system_attrs)
        if max_macs is not None:
            macs = _value(t, "macs")
            system[CONSTRAINT] = 0.0 if macs is None else macs - max_macs
    elif t.state == TrialState.FAIL and status == "rejected" and max_macs is not None:
        macs = _value(t, "macs")
        if macs is None:
            return None
        values = []
        for name, direction in objectives:
            v = _value(t, name)
            if name in PARTIAL or v is None:  # never trained: the worst value it could have
                v = 0.0 if direction == "maximize" else float("inf")
            values.append(v)
        if any(math.isinf(v) for v in values):
            return None
        system = {**t.system_attrs, CONSTRAINT: macs - max_macs}
    else:
        return None
    return _copy(t, TrialState.COMPLETE, values, system)


def _copy(t: FrozenTrial, state: TrialState, values: Any, system: dict[str, Any]) -> FrozenTrial:
    return FrozenTrial(
        number=t.number, state=state, value=None, values=values,
        datetime_start=t.datetime_start, datetime_complete=t.datetime_complete, params=t.params,
        distributions=t.distributions, user_attrs=t.user_attrs, system_attrs=system,
        intermediate_values=t.intermediate_values, trial_id=t._trial_id,
    )  # fmt: skip


class _StudyView:
    """The study as the wrapped sampler sees it: trials through `informed_trial`, all else the study's."""

    def __init__(self, study: optuna.Study, objectives: Sequence[tuple[str, str]], max_macs: float | None):
        self._study = study
        self._objectives = objectives
        self._max_macs = max_macs

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(
        self, deepcopy: bool = True, states: Container[TrialState] | None = None, use_cache: bool = False
    ) -> list[FrozenTrial]:
        trials = self._study._get_trials(deepcopy=deepcopy, states=None, use_cache=use_cache)
        out = []
        for t in trials:
            seen = informed_trial(t, self._objectives, self._max_macs) or t
            if states is None or seen.state in states:
                out.append(seen)
        return out

    def get_trials(
        self, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        return self._get_trials(deepcopy=deepcopy, states=states)

    @property
    def trials(self) -> list[FrozenTrial]:
        return self.get_trials()


class InformedSampler(optuna.samplers.BaseSampler):
    """`base`, reading the study through `_StudyView` (see the module docstring)."""

    def __init__(
        self, base: optuna.samplers.BaseSampler, objectives: Sequence[tuple[str, str]], max_macs: float | None
    ) -> None:
        self.base = base
        self.objectives = list(objectives)
        self.max_macs = max_macs

    def _view(self, study: optuna.Study) -> Any:
        return _StudyView(study, self.objectives, self.max_macs)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
        return self.base.infer_relative_search_space(self._view(study), trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, Any]
    ) -> dict[str, Any]:
        return self.base.sample_relative(self._view(study), trial, search_space)

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, name: str, distribution: Any
    ) -> Any:
        return self.base.sample_independent(self._view(study), trial, name, distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.base.before_trial(self._view(study), trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Any) -> None:
        self.base.after_trial(self._view(study), trial, state, values)

    def reseed_rng(self) -> None:
        self.base.reseed_rng()

    def __getattr__(self, name: str) -> Any:  # e.g. the grid's `exhausted`
        if name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)
