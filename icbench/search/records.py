"""Plain records passed between the checks, the proposer, the searcher and the study commands.

This module imports nothing heavy (no Ray, Optuna or torch), so the light paths (`--dry-run`, `validate`,
`report`) can use the checks and the proposer without pulling in Ray Tune, which only the code that
executes trials imports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Checked:
    """Facts about a valid study that the run needs."""

    mask_len: int | None
    #: The basic network (every site `conv`) of a sampled point: what the dry run shows.
    basic: dict[str, Any] = field(default_factory=dict)
    probe_macs: list[int] = field(default_factory=list)
    probe_placements: list[str] = field(default_factory=list)
    #: Parameters of the same probed points (basic network first), for the dry run's plan.
    probe_params: list[int] = field(default_factory=list)


@dataclass
class Proposal:
    """What the driver decided for one asked trial."""

    config: dict[str, Any] | None  # handed to Tune; None when the trial was settled in the driver
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class StudyRun:
    """What a run did: counts over the whole study, and why it stopped early (if it did)."""

    name: str
    storage_url: str
    n_complete: int = 0
    n_pruned: int = 0
    n_failed: int = 0
    n_rejected: int = 0
    n_duplicate: int = 0
    stop_reason: str | None = None
    report_dir: Path | None = None
    wall_time_s: float = 0.0
    messages: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        """Trials of the whole study by outcome: `complete`, `pruned`, `failed`, `rejected` (over a
        constraint) and `duplicate` (the same candidate as an earlier trial), the last two never trained."""
        return {"complete": self.n_complete, "pruned": self.n_pruned, "failed": self.n_failed,
                "rejected": self.n_rejected, "duplicate": self.n_duplicate}  # fmt: skip
