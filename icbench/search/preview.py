"""`run_study.py run --dry-run`: validate a study, show its sites and the MACs range of its space."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from icbench.errors import ConfigError
from icbench.search.checks import check_environment, check_study
from icbench.search.space import target_trials
from icbench.search.storage import storage_url
from icbench.search.study import load_study

N_PROBE_DRY = 32


def dry_run(
    path: str | Path, overrides: dict[str, Any] | None = None, echo: Callable[[str], None] = print
) -> None:
    """Validate everything and print what a run would do; trains nothing and writes nothing to storage."""
    from icbench.placement import format_site_table, sites
    from icbench.training import build_candidate

    loaded = load_study(path, overrides)
    checked = check_study(loaded, n_probe=N_PROBE_DRY)
    c = loaded.config
    basic = checked.basic
    model, _, input_shape = build_candidate(basic)
    echo(f"study {c.name!r} is valid ({loaded.study_path}, search space {loaded.space_path})")
    echo(
        f"dataset {c.dataset.name}, family {basic['family']} {basic['size'] or '(default size)'}, input {input_shape}"
    )
    echo(f"sampler {c.sampler.name} (seed {c.sampler.seed}), target {target_trials(loaded)} trials, "
         f"{c.budget.epochs} epoch(s) each, storage {storage_url(loaded)}")  # fmt: skip
    echo(f"objectives: {', '.join(f'{o.resolved_direction} {o.name}' for o in c.objectives)}")
    try:  # the study may be meant for another machine: a note, not an error
        check_environment(loaded)
    except ConfigError as e:
        echo(f"note: `run` on this machine would be refused: {e}")
    echo("\nsites of the base network:")
    echo(format_site_table(sites(model, input_shape, family=basic["family"])))
    lo, hi = min(checked.probe_macs), max(checked.probe_macs)
    echo(
        f"\nMACs over the basic network and {N_PROBE_DRY} random points of the space: "
        f"{lo / 1e6:.3f} to {hi / 1e6:.3f} MMac (FLOPs = 2 x MACs)"
    )
    if c.constraints.max_macs is not None:
        over = sum(m > c.constraints.max_macs for m in checked.probe_macs)
        echo(
            f"ceiling {c.constraints.max_macs / 1e6:.3f} MMac: {over}/{len(checked.probe_macs)} probed points would be rejected"
        )
    echo(f"distinct placements probed: {len(set(checked.probe_placements))}")
    echo("dry run: nothing trained, nothing written")
