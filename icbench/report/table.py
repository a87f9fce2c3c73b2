"""A benchmark table (IC-Bench) from a tabulated study's storage, and reading one back.

One row per (candidate, seed), plain columns and list columns, Parquet, readable with plain pandas
(`pd.read_parquet`); the experiment every row shares (data, network, budget, recipe, WLD) is in the file's
metadata under `icbench` and in the schema file written beside it (`<table>.md`). `COLUMNS` documents
every column; the schema file is generated from it, so the two cannot drift.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from icbench.errors import IcbenchError
from icbench.redact import mask_url
from icbench.report.load import load_study, open_storage, with_retries
from icbench.study_attrs import FINGERPRINT_ATTR

#: Every column of a table, in order, with its meaning; `param_<name>` columns (one per search-space
#: parameter, a mask as its booleans) follow `seed`.
COLUMNS: dict[str, str] = {
    "row": "row key: the trial's search-space parameters as sorted JSON (unique per row)",
    "placement": "canonical placement string `unit:bits`, one bit per eligible site (basic: conv:000...)",
    "unit": "unit at the placed sites (`conv` for the basic network)",
    "wld": "trained with weak logit distillation from the basic network",
    "seed": "training seed (initialisation, data order); the data split is fixed",
    "status": "complete, or why the row has no final accuracy (diverged, failed, ...)",
    "val_acc": "validation accuracy after the last epoch (fraction)",
    "test_acc": "test accuracy after the last epoch (fraction), evaluated once at the end of training",
    "test_evaluated": "when the test accuracy was measured",
    "macs": "multiply-accumulates of one forward pass on one image (exact count)",
    "params": "parameters",
    "params_trainable": "trainable parameters",
    "latency_ms": "inference latency of one image on the training device (ms)",
    "family": "network family",
    "size": "network size within the family",
    "n_sites": "convolution sites of the network",
    "n_unit_sites": "sites that hold the unit (0 for the basic network)",
    "unit_delta": "unit liveness: median over the unit sites of δ = ‖unit(x) − conv(x)‖ / ‖conv(x)‖ on the "
    "first 256 validation images after training (how far the units moved from the plain convolution); "
    "empty for the basic network",
    "unit_deltas": "δ per unit site after training (JSON: module path -> δ); empty for the basic network",
    "teacher_val_acc": "validation accuracy of the WLD teacher (the basic network), when WLD is on",
    "epochs": "epochs trained",
    "val_acc_curve": "validation accuracy after each epoch (list, one per epoch)",
    "train_loss_curve": "mean training loss of each epoch (list)",
    "epoch_time_s_curve": "wall time of each epoch, evaluation included (list, seconds)",
    "train_time_s": "wall time of the training loop (s)",
    "wall_time_s": "wall time of the whole trial: data, build, cost, teacher, training, test (s)",
    "start_time": "when the trial started (UTC, ISO 8601)",
    "machine": "the training machine (JSON: CPU, cores, threads, GPU, CUDA, precision)",
    "versions": "package versions of the run (JSON)",
    "trial": "trial number in the study's Optuna storage",
}
#: Candidate fields that do not change what a row measures (paths, threads, the device the table was
#: made on) or that the lookup key holds (network, WLD on/off, seed).
NOT_COMPARED = (
    "unit", "strategy", "strategy_args", "placement", "seed", "cache_dir", "dataset_root", "num_threads",
    "device", "latency",
)  # fmt: skip


def experiment_of(cand: dict[str, Any]) -> dict[str, Any]:
    """What every row of one table shares: a candidate less its network, seed, WLD switch and paths."""
    out = {k: v for k, v in cand.items() if k not in NOT_COMPARED}
    out["wld"] = {k: v for k, v in (cand.get("wld") or {}).items() if k != "enabled"}
    return json.loads(json.dumps(out, default=str))


META_KEY = b"icbench"
#: Trial attribute naming the table row a trial trains (its parameters as sorted JSON).
ROW_ATTR = "table_row"


def _curve(curve: Any, key: str) -> list[float]:
    if not isinstance(curve, list):
        return []
    return [float(e[key]) if e.get(key) is not None else math.nan for e in curve if isinstance(e, dict)]


def table_frame(url: str, study_name: str, rows: Sequence[str] | None = None) -> tuple[pd.DataFrame, dict]:
    """(table, shared experiment) of a tabulated study: the settling trial of each row.

    Args:
        rows: the row keys the table should hold, in order (`tabulate.table_rows`); None: every row
            with a trial. A row without a settling trial (not run yet) is left out.
    """
    data = load_study(url, study_name)
    storage, close = open_storage(url)
    try:
        study_id = with_retries(lambda: storage.get_study_id_from_name(study_name))
        frozen = {t.number: t for t in with_retries(lambda: storage.get_all_trials(study_id, deepcopy=False))}
    finally:
        close()
    trials = data.trials
    assert trials is not None
    col = f"attr_{ROW_ATTR}"
    if col not in trials:
        raise IcbenchError(f"study {study_name!r} in {mask_url(url)} is not a table (no trial has `{ROW_ATTR}`)")
    settled = trials[trials[col].notna() & ~trials["status"].isin(["interrupted", "duplicate", "waiting"])]
    settled = settled[settled["state"] != "WAITING"]
    by_row = settled.drop_duplicates(col, keep="last").set_index(col, drop=False)
    order = [r for r in rows if r in by_row.index] if rows is not None else list(by_row.index)
    params = sorted(c for c in trials.columns if c.startswith("param_"))
    out, candidates = [], []
    for key in order:
        t = by_row.loc[key]
        attrs = frozen[int(t["number"])].user_attrs
        machine = data.machines.get(t["machine"]) if isinstance(t["machine"], str) else None
        row: dict[str, Any] = {
            "row": key,
            "placement": t["placement"],
            "unit": t["unit"],
            "wld": bool(t["wld"]),
            "seed": int(t["seed"]),
            **{p: t[p] for p in params},
            "status": t["status"],
            "val_acc": t["val_acc"],
            "test_acc": t["test_acc"],
            "test_evaluated": t["test_evaluated"],
            "macs": t["macs"],
            "params": t["params"],
            "params_trainable": t["params_trainable"],
            "latency_ms": t["latency_ms"],
            "family": t["family"],
            "size": t["size"],
            "n_sites": t["n_sites"],
            "n_unit_sites": t["n_unit_sites"],
            "unit_delta": t.get("unit_delta"),
            "unit_deltas": json.dumps(attrs.get("unit_deltas"), sort_keys=True)
            if attrs.get("unit_deltas")
            else None,
            "teacher_val_acc": t["teacher_val_acc"],
            "epochs": t["epochs_done"],
            "val_acc_curve": _curve(t["curve"], "val_acc"),
            "train_loss_curve": _curve(t["curve"], "train_loss"),
            "epoch_time_s_curve": _curve(t["curve"], "epoch_time_s"),
            "train_time_s": t["train_time_s"],
            "wall_time_s": t["wall_time_s"],
            "start_time": str(t["start_time"]),
            "machine": json.dumps(machine or {}, sort_keys=True),
            "versions": json.dumps(attrs.get("versions") or {}, sort_keys=True),
            "trial": int(t["number"]),
        }
        out.append(row)
        candidates.append(attrs.get("candidate") or {})
    columns = [*list(COLUMNS)[:5], *params, *list(COLUMNS)[5:]]
    frame = pd.DataFrame(out, columns=columns)
    return frame, shared_experiment(data.user_attrs, candidates)


def shared_experiment(user_attrs: dict[str, Any], candidates: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What every row of a table shares: the study's fingerprinted settings, and `experiment`, the part
    of every row's candidate that is not its network, seed or WLD switch (data, network family and
    width, budget, recipe, WLD settings: what a replay must match), or None if the rows differ there."""
    shared = {json.dumps(experiment_of(c), sort_keys=True, default=str) for c in candidates if c}
    return {
        "study": user_attrs.get("study_file"),
        "fingerprint": user_attrs.get(FINGERPRINT_ATTR),
        "space_yaml": user_attrs.get("space_yaml"),
        "experiment": json.loads(shared.pop()) if len(shared) == 1 else None,
    }


