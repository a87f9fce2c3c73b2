"""The searcher: Optuna's ask/tell with icbench's completion semantics (DESIGN.md §7), for any executor.

It imports no executor: the `ray` executor wraps it in a Ray Tune `Searcher` (`executors/ray_tune.py`),
the `replay` executor calls it directly on a simulated clock (`executors/replay.py`). Both hand it results
in Tune's shape (a dict per epoch; the last one carries `icbench_final`), so a trial means the same thing
whichever executor ran it.

Why not Ray's `OptunaSearch`: it records a trial stopped by a scheduler (ASHA) as COMPLETE with its partial
values, which pollutes the Pareto front; it cannot reject a candidate over the MACs ceiling before the
candidate reaches a worker; it has no place for the reason a trial failed; and it would let the sampler
train the same parameter set twice. Here the driver owns the Optuna study: it asks, checks the candidate's
cost, hands the trial to Tune, and tells the outcome:

- final result with status "complete"           -> COMPLETE with the objective values
- last result is not final (a scheduler stopped) -> PRUNED (never on a front or in a hypervolume)
- status "failed"/"diverged", or a crashed worker -> FAIL with `reason`
- over the MACs ceiling                          -> FAIL, `rejected`, never trained
- parameters already evaluated                   -> FAIL, `status: duplicate`, never trained
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import TrialState

from icbench.search import space as sp
from icbench.search.checkpoints import checkpoint_root, remove_checkpoint
from icbench.search.propose import Proposer
from icbench.search.records import Proposal
from icbench.search.trainable import FINAL_KEY
from icbench.training.candidate import METRIC_KEYS

#: What `suggest` returns when the search is over (Ray Tune's `FINISHED`).
FINISHED = "FINISHED"

#: Trial user attributes copied from the final metrics into storage (the report reads these): what
#: `train_candidate` returns, less the curve (stored whole, separately), the run's own flags, and
#: `placement`/`unit` (the proposer records those, a basic network normalised).
RECORDED = tuple(
    dict.fromkeys(
        [
            *(k for k in METRIC_KEYS if k not in ("curve", "diverged", "stop_reason", "placement", "unit")),
            # What checkpoints did for the trial (`trainable.run_trial`): the epochs trained again after
            # faults (summed over its attempts), where its last attempt resumed, and why a checkpoint
            # was not used.
            "epochs_retrained", "resumed_from_epoch", "attempts", "checkpoint_note", "checkpoint_time_s",
        ]
    )
)


#: Outcomes of trials that trained (a candidate is never trained again after one of these).
TRAINED_STATUSES = ("complete", "pruned", "failed", "diverged", "crashed")


def params_key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def candidate_key(attrs: dict[str, Any], params: dict[str, Any]) -> str:
    """What makes two trials the same experiment: the proposer's `candidate_key` (the network as built
    plus its training), or the raw parameters where there is none."""
    return attrs.get("candidate_key") or params_key(params)


class AskTellSearcher:
    """Hands Optuna-sampled candidates to Tune until `target` trials are COMPLETE or PRUNED.

    Args:
        study: the Optuna study (the source of truth).
        propose: turns an asked trial into a Proposal: samples its parameters, builds the candidate, counts
            its cost and applies constraints. Runs in the driver; must be fast.
        objectives: metric names in the order of `study.directions`.
        target: COMPLETE + PRUNED trials the study should have when this run ends.
        max_failures: FAIL trials (errors, divergence, out of memory, crashes) this run tolerates.
        max_consecutive_rejections: rejected or duplicate candidates in a row before the search stops.
        on_event: called with (event, frozen trial) after each trial is told, for progress display.
        scheduler: the study's early-stopping scheduler; its rung decisions about a trial are recorded
            on the trial (`rung_decisions`) when it ends.
        executor: the executor's name, recorded on every trial it runs (`executor`).
        fallback: called with the candidate keys seen so far after the sampler proposed a duplicate;
            returns the parameters of a candidate not seen yet (or None), which is queued as the next
            trial (`proposed_by: fallback`). Optuna's samplers ignore FAIL trials, so without it a
            sampler that has converged in a discrete space proposes the same candidate again and again.
        checkpoints: the study's checkpoint root (`trainable.checkpoint_root`), or None. A trial's
            checkpoint folder is deleted once its outcome is recorded.
        cost_of: the cost (MACs, params) of a candidate, for a continued trial (default: the proposer's
            `cost`, else the MACs and params the trial recorded).

    Trials RUNNING in the study when the searcher is made are trials an earlier driver left with a
    checkpoint (`trials.mark_interrupted` failed every other one): `suggest` hands each of them out again
    first, as the same Optuna trial with its recorded candidate, and its trainable resumes from the
    checkpoint.
    """

    FINISHED = FINISHED

    def __init__(
        self,
        study: optuna.Study,
        propose: Callable[[optuna.Trial], Proposal],
        objectives: list[str],
        target: int,
        max_failures: int,
        max_consecutive_rejections: int,
        on_event: Callable[[str, optuna.trial.FrozenTrial], None] | None = None,
        scheduler: Any = None,
        executor: str = "ray",
        fallback: Callable[[set[str]], dict[str, Any] | None] | None = None,
        checkpoints: str | None = None,
        cost_of: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        self.study = study
        self.checkpoints = checkpoints
        cost = getattr(propose, "cost", None)
        self.cost_of = cost_of or ((lambda cand: cost(cand)[0]) if callable(cost) else None)
        self.fallback = fallback
        #: Asked trials, and those the searcher settled itself as duplicates (never trained).
        self.n_asked = 0
        self.n_duplicates = 0
        self._fallback_queued = False
        self.scheduler = scheduler
        self.executor = executor
        self.propose = propose
        self.objectives = objectives
        self.target = target
        self.max_failures = max_failures
        self.max_rejections = max_consecutive_rejections
        self.on_event = on_event
        self.running: dict[str, optuna.Trial] = {}
        self._ending: str | None = None
        self.failures = 0
        self.rejections_in_a_row = 0
        self.stop_reason: str | None = None
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        self.evaluated = len(done)
        # Candidates already trained (to the end, or to a failure); interrupted ones never finished.
        trained = [
            t
            for t in study.get_trials(
                deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
            )
            if t.user_attrs.get("status") in (None, *TRAINED_STATUSES)
        ]
        self.seen = {candidate_key(t.user_attrs, t.params): t.number for t in trained}
        #: Trials an earlier driver left running with a checkpoint, to be continued first.
        self.to_continue = list(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
        for t in self.to_continue:
            self.seen[candidate_key(t.user_attrs, t.params)] = t.number

    # -- the executor's side
    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.stop_reason or self.evaluated + len(self.running) >= self.target:
            # Not FINISHED while trials run: one of them may still fail and need replacing.
            return None if self.running and not self.stop_reason else FINISHED
        while self.to_continue:
            config = self._continue(trial_id, self.to_continue.pop(0))
            if config is not None:
                return config
        while True:
            trial = self.study.ask()
            self.n_asked += 1
            self._fallback_queued = False  # the ask took the queued point (or the queue was empty)
            try:
                proposal = self.propose(trial)
            except Exception as e:  # a candidate that cannot even be built fails alone
                proposal = Proposal(None, {"status": "failed", "reason": f"{type(e).__name__}: {e}"})
            key = candidate_key(proposal.attrs, trial.params)
            if proposal.config is not None and key in self.seen:
                proposal = Proposal(
                    None,
                    {"status": "duplicate", "reason": f"same candidate as trial {self.seen[key]}"},
                )
            if proposal.config is not None:
                self.rejections_in_a_row = 0
                self.seen[key] = trial.number
                for k, v in {**proposal.attrs, "executor": self.executor}.items():
                    trial.set_user_attr(k, v)
                self.running[trial_id] = trial
                return {**proposal.config, "trial_number": trial.number}
            self._finish(trial, TrialState.FAIL, None, proposal.attrs)
            if proposal.attrs.get("status") == "duplicate":
                self.n_duplicates += 1
                self._queue_fallback()
            if proposal.attrs.get("status") == "failed":
                self.failures += 1
                if self.failures > self.max_failures:
                    self.stop_reason = self._failure_message()
                    return None if self.running else FINISHED
            else:
                self.rejections_in_a_row += 1
                exhausted = getattr(self.study.sampler, "exhausted", None)
                if exhausted is not None and exhausted(self.study):
                    self.stop_reason = "every point of the grid has been tried"
                    return None if self.running else FINISHED
                if self.rejections_in_a_row >= self.max_rejections:
                    self.stop_reason = (
                        f"{self.rejections_in_a_row} candidates in a row were rejected by a constraint or had "
                        "already been evaluated: the search space looks exhausted or the constraints too "
                        "tight (execution.max_consecutive_rejections)"
                    )
                    return None if self.running else FINISHED

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        """An intermediate result: nothing is recorded in storage before the trial ends; it is passed on to
        `on_event.on_result(trial, result)` when `on_event` has one (progress display, tracking)."""
        trial = self.running.get(trial_id)
        hook = getattr(self.on_event, "on_result", None)
        if trial is not None and hook is not None:
            hook(trial, result)

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        trial = self.running.pop(trial_id, None)
        if trial is None:
            return
        self._ending = trial_id  # whose rung decisions `_finish` records
        try:
            if error or result is None:
                attrs = {
                    "status": "crashed",
                    "reason": "the trial's worker raised or died (see Ray's error.txt)",
                }
                self._fail(trial, attrs)
            elif not result.get(FINAL_KEY):
                epoch = result.get("epoch", result.get("training_iteration"))
                attrs = {"status": "pruned", "reason": f"stopped by the scheduler after epoch {epoch}"}
                attrs.update({k: result[k] for k in ("val_acc", "epoch") if k in result})
                self.evaluated += 1
                self._finish(trial, TrialState.PRUNED, None, attrs)
            elif result.get("status") == "complete":
                attrs = {k: result[k] for k in RECORDED if k in result}
                attrs.update(status="complete", curve=result.get("curve", []))
                attrs["is_basic"] = result.get("unit") == "conv" or result.get("n_unit_sites") == 0
                values = [float(result[name]) for name in self.objectives]
                self.evaluated += 1
                self._finish(trial, TrialState.COMPLETE, values, attrs)
            else:
                attrs = {k: result[k] for k in (*RECORDED, "status", "reason") if k in result}
                attrs["curve"] = result.get("curve", [])
                self._fail(trial, attrs)
        finally:
            self._ending = None

    # -- bookkeeping
    def _continue(self, trial_id: str, frozen: optuna.trial.FrozenTrial) -> dict[str, Any] | None:
        """Hand out again a trial an earlier driver left running: same number, candidate and cost."""
        trial = optuna.trial.Trial(self.study, frozen._trial_id)
        cand = frozen.user_attrs.get("candidate")
        try:
            if not isinstance(cand, dict):
                raise ValueError("the trial recorded no candidate")
            cost = (
                self.cost_of(cand)
                if self.cost_of is not None
                else {k: frozen.user_attrs[k] for k in ("macs", "params")}
            )
        except Exception as e:  # cannot be rebuilt: it ends as interrupted, as without a checkpoint
            self._finish(
                trial,
                TrialState.FAIL,
                None,
                {"status": "interrupted", "reason": f"interrupted: could not be continued ({e})"},
            )
            return None
        trial.set_user_attr("driver_resumes", int(frozen.user_attrs.get("driver_resumes", 0)) + 1)
        self.running[trial_id] = trial
        return {"candidate": cand, "cost": cost, "num_threads": cand.get("num_threads"), "trial_number": frozen.number}

    def _queue_fallback(self) -> None:
        """After a duplicate: queue an unseen candidate as the next trial, unless one is queued already."""
        if self.fallback is None or self._fallback_queued:
            return
        params = self.fallback(set(self.seen))
        if params is not None:
            self.study.enqueue_trial(params, user_attrs={"proposed_by": "fallback"})
            self._fallback_queued = True

    def _fail(self, trial: optuna.Trial, attrs: dict[str, Any]) -> None:
        self.failures += 1
        self._finish(trial, TrialState.FAIL, None, attrs)
        if self.failures > self.max_failures and not self.stop_reason:
            self.stop_reason = self._failure_message()

    def _failure_message(self) -> str:
        return (
            f"stopped after {self.failures} failed trials (more than execution.max_failures = "
            f"{self.max_failures}); their reasons are in the report's trials.csv"
        )

    def _finish(
        self, trial: optuna.Trial, state: TrialState, values: list[float] | None, attrs: dict[str, Any]
    ) -> None:
        decisions = self.scheduler.decisions(self._ending) if self.scheduler and self._ending else []
        if decisions:
            attrs = {**attrs, "rung_decisions": decisions}
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        frozen = self.study.tell(trial, values, state=state if values is None else None)
        if self.checkpoints is not None and attrs.get("status") not in ("rejected", "duplicate"):
            remove_checkpoint(self.checkpoints, trial.number)  # the outcome is recorded: never read again
        if self.on_event:
            self.on_event(attrs.get("status", state.name.lower()), frozen)


def make_searcher(
    loaded: Any,
    checked: Any,
    study: optuna.Study,
    target: int,
    on_event: Callable[[str, optuna.trial.FrozenTrial], None] | None,
    scheduler: Any = None,
    executor: str = "ray",
    known_costs: dict[str, dict[str, Any]] | None = None,
) -> AskTellSearcher:
    """The searcher of a study: its proposer (with `known_costs` by placement, see `Proposer`), objectives
    and failure caps."""
    ex = loaded.config.execution
    proposer = Proposer(loaded, checked, known_costs)
    return AskTellSearcher(
        study,
        proposer,
        objectives=[o.name for o in loaded.config.objectives],
        target=target,
        max_failures=ex.max_failures,
        max_consecutive_rejections=ex.max_consecutive_rejections,
        on_event=on_event,
        scheduler=scheduler,
        executor=executor,
        fallback=UnseenPoint(loaded, checked, proposer, seed=loaded.config.sampler.seed + len(study.trials))
        if loaded.config.sampler.informed
        else None,
        checkpoints=checkpoint_root(loaded) if executor == "ray" else None,
    )


class _RandomTrial:
    """Just enough of an Optuna trial for `space.sample`: every suggestion uniformly at random."""

    def __init__(self, rng: Any) -> None:
        self.rng = rng
        self.params: dict[str, Any] = {}

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        self.params[name] = self.rng.choice(list(choices))
        return self.params[name]

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        self.params[name] = self.rng.randrange(low, high + 1, step)
        return self.params[name]

    def suggest_float(self, name: str, low: float, high: float, step: Any = None, log: bool = False) -> float:
        import math

        if step:
            value = low + step * self.rng.randrange(int(round((high - low) / step)) + 1)
        elif log:
            value = math.exp(self.rng.uniform(math.log(low), math.log(high)))
        else:
            value = self.rng.uniform(low, high)
        self.params[name] = value
        return value


class UnseenPoint:
    """The searcher's fallback: a uniformly random point of the space whose candidate was not seen yet
    (up to `tries` draws; None when every draw was seen, e.g. in an exhausted space)."""

    def __init__(self, loaded: Any, checked: Any, proposer: Any, *, seed: int, tries: int = 200) -> None:
        import random

        self.loaded, self.checked, self.proposer = loaded, checked, proposer
        self.rng = random.Random(seed)
        self.tries = tries

    def __call__(self, seen: set[str]) -> dict[str, Any] | None:
        for _ in range(self.tries):
            trial = _RandomTrial(self.rng)
            sp.sample(trial, self.loaded.space, self.checked.mask_len)
            cand = self.proposer.candidate(optuna.trial.FixedTrial(trial.params))
            try:
                canonical = self.proposer.cost(cand)[1]
            except Exception:  # a point that cannot be built is left to the sampler's own proposals
                continue
            if self.proposer.experiment_key(cand, canonical) not in seen:
                return trial.params
        return None
