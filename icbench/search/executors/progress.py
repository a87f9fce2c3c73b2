"""The progress display both executors give the searcher, and the per-epoch tracking it feeds.

- One line per finished trial: its outcome, and the study's counts and best front so far.
- A live line, rewritten in place while trials run, when stdout is a terminal and progress is printed
  (not under `-q`, not when piped to a file): running trials and their epochs, epochs done, and an ETA
  from the epoch times measured so far.
- Each epoch's result, and each trial's end, go to the study's tracking backends (`tracking.py`).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from icbench.search.tracking import Tracking
from icbench.search.trials import counts


def _duration(s: float) -> str:
    s = max(0.0, s)
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


class Progress:
    """The searcher's `on_event` (a trial was told) and `on_result` (an epoch's result arrived).

    Args:
        study: the Optuna study.
        target: COMPLETE + PRUNED trials the run aims at.
        echo: where lines go (`print`; a no-op under `-q`).
        every: one line per this many finished trials (a replay finishes hundreds a second).
        tracking: the study's tracking backends, or None.
        epochs: epochs per trial (for the ETA); None: no ETA.
        concurrency: trials that run at once (for the ETA).
        live: draw the live line; None: when `echo` is `print` and stdout is a terminal.
    """

    def __init__(
        self,
        study: Any,
        target: int,
        echo: Callable[[str], None],
        every: int = 1,
        *,
        tracking: Tracking | None = None,
        epochs: int | None = None,
        concurrency: int = 1,
        live: bool | None = None,
    ) -> None:
        self.study = study
        self.target = target
        self.echo = echo
        self.every = every
        self.tracking = tracking
        self.epochs = epochs
        self.concurrency = max(1, concurrency)
        self.live = live if live is not None else (echo is print and sys.stdout.isatty())
        self.n_events = 0
        self.t0 = time.perf_counter()
        #: Trial number -> epochs it has reported (running trials only).
        self.running_epochs: dict[int, int] = {}
        self.epoch_times: list[float] = []
        self.epochs_done = 0
        self._shown = False
        self._last_draw = 0.0

    # -- the searcher's hooks
    def on_result(self, trial: Any, result: dict[str, Any]) -> None:
        """An epoch's result of a running trial (an Optuna trial, or anything with `number` and `params`)."""
        epoch = result.get("epoch")
        if isinstance(epoch, int | float) and not isinstance(epoch, bool):
            if int(epoch) > self.running_epochs.get(trial.number, 0):
                self.epochs_done += 1
            self.running_epochs[trial.number] = int(epoch)
        dt = result.get("epoch_time_s")
        if isinstance(dt, int | float) and dt > 0:
            self.epoch_times.append(float(dt))
        if self.tracking is not None:
            self.tracking.epoch(trial.number, dict(trial.params), result)
        self._draw()

    def __call__(self, status: str, trial: Any) -> None:
        """Trial `trial` (frozen, as told) ended with `status`."""
        a = trial.user_attrs
        done_epochs = len(a.get("curve") or [])
        self.epochs_done += max(0, done_epochs - self.running_epochs.pop(trial.number, 0))
        if self.tracking is not None and status not in ("rejected", "duplicate"):  # never trained
            self.tracking.end(trial.number, dict(trial.params), status, a)
        self.n_events += 1
        if self.n_events % self.every:
            return
        n = counts(self.study)
        if status == "complete":
            what = f"val_acc {a.get('val_acc', float('nan')):.4f}, {a.get('macs', 0) / 1e6:.2f} MMac, {a.get('placement', '')}"
        else:
            what = a.get("reason", "")
        front = self._front()
        self._clear()
        self.echo(
            f"[{time.perf_counter() - self.t0:6.0f} s] trial {trial.number:3d} {status.upper():9s} {what}\n"
            f"           done {n['complete'] + n['pruned']}/{self.target} (complete {n['complete']}, pruned "
            f"{n['pruned']}), running {n['running']}, failed {n['failed']}, rejected {n['rejected']}, "
            f"duplicate {n.get('duplicate', 0)}{front}"
        )
        self._draw(force=True)

    def close(self) -> None:
        """Clear the live line and close the tracking backends."""
        self._clear()
        if self.tracking is not None:
            self.tracking.close()

    # -- the live line
    def line(self) -> str:
        """The live line: running trials and their epochs, epochs done, ETA."""
        elapsed = time.perf_counter() - self.t0
        running = ", ".join(
            f"#{k} {e}/{self.epochs}" if self.epochs else f"#{k} epoch {e}"
            for k, e in sorted(self.running_epochs.items())[:4]
        )
        more = len(self.running_epochs) - 4
        running += f" +{more}" if more > 0 else ""
        parts = [f"[{elapsed:6.0f} s] running {len(self.running_epochs)}" + (f" ({running})" if running else "")]
        parts.append(f"epochs done {self.epochs_done}")
        eta = self.eta()
        parts.append(f"ETA ~{_duration(eta)}" if eta is not None else "ETA: after the first epoch")
        return ", ".join(parts)

    def eta(self) -> float | None:
        """Seconds left: the epochs still to train (trials not yet finished, at full budget) times the
        median epoch time measured so far, over the trials that run at once. None before any epoch."""
        if not self.epoch_times or not self.epochs:
            return None
        n = counts(self.study)
        evaluated = n["complete"] + n["pruned"]
        left_trials = max(0, self.target - evaluated - len(self.running_epochs))
        left = left_trials * self.epochs + sum(max(0, self.epochs - e) for e in self.running_epochs.values())
        return left * statistics.median(self.epoch_times) / self.concurrency

    def _draw(self, force: bool = False) -> None:
        if not self.live:
            return
        now = time.perf_counter()
        if not force and now - self._last_draw < 0.5:
            return
        self._last_draw = now
        sys.stdout.write("\r\033[K" + self.line())
        sys.stdout.flush()
        self._shown = True

    def _clear(self) -> None:
        if self._shown:
            sys.stdout.write("\r\033[K")
            sys.stdout.flush()
            self._shown = False

    def _front(self) -> str:
        try:
            best = self.study.best_trials
        except Exception:
            return ""
        pts = sorted((t.user_attrs.get("macs", 0), t.user_attrs.get("val_acc", 0)) for t in best)[:5]
        return ("; front: " + ", ".join(f"{acc:.3f}@{m / 1e6:.1f}M" for m, acc in pts)) if pts else ""