def write_table(url: str, study_name: str, path: str | Path, rows: Sequence[str] | None = None) -> int:
    """Write the table of a tabulated study to `path` (Parquet) and its schema to `path` with `.md`;
    returns the number of rows written."""
    frame, shared = table_frame(url, study_name, rows)
    return write_frame(frame, shared, path)


def write_frame(frame: pd.DataFrame, shared: dict[str, Any], path: str | Path) -> int:
    """Write a table (rows and shared experiment) atomically, with its schema file beside it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrow = pa.Table.from_pandas(frame, preserve_index=False)
    meta = {**(arrow.schema.metadata or {}), META_KEY: json.dumps(shared, default=str).encode()}
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(arrow.replace_schema_metadata(meta), tmp)
    tmp.replace(path)
    path.with_suffix(".md").write_text(schema_text(frame, shared, path.name))
    return len(frame)


def read_table(path: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(rows, shared experiment) of a table file.

    Raises:
        IcbenchError: the file is missing or not an icbench table.
    """
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise IcbenchError(f"table not found: {path}")
    try:
        arrow = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for a file that is not Parquet
        raise IcbenchError(f"{path} is not a Parquet table: {e}") from None
    meta = (arrow.schema.metadata or {}).get(META_KEY)
    if meta is None or "placement" not in arrow.column_names:
        raise IcbenchError(f"{path} is not an icbench table (no `icbench` metadata or `placement` column)")
    return arrow.to_pandas(), json.loads(meta)


def schema_text(frame: pd.DataFrame, shared: dict[str, Any], name: str) -> str:
    """The short schema description written beside a table."""
    fp = shared.get("fingerprint") or {}
    n_cand = (
        frame.drop(columns=["seed", "row"])
        .astype(str)
        .drop_duplicates(
            [c for c in frame.columns if c.startswith("param_") and c != "param_seed"] or ["placement", "wld"]
        )
    )
    seeds = sorted({int(s) for s in frame["seed"]}) if len(frame) else []
    machines = sorted(set(frame["machine"])) if len(frame) else []
    lines = [
        f"# {name}",
        "",
        f"{len(frame)} rows: {len(n_cand)} candidates x seeds {seeds}; "
        f"{int((frame['status'] == 'complete').sum()) if len(frame) else 0} complete.",
        "Read it with plain pandas: `pd.read_parquet(path)`; list columns are per-epoch curves.",
        "The experiment every row shares is in the file's metadata (key `icbench`, JSON) and below.",
        "",
        "| column | meaning |",
        "|---|---|",
        *[f"| `{c}` | {COLUMNS.get(c, 'search-space parameter (a mask appears as one boolean per site)')} |"
          for c in frame.columns],
        "",
        "## Shared experiment",
        "",
        f"- study file: `{shared.get('study')}`",
        *[f"- `{k}`: `{json.dumps(v, default=str)}`" for k, v in sorted(fp.items()) if k != "space"],
        "",
        "## Machines",
        "",
        *[f"- `{m}`" for m in machines],
        "",
    ]  # fmt: skip
    return "\n".join(lines)
