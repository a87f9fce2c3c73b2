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
         "--workers", "1", "--out", str(tmp_path / "out")]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0
    assert "| random |" in out and "| tpe+mo_asha |" in out
    assert "2 seeds x 2 configurations" in out
