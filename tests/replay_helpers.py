"""Benchmark tables made by hand for replay tests: every row's curve chosen by the test, no training."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from icbench.report.table import COLUMNS, experiment_of, write_frame
from icbench.search import space as sp
from icbench.search.checks import check_study
from icbench.search.propose import Proposer
from icbench.search.schema import LoadedStudy

#: (val_acc per epoch, epoch time per epoch) of one row, from (placement, wld, seed).
Curve = Callable[[str, bool, int], tuple[list[float], list[float]]]


def make_table(path: Path, loaded: LoadedStudy, seeds: list[int], curve: Curve, setup_s: float = 1.0) -> Path:
    """A table holding every candidate of `loaded`'s space x `seeds`, with the curves `curve` gives
    (`loaded`: a live study of the same experiment; its `seed` parameter, if any, is ignored).

    Each row's wall time is its set-up time `setup_s` plus its epoch times, so the replay's clock is known
    to the test exactly.
    """
    import pandas as pd

    checked = check_study(loaded)
    proposer = Proposer(loaded, checked)
    rows, seen, candidates = [], set(), []
    for params in sp.enumerate_points(loaded.space, checked.mask_len):
        cand = proposer.candidate(optuna.trial.FixedTrial(params))
        cost, placement = proposer.cost(cand)
        wld = bool(cand["wld"]["enabled"])
        params = {k: v for k, v in params.items() if k != "seed"}
        for seed in seeds:
            if (placement, wld, seed) in seen:
                continue
            seen.add((placement, wld, seed))
            candidates.append(cand)
            acc, times = curve(placement, wld, seed)
            rows.append({
                "row": json.dumps({**params, "seed": seed}, sort_keys=True), "placement": placement,
                "unit": placement.split(":")[0], "wld": wld, "seed": seed, "status": "complete",
                "val_acc": acc[-1], "test_acc": acc[-1] - 0.01, "test_evaluated": "end of training",
                "macs": float(cost["macs"]), "params": float(cost["params"]),
                "params_trainable": float(cost["params_trainable"]), "latency_ms": 1.0,
                "family": cand["family"], "size": cand["size"], "n_sites": 7.0,
                "n_unit_sites": float(placement.split(":")[1].count("1")), "teacher_val_acc": None,
                "epochs": float(len(acc)), "val_acc_curve": acc, "train_loss_curve": [1.0] * len(acc),
                "epoch_time_s_curve": times, "train_time_s": sum(times), "wall_time_s": setup_s + sum(times),
                "start_time": "2026-12-01 00:00:00", "machine": "{}", "versions": "{}", "trial": len(rows),
            })  # fmt: skip
    frame = pd.DataFrame(rows, columns=[c for c in COLUMNS if c in rows[0]])
    shared: dict[str, Any] = {
        "study": "hand-made",
        "fingerprint": {},
        "experiment": experiment_of(candidates[0]),
    }
    write_frame(frame, shared, path)
    return path
