"""The progress printer both executors give the searcher: one line per finished trial."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from icbench.search.trials import counts


class Progress:
    """One line per finished trial: its outcome, and the study's counts and best front so far."""

    def __init__(self, study: Any, target: int, echo: Callable[[str], None], every: int = 1) -> None:
        """`every`: one line per this many finished trials (a replay finishes hundreds a second)."""
        self.study = study
        self.target = target
        self.echo = echo
        self.every = every
        self.n_events = 0
        self.t0 = time.perf_counter()

    def __call__(self, status: str, trial: Any) -> None:
        self.n_events += 1
        if self.n_events % self.every:
            return
        n = counts(self.study)
        a = trial.user_attrs
        if status == "complete":
            what = f"val_acc {a.get('val_acc', float('nan')):.4f}, {a.get('macs', 0) / 1e6:.2f} MMac, {a.get('placement', '')}"
        else:
            what = a.get("reason", "")
        front = self._front()
        self.echo(
            f"[{time.perf_counter() - self.t0:6.0f} s] trial {trial.number:3d} {status.upper():9s} {what}\n"
            f"           done {n['complete'] + n['pruned']}/{self.target} (complete {n['complete']}, pruned "
            f"{n['pruned']}), running {n['running']}, failed {n['failed']}, rejected {n['rejected']}{front}"
        )

    def _front(self) -> str:
        try:
            best = self.study.best_trials
        except Exception:
            return ""
        pts = sorted((t.user_attrs.get("macs", 0), t.user_attrs.get("val_acc", 0)) for t in best)[:5]
        return ("; front: " + ", ".join(f"{acc:.3f}@{m / 1e6:.1f}M" for m, acc in pts)) if pts else ""
