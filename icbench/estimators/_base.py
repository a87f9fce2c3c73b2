"""What every estimator shares: the candidates of a table, the context, the scores, the base class.

An estimator scores the candidates of one benchmark table (placement x WLD of one basic network): a
higher score predicts a higher validation accuracy. It is run once per *repeat*; repeat r belongs to the
table seed `ctx.seeds[r]`: estimators that train or initialise use that seed, estimators read from the
table's curves read that seed's rows, and the truth they are measured against is the candidates' mean
over the *other* seeds (`icbench.estimators.evaluate`), so no estimator shares its noise with its truth.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from icbench.registry import Registry

Key = tuple[str, bool]


@dataclass(frozen=True)
class TableCandidate:
    """One candidate of a table: its network, cost and rows (complete rows only).

    Attributes:
        placement: canonical `unit:bits` (`conv:000...` for the basic network).
        rows: table seed -> the row (a dict of the table's columns).
    """

    placement: str
    wld: bool
    unit: str
    macs: float
    params: float
    n_unit_sites: int
    rows: Mapping[int, Mapping[str, Any]]

    @property
    def key(self) -> Key:
        return (self.placement, self.wld)

    @property
    def bits(self) -> str:
        return self.placement.split(":", 1)[1] if ":" in self.placement else ""

    @property
    def stratum(self) -> str:
        """unit x WLD: the candidates that differ only in placement (the basic network is its own)."""
        if "1" not in self.bits:
            return "basic"
        return f"{self.unit}, WLD {'on' if self.wld else 'off'}"


@dataclass
class EstimateContext:
    """What an estimator may use besides the candidates: the table's experiment and seeds, and the data
    (loaded once, on first use)."""

    experiment: Mapping[str, Any]
    seeds: tuple[int, ...]
    _cache: dict[str, Any] = field(default_factory=dict)

    def seed(self, repeat: int) -> int:
        return self.seeds[repeat % len(self.seeds)]

    def splits(self) -> Any:
        """The table's dataset splits (`icbench.data.load_dataset`), on the CPU."""
        if "splits" not in self._cache:
            from icbench.data import load_dataset

            e = self.experiment
            self._cache["splits"] = load_dataset(
                e["dataset"], e.get("dataset_root"), device="cpu", **(e.get("dataset_kwargs") or {})
            )
        return self._cache["splits"]


@dataclass(frozen=True)
class Scores:
    """One repeat of one estimator: a score per candidate (higher predicts better; NaN: no score) and
    what it cost, set-up apart from the per-candidate seconds (their mean)."""

    values: Mapping[Key, float]
    setup_s: float
    per_candidate_s: float

    def cost_s(self) -> float:
        """Seconds to score every candidate: set-up + per candidate x candidates."""
        return self.setup_s + self.per_candidate_s * len(self.values)


class Estimator(ABC):
    """Scores the candidates of a table (see the module docstring). One file and one decorator each."""

    name: ClassVar[str] = ""
    #: `free` (read off the network), `training` (part of a candidate's own training, read from the
    #: table's curves, cost = the recorded seconds), `proxy` (computed here on the candidate's network).
    kind: ClassVar[str] = "free"
    #: One line for the report: what the score is.
    describe: ClassVar[str] = ""
    #: Estimators with the same non-empty `shares` reuse one another's work within a repeat (the
    #: zero-cost proxies share their warm starts), so `evaluate(workers=N)` runs them in one process.
    shares: ClassVar[str] = ""
    #: Table columns the estimator reads besides those every estimate reads (`evaluate.REQUIRED`): checked
    #: before anything is scored, so a table without them is refused naming the column.
    reads: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def score(self, cands: Sequence[TableCandidate], ctx: EstimateContext, repeat: int) -> Scores: ...


ESTIMATORS: Registry[type[Estimator]] = Registry("estimator")


def timed_scores(
    cands: Sequence[TableCandidate], fn: Callable[[TableCandidate], float], setup_s: float = 0.0
) -> Scores:
    """Scores of `fn` per candidate, each call timed."""
    values, spent = {}, 0.0
    for c in cands:
        t0 = time.perf_counter()
        values[c.key] = float(fn(c))
        spent += time.perf_counter() - t0
    return Scores(values, setup_s, spent / max(1, len(cands)))


#: The columns `curve_scores` reads for the recorded cost of a candidate's first epochs.
CURVE_COST_COLUMNS = ("wall_time_s", "train_time_s", "epoch_time_s_curve")


def curve_scores(
    cands: Sequence[TableCandidate], seed: int, fn: Callable[[Mapping[str, Any]], float], epochs: int
) -> Scores:
    """Scores read from each candidate's row of `seed`, costed at the recorded seconds of its first
    `epochs` epochs (what training it that far took). NaN where the candidate has no row of that seed."""
    values, spent = {}, []
    for c in cands:
        row = c.rows.get(seed)
        if row is None:
            values[c.key] = float("nan")
            continue
        values[c.key] = float(fn(row))
        setup = max(0.0, float(row["wall_time_s"]) - float(row["train_time_s"]))
        spent.append(setup + sum(float(t) for t in list(row["epoch_time_s_curve"])[:epochs]))
    return Scores(values, 0.0, sum(spent) / max(1, len(spent)))
