"""The function Ray Tune runs for each trial, in a worker process.

It never raises for a trial's own failure: an exception, an out-of-memory error, divergence or an exhausted
time budget becomes a final result with `status` and `reason`, so the driver can record *why* the trial
failed (a raised exception would reach the searcher only as `error=True`).
"""

from __future__ import annotations

import traceback
from typing import Any

FINAL_KEY = "icbench_final"


def _scalar_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool)) or v is None}


def run_trial(config: dict[str, Any]) -> None:
    """Train one candidate and report each epoch to Tune; the last report carries the final metrics.

    The last epoch is not reported on its own: it is merged into the final report, so a scheduler that
    stops trials at `max_t` cannot cut off the final metrics (a trial that stops early ends on a result
    without `icbench_final`, which the searcher records as PRUNED).
    """
    import torch
    from ray import tune

    from icbench.training import train_candidate

    candidate: dict[str, Any] = config["candidate"]
    if config.get("num_threads"):
        torch.set_num_threads(int(config["num_threads"]))
    epochs = int(candidate["epochs"])
    last: dict[str, Any] = {}

    def on_epoch(record: dict[str, Any]) -> None:
        scalar = {k: v for k, v in record.items() if isinstance(v, (int, float))}
        if record["epoch"] < epochs:
            tune.report({**scalar, FINAL_KEY: False})
        else:
            last.update(scalar)

    try:
        metrics = train_candidate(candidate, callback=on_epoch, cost=config.get("cost"))
    except torch.OutOfMemoryError as e:
        final = {"status": "failed", "reason": f"out of memory: {str(e).splitlines()[0] if str(e) else e!r}"}
    except Exception as e:  # any error in user code or training is this trial's failure, not the study's
        tb = traceback.extract_tb(e.__traceback__)
        where = f" at {tb[-1].filename}:{tb[-1].lineno}" if tb else ""
        final = {"status": "failed", "reason": f"{type(e).__name__}: {e}{where}"}
    else:
        final = _scalar_metrics(metrics)
        final["curve"] = metrics.get("curve", [])
        done, target = metrics.get("epochs_done", 0), metrics.get("epochs_target", epochs)
        if metrics.get("diverged"):
            final.update(status="diverged", reason=f"non-finite training loss in epoch {done + 1}")
        elif metrics.get("stop_reason") == "time_budget" or done < target:
            final.update(
                status="failed",
                reason=f"time budget of {candidate.get('time_budget_s')} s exhausted after {done}/{target} epochs",
            )
        else:
            final["status"] = "complete"
    final.setdefault("val_acc", last.get("val_acc", 0.0))
    final.setdefault("epoch", last.get("epoch", 0))
    tune.report({**last, **final, FINAL_KEY: True})
