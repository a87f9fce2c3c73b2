"""benchmarks/samplers.py runs end to end on a small hand-made table (the real one is in tables/)."""

from __future__ import annotations

import sys
from pathlib import Path

from replay_helpers import make_table

from icbench.search import load_study
from icbench.search.schema import write_study_files

REPO = Path(__file__).resolve().parents[2]
EXPERIMENT = """
dataset: {name: synthetic, kwargs: {n: 400, image_size: 16, in_chans: 1}}
family: {name: resnet_cifar, size: resnet8, width: 0.25}
strategy: mask
budget: {epochs: 2}
"""
SPACE = """
params:
  unit: {type: categorical, choices: [conv, ic, ic_dual]}
  blocks: {type: mask, over: blocks}
"""


def _curve(placement: str, wld: bool, seed: int) -> tuple[list[float], list[float]]:
    acc = 0.7 + 0.02 * placement.split(":")[1].count("1") + 0.003 * seed
    return [acc - 0.1, acc], [1.0, 1.0]


def test_samplers_benchmark_smoke(tmp_path: Path, capsys) -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    import samplers

    live = write_study_files(tmp_path, "live", EXPERIMENT, SPACE)
    table = make_table(tmp_path / "t.parquet", load_study(live), [0, 1, 2], _curve)
    study = write_study_files(
        tmp_path, "r", EXPERIMENT + f"n_trials: 12\nexecution: {{backend: replay, table: {table}}}\n", SPACE
    )
    rc = samplers.main(
        ["--smoke", "--study", str(study), "--table", str(table), "--configs", "random,tpe+mo_asha",
         "--workers", "1", "--out", str(tmp_path / "out"), "--estimators", "params", "--top", "3"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0
    assert "| random |" in out and "| tpe+mo_asha |" in out
    assert "2 seeds x 4 configurations" in out and "| params top-3 |" in out and "| params+tpe+mo_asha |" in out
    assert "| claimed (one seed) | confirmed (fresh seeds) |" in out


def test_what_a_user_takes_away_claimed_and_confirmed() -> None:
    """A search that saw a lucky seed claims more than the truth; confirming on the other seeds does not."""
    import numpy as np

    sys.path.insert(0, str(REPO / "benchmarks"))
    import samplers

    by_seed = {("ic:01", False): {0: 0.95, 1: 0.80, 2: 0.80}, ("conv:00", False): {0: 0.85, 1: 0.85, 2: 0.85}}
    truth_front = np.array([[0.85, 100.0]])  # true means: ic 0.85 at 110 MACs is dominated by conv at 100
    ref = (0.80, 130.0)
    run = {"trials": [
        {"state": "COMPLETE", "placement": "ic:01", "wld": False, "acc": 0.95, "macs": 110.0, "seed": 0},
    ]}  # fmt: skip
    out = samplers.taken_away(run, by_seed, truth_front, ref)
    assert out["claimed"] < 0  # 0.95 claimed against a true best of 0.85
    assert out["confirmed"] == 1.0  # on seeds 1 and 2 it is 0.80: the reference, no hypervolume
