"""Plain records passed between the checks, the proposer and the searcher.

This module imports nothing heavy (no Ray, Optuna or torch), so the light paths (`--dry-run`, `validate`,
`report`) can use the checks and the proposer without pulling in Ray Tune, which only the code that
executes trials imports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Checked:
    """Facts about a valid study that the run needs."""

    mask_len: int | None
    #: The basic network (every site `conv`) of a sampled point: what the dry run shows.
    basic: dict[str, Any] = field(default_factory=dict)
    probe_macs: list[int] = field(default_factory=list)
    probe_placements: list[str] = field(default_factory=list)


@dataclass
class Proposal:
    """What the driver decided for one asked trial."""

    config: dict[str, Any] | None  # handed to Tune; None when the trial was settled in the driver
    attrs: dict[str, Any] = field(default_factory=dict)
