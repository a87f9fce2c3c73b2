"""Experiment tracking: every trial's per-epoch metrics, written by the driver as the results arrive, so a
running study can be watched with the usual tools (`execution.tracking`).

- `tensorboard` (default): one event-file folder per trial, `<runs_dir>/<study>/tensorboard/trial_<n>/`,
  with one scalar per epoch for each metric (`val_acc`, `train_loss`, `epoch_time_s`):
  `tensorboard --logdir runs/<study>`. Written with tensorboardX (Ray Tune's own logger callbacks are off).
- `mlflow` (opt in): one MLflow run per trial in `execution.mlflow_uri` (default: a local SQLite store,
  `<runs_dir>/<study>/mlflow.db`: MLflow 3 keeps its plain-folder store only behind an opt-out), named
  `trial_<n>`, with the trial's parameters, its per-epoch metrics (step = epoch) and, when it ends, its
  final metrics and state: `mlflow ui --backend-store-uri sqlite:///runs/<study>/mlflow.db`.

The trials themselves never write here: the driver already receives each epoch's result (the searcher's
`on_trial_result`) and each trial's end (with its whole curve), so tracking works the same for local and
cluster runs and needs nothing on the workers. The Optuna study stays the source of truth; these files
are views of it for live watching. A tracking backend that fails is reported once and switched off: it
never stops a study.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from icbench.search.schema import LoadedStudy

#: What `execution.tracking` may name.
BACKENDS = ("tensorboard", "mlflow")
#: The per-epoch metrics written for every trial (when the result has them).
EPOCH_METRICS = ("val_acc", "train_loss", "epoch_time_s")
#: Final metrics an MLflow run gets when its trial ends (those the trial recorded).
FINAL_METRICS = ("val_acc", "test_acc", "macs", "params", "train_time_s", "wall_time_s", "latency_ms")


def tensorboard_dir(loaded: LoadedStudy) -> Path:
    """The study's TensorBoard folder: `<runs_dir>/<study>/tensorboard/`."""
    return Path(loaded.config.runs_dir) / loaded.config.name / "tensorboard"


def mlflow_uri(loaded: LoadedStudy) -> str:
    """The MLflow tracking URI: `execution.mlflow_uri`, else a SQLite store in the study's run folder."""
    uri = loaded.config.execution.mlflow_uri
    if uri:
        return uri
    return f"sqlite:///{(Path(loaded.config.runs_dir) / loaded.config.name / 'mlflow.db').resolve()}"


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


class _TensorBoard:
    """tensorboardX is imported with the first trial's first write, not at the study's start: importing
    it (with boto3, when installed) costs ~0.4 s, which at the start every trial slot would wait for."""

    def __init__(self, folder: Path) -> None:
        import importlib.util

        if importlib.util.find_spec("tensorboardX") is None:
            raise ModuleNotFoundError("No module named 'tensorboardX'")
        self.folder = folder
        self.writers: dict[int, Any] = {}

    def _writer(self, number: int) -> Any:
        if number not in self.writers:
            from tensorboardX import SummaryWriter

            self.writers[number] = SummaryWriter(str(self.folder / f"trial_{number}"))
        return self.writers[number]

    def start(self, number: int, params: dict[str, Any]) -> None:
        text = "\n".join(f"- {k}: {v}" for k, v in sorted(params.items()))
        self._writer(number).add_text("params", text or "(none)", 0)

    def epoch(self, number: int, epoch: int, metrics: dict[str, float]) -> None:
        w = self._writer(number)
        for k, v in metrics.items():
            w.add_scalar(k, v, epoch)
        w.flush()

    def end(self, number: int, status: str, final: dict[str, float]) -> None:
        w = self.writers.pop(number, None)
        if w is not None:
            w.add_text("status", status, 0)
            w.close()

    def close(self) -> None:
        for w in self.writers.values():
            w.close()
        self.writers.clear()

    def discard(self) -> None:
        """Let go of every writer after a failed write (a full disk), dropping what it still holds."""
        for w in self.writers.values():
            _drop_writer(w)
        self.writers.clear()


def _drop_writer(writer: Any) -> None:
    """Stop a tensorboardX `SummaryWriter` whose files take no more bytes, without writing what it holds.

    Closing it would flush, fail again, and leave its thread and its exit handler to try once more: a
    traceback after the study's own one-line error. tensorboardX has no call for this, so each step
    reaches into its event writer, guarded: a tensorboardX that moved them brings back only that traceback.
    """
    for file_writer in list((getattr(writer, "all_writers", None) or {}).values()):
        events = getattr(file_writer, "event_writer", None)
        if events is None or getattr(events, "_closed", True):
            continue
        try:
            events._closed = True  # its close(), called again by its exit handler, now does nothing
            events._worker.stop()  # the thread that writes queued events, ended before its file is
            events._event_queue.close()
            buffered = events._ev_writer._py_recordio_writer._writer
            raw = getattr(buffered, "raw", None)
            (raw or buffered).close()  # closing the raw file drops the unwritable buffer
        except Exception:  # best effort: tracking never stops a study
            pass
    writer.file_writer = writer.all_writers = None


