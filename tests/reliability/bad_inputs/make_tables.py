"""Writes the benchmark-table files of this corpus (they are committed; run again only to change them).

Each is cut from a real table (`benchmarks/results/table_pilot/`, written by `icbench tabulate`), with
its metadata kept: `two_seeds` (2 seeds, 4 placements: a table `estimate` can use), `one_seed`, and
copies without a column an estimate or an estimator reads (`no_val_acc`, `no_val_acc_curve`).
`not_parquet.parquet` is a text file.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent / "tables"
SOURCE = Path(__file__).resolve().parents[3] / "benchmarks/results/table_pilot/r8_w0.25_e4_val1500.parquet"


def main() -> None:
    HERE.mkdir(exist_ok=True)
    table = pq.read_table(SOURCE)
    placements = sorted(set(table.column("placement").to_pylist()))[:4]
    keep = pc.and_(pc.is_in(table.column("placement"), pa.array(placements)), pc.less(table.column("seed"), 2))
    two = table.filter(keep)
    pq.write_table(two, HERE / "two_seeds.parquet")
    pq.write_table(two.filter(pc.equal(two.column("seed"), 0)), HERE / "one_seed.parquet")
    pq.write_table(two.drop_columns(["val_acc"]), HERE / "no_val_acc.parquet")
    pq.write_table(two.drop_columns(["val_acc_curve"]), HERE / "no_val_acc_curve.parquet")
    (HERE / "not_parquet.parquet").write_text("placement,seed,val_acc\nic:01,0,0.9\n")


if __name__ == "__main__":
    main()
