"""A sampler for studies whose every trial is enqueued with fixed parameters (a confirmation, a table).

It is no choice of a study file, so it is not registered: `confirm.py` and `tabulate.py` set it.
"""

from __future__ import annotations

from typing import Any


def queue_sampler(first: dict[str, Any]) -> Any:
    import optuna
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import TrialState

    class QueueSampler(optuna.samplers.BaseSampler):
        """Samples nothing of its own: every trial (of a confirmation or a table) is enqueued with fixed
        parameters.

        A trial asked after the queue is empty (the searcher replacing a trial that failed) gets the first
        point's parameters, a candidate already trained, so the searcher records it as a duplicate without
        training it, asks `exhausted`, and ends the run.
        """

        def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
            return {}

        def sample_relative(self, study: Any, trial: Any, search_space: Any) -> dict[str, Any]:
            return {}

        def sample_independent(self, study: Any, trial: Any, name: str, distribution: Any) -> Any:
            if name in first:
                return first[name]
            if isinstance(distribution, CategoricalDistribution):
                return distribution.choices[0]
            return distribution.low

        def exhausted(self, study: Any) -> bool:
            return not study.get_trials(deepcopy=False, states=(TrialState.WAITING,))

    return QueueSampler()