class _MLflow:
    def __init__(self, uri: str, experiment: str) -> None:
        from mlflow.tracking import MlflowClient

        if uri.startswith("sqlite:///"):
            Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=uri)
        found = self.client.get_experiment_by_name(experiment)
        self.experiment_id = found.experiment_id if found else self.client.create_experiment(experiment)
        self.runs: dict[int, str] = {}

    def start(self, number: int, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        run = self.client.create_run(self.experiment_id, run_name=f"trial_{number}",
                                     tags={"icbench.trial_number": str(number)})  # fmt: skip
        self.runs[number] = run.info.run_id
        if params:
            self.client.log_batch(
                run.info.run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()]
            )

    def epoch(self, number: int, epoch: int, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        run_id = self.runs.get(number)
        if run_id is None:
            return
        ts = _now_ms()
        self.client.log_batch(run_id, metrics=[Metric(k, v, ts, epoch) for k, v in metrics.items()])

    def end(self, number: int, status: str, final: dict[str, float]) -> None:
        from mlflow.entities import Metric

        run_id = self.runs.pop(number, None)
        if run_id is None:
            return
        ts = _now_ms()
        self.client.log_batch(run_id, metrics=[Metric(f"final_{k}", v, ts, 0) for k, v in final.items()])
        self.client.set_tag(run_id, "icbench.status", status)
        self.client.set_terminated(run_id, "FINISHED" if status == "complete" else "FAILED")

    def close(self) -> None:
        for run_id in self.runs.values():
            self.client.set_terminated(run_id, "KILLED")
        self.runs.clear()


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


class Tracking:
    """Writes each trial's epochs to the study's tracking backends (`execution.tracking`).

    The driver calls `epoch` for every intermediate result and `end` when a trial is told; `end` also
    writes the epochs no intermediate result carried (the last epoch travels in the final result, and a
    replay or a resumed driver may not have seen the others), so every epoch is written exactly once.

    Args:
        loaded: the study.
        warn: where a failing backend is reported (once; the backend is then switched off).
    """

    def __init__(self, loaded: LoadedStudy, warn: Callable[[str], None] = print) -> None:
        self.warn = warn
        self.sinks: dict[str, Any] = {}
        self.written: dict[int, set[int]] = {}
        for name in loaded.config.execution.tracking:
            try:
                if name == "tensorboard":
                    self.sinks[name] = _TensorBoard(tensorboard_dir(loaded))
                elif name == "mlflow":
                    self.sinks[name] = _MLflow(mlflow_uri(loaded), loaded.config.name)
            except Exception as e:  # a tracking backend never stops a study
                self.warn(f"tracking: {name} is off for this run ({type(e).__name__}: {e})")

    @property
    def where(self) -> list[str]:
        """One phrase per backend in use, for the run's start-up line."""
        out = []
        for name, sink in self.sinks.items():
            out.append(
                f"TensorBoard in {sink.folder}/"
                if name == "tensorboard"
                else f"MLflow at {sink.client.tracking_uri}"
            )
        return out

    def _each(self, call: Callable[[Any], None]) -> None:
        for name, sink in list(self.sinks.items()):
            try:
                call(sink)
            except Exception as e:
                self.warn(f"tracking: {name} is off for the rest of this run ({type(e).__name__}: {e})")
                del self.sinks[name]
                discard = getattr(sink, "discard", None)
                if discard is not None:
                    discard()

    def _start(self, number: int, params: dict[str, Any]) -> None:
        if number not in self.written:
            self.written[number] = set()
            self._each(lambda s: s.start(number, params))

    def epoch(self, number: int, params: dict[str, Any], result: dict[str, Any]) -> None:
        """One epoch's result of trial `number` (`result` holds `epoch` and the metrics)."""
        epoch = result.get("epoch")
        if not isinstance(epoch, int | float) or isinstance(epoch, bool):
            return
        self._start(number, params)
        epoch = int(epoch)
        if epoch in self.written[number]:
            return
        metrics = {k: v for k in EPOCH_METRICS if (v := _finite(result.get(k))) is not None}
        if metrics:
            self.written[number].add(epoch)
            self._each(lambda s: s.epoch(number, epoch, metrics))

    def end(self, number: int, params: dict[str, Any], status: str, attrs: dict[str, Any]) -> None:
        """Trial `number` was told: the epochs of its curve not written yet, then its final metrics."""
        self._start(number, params)
        for record in attrs.get("curve") or []:
            if isinstance(record, dict):
                self.epoch(number, params, record)
        final = {k: v for k in FINAL_METRICS if (v := _finite(attrs.get(k))) is not None}
        self._each(lambda s: s.end(number, status, final))
        self.written.pop(number, None)

    def close(self) -> None:
        self._each(lambda s: s.close())
