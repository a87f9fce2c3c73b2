"""Pause points for the crash/resume soak test: `run_study.py run` that stops where it is told to.

Run as `python crash_hooks.py run STUDY` (the same arguments as `run_study.py`). With the environment
variable ICBENCH_CRASH_AT set to one of `POINTS`, the driver (or, for `mid_trial`, a trial's worker)
writes the marker file `$ICBENCH_CRASH_DIR/<point>` when it reaches that point and then sleeps, so the
test can SIGKILL it exactly there. Without the variable this is `run_study.py` unchanged.

The hooks live here, in the tests, not in icbench: they wrap library functions from the outside.

- ray_start:      Ray's GCS is up, its raylet not yet started (inside `ray.init`).
- mid_trial:      a trial finished its first epoch and is still training (in the Ray worker); only
                  trials handed out after one trial of this run completed pause, so the run makes progress.
- between_trials: a trial was just recorded COMPLETE; its successor has not been asked for yet.
- storage_write:  inside the SQL transaction that records a trial COMPLETE, before it commits.
- report:         the report folder is half written (tables done, figures not yet).
"""

from __future__ import annotations

import json
import os
import runpy
import sys
import time
from pathlib import Path
from typing import Any

POINTS = ("ray_start", "mid_trial", "between_trials", "storage_write", "report")
#: Trial config key the driver sets on trials whose worker should pause after its first epoch.
PAUSE_KEY = "icbench_test_pause_after_epoch"
REPO = Path(__file__).resolve().parents[2]


def _pause(point: str, **info: Any) -> None:
    """Write the marker (atomically), then wait to be killed."""
    folder = Path(os.environ["ICBENCH_CRASH_DIR"])
    tmp = folder / f".{point}.{os.getpid()}"
    tmp.write_text(json.dumps({"pid": os.getpid(), **info}))
    tmp.replace(folder / point)
    time.sleep(3600)


def run_trial(config: dict[str, Any], evaluation: dict[str, Any] | None = None) -> None:
    """The Ray worker function: icbench's own, paused after epoch 1 when the driver asked for it."""
    from icbench.search import trainable

    if config.get(PAUSE_KEY):
        import icbench.training as training

        real = training.train_candidate

        def train_candidate(candidate: Any, *, callback: Any = None, **kwargs: Any) -> dict[str, Any]:
            def on_epoch(record: dict[str, Any]) -> None:
                if callback is not None:
                    callback(record)
                if record["epoch"] == 1:
                    _pause("mid_trial", trial=config.get("trial_number"))

            return real(candidate, callback=on_epoch, **kwargs)

        training.train_candidate = train_candidate  # run_trial imports it from icbench.training
    trainable.run_trial(config, evaluation)


def install(point: str) -> None:
    """Wrap the library functions around `point` in this (driver) process."""
    from icbench.search.searcher import AskTellSearcher

    if point == "ray_start":
        import ray

        try:  # private, but the one place where Ray is half started: GCS up, raylet not yet
            from ray._private.node import Node

            owner, name = Node, "start_ray_processes"
            real = Node.start_ray_processes
        except (ImportError, AttributeError):  # another Ray: pause as ray.init begins instead
            owner, name, real = ray, "init", ray.init

        def paused(*args: Any, **kwargs: Any) -> Any:
            _pause("ray_start")
            return real(*args, **kwargs)

        setattr(owner, name, paused)
    elif point == "mid_trial":
        from icbench.search import trainable

        # The ray executor reads run_trial from here when it starts Tune: workers then run ours.
        trainable.run_trial = run_trial  # type: ignore[assignment]
        real_init, real_suggest = AskTellSearcher.__init__, AskTellSearcher.suggest

        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807
            real_init(self, *args, **kwargs)
            self._evaluated_at_start = self.evaluated

        def suggest(self: Any, trial_id: str) -> Any:
            config = real_suggest(self, trial_id)
            if isinstance(config, dict) and self.evaluated > self._evaluated_at_start:
                config = {**config, PAUSE_KEY: True}
            return config

        AskTellSearcher.__init__ = __init__  # type: ignore[method-assign]
        AskTellSearcher.suggest = suggest  # type: ignore[method-assign]
    elif point == "between_trials":
        real_complete = AskTellSearcher.on_trial_complete

        def on_trial_complete(self: Any, trial_id: str, result: Any = None, error: bool = False) -> None:
            trial = self.running.get(trial_id)
            before = self.evaluated
            real_complete(self, trial_id, result, error)
            if self.evaluated > before and (result or {}).get("status") == "complete":
                _pause("between_trials", trial=trial.number if trial is not None else None)

        AskTellSearcher.on_trial_complete = on_trial_complete  # type: ignore[method-assign]
    elif point == "storage_write":
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        def before_execute(conn: Any, cursor: Any, statement: str, params: Any, *rest: Any) -> None:
            # Objective values are inserted only when a trial is told COMPLETE, in the same
            # transaction that sets its state.
            if statement.lstrip().upper().startswith("INSERT INTO TRIAL_VALUES"):
                conn.info["icbench_completing"] = params

        def on_commit(conn: Any) -> None:
            params = conn.info.pop("icbench_completing", None)
            if params is not None:
                _pause("storage_write", params=repr(params))

        event.listen(Engine, "before_cursor_execute", before_execute)
        event.listen(Engine, "commit", on_commit)
    elif point == "report":
        from icbench.report import plots

        real_plot = plots.plot_pareto

        def plot_pareto(*args: Any, **kwargs: Any) -> Any:
            _pause("report")
            return real_plot(*args, **kwargs)

        plots.plot_pareto = plot_pareto  # type: ignore[assignment]
    else:
        raise SystemExit(f"ICBENCH_CRASH_AT must be one of {', '.join(POINTS)}, not {point!r}")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    import crash_hooks  # this file as a module, so Ray workers find `crash_hooks.run_trial` by name

    if os.environ.get("ICBENCH_CRASH_AT"):
        crash_hooks.install(os.environ["ICBENCH_CRASH_AT"])
    sys.argv = [str(REPO / "run_study.py"), *sys.argv[1:]]
    runpy.run_path(str(REPO / "run_study.py"), run_name="__main__")
