"""`icbench run --dry-run` and `icbench validate`: every check a run makes before it trains (the same
functions, `check_study` and `check_run`, so the two cannot disagree on a study), then the study's sites
and the MACs range of its space."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from icbench.errors import ConfigError
from icbench.search import space as sp
from icbench.search.checks import N_PROBE, check_run, check_study
from icbench.search.space import target_trials
from icbench.search.storage import shown_storage
from icbench.search.study import load_study

N_PROBE_DRY = 32


def dry_run(
    path: str | Path, overrides: dict[str, Any] | None = None, echo: Callable[[str], None] = print
) -> None:
    """Validate everything and print what a run would do; trains nothing and writes nothing to storage."""
    from icbench.placement import format_site_table, sites
    from icbench.training import build_candidate

    loaded = load_study(path, overrides)
    try:  # more random points than a run probes, for the MACs range below
        checked = check_study(loaded, n_probe=N_PROBE_DRY)
        beyond = None
    except ConfigError as e:
        checked = check_study(loaded, n_probe=N_PROBE)  # the run's verdict: raises if the run would refuse
        beyond = e  # a point the run does not probe: its trial would fail alone
    skipped = check_run(loaded)  # the environment: data files, storage, resume fingerprint, resources
    c = loaded.config
    basic = checked.basic
    model, _, input_shape = build_candidate(basic)
    echo(f"study {c.name!r} is valid ({loaded.study_path}, search space {loaded.space_path})")
    echo(
        f"dataset {c.dataset.name}, family {basic['family']} {basic['size'] or '(default size)'}, input {input_shape}"
    )
    echo(f"sampler {c.sampler.name} (seed {c.sampler.seed}), target {target_trials(loaded)} trials, "
         f"{c.budget.epochs} epoch(s) each, storage {shown_storage(loaded)}")  # fmt: skip
    echo(f"objectives: {', '.join(f'{o.resolved_direction} {o.name}' for o in c.objectives)}")
    for note in skipped:
        echo(f"not checked here: {note}")
    if beyond is not None:
        echo(f"note: a point the run does not probe before training would fail as a trial: {beyond}")
    echo("\nsites of the base network:")
    echo(format_site_table(sites(model, input_shape, family=basic["family"])))
    lo, hi = min(checked.probe_macs), max(checked.probe_macs)
    echo(
        f"\nMACs over the basic network and {len(checked.probe_macs) - 1} random points of the space: "
        f"{lo / 1e6:.3f} to {hi / 1e6:.3f} MMac (FLOPs = 2 x MACs)"
    )
    if c.constraints.max_macs is not None:
        over = sum(m > c.constraints.max_macs for m in checked.probe_macs)
        echo(
            f"ceiling {c.constraints.max_macs / 1e6:.3f} MMac: {over}/{len(checked.probe_macs)} probed points would be rejected"
        )
    echo(f"distinct placements probed: {len(set(checked.probe_placements))}")
    echo("dry run: nothing trained, nothing written")
