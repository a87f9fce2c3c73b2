#!/usr/bin/env python
"""icbench command line: run / validate a study, list a family's sites, build or compare reports.

python run_study.py run studies/quickstart.yaml          # run, or resume, a study; report at the end
python run_study.py run studies/quickstart.yaml --dry-run
python run_study.py sites resnet_cifar --size resnet20 --image-size 32 --in-chans 3
python run_study.py report studies/quickstart.yaml
python run_study.py compare studies/a.yaml studies/b.yaml
python run_study.py confirm studies/quickstart.yaml --seeds 5   # front + basic networks x 5 fresh seeds
python run_study.py tabulate studies/icbench_resnet8_mnist5k.yaml  # every candidate x seed -> tables/*.parquet
python run_study.py run studies/icbench_replay.yaml                # a search replayed on that table, in seconds
"""

from __future__ import annotations

import argparse
import sys

from icbench.errors import IcbenchError


def _kv(items: list[str]) -> dict[str, object]:
    import yaml

    out: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise IcbenchError(f"expected KEY=VALUE, got {item!r}")
        out[key] = yaml.safe_load(value)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="run_study.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run or resume a study")
    p.add_argument("study")
    p.add_argument(
        "--dry-run", action="store_true", help="validate, list sites and the MACs range; train nothing"
    )
    p.add_argument("--no-report", action="store_true")
    p.add_argument(
        "--replay", metavar="TABLE", default=None,
        help="replay the study against a benchmark table (as study `<name>.replay`): no training",
    )  # fmt: skip
    p.add_argument("--set", dest="arg", action="append", default=[], help="override KEY=VALUE (dotted key)")
    p = sub.add_parser("validate", help="same as run --dry-run")
    p.add_argument("study")
    p.add_argument("--set", dest="arg", action="append", default=[], help="override KEY=VALUE (dotted key)")
    p = sub.add_parser("sites", help="site table of a family, and the cost of a placement")
    p.add_argument("family")
    p.add_argument("--size")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--in-chans", type=int, default=3)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--unit", default="ic")
    p.add_argument("--strategy", default=None, help="show this placement's units and cost")
    p.add_argument("--arg", action="append", default=[], help="strategy argument KEY=VALUE (repeatable)")
    p = sub.add_parser("report", help="(re)build a study's report, or a benchmark table's (a .parquet file)")
    p.add_argument("study", help="study file, or a table file (.parquet) from `tabulate`")
    p.add_argument("--out", default=None, help="report folder (default: reports/<study or table name>)")
    p = sub.add_parser("compare", help="overlay two studies' fronts")
    p.add_argument("study_a")
    p.add_argument("study_b")
    p.add_argument("--out", default=None)
    p = sub.add_parser(
        "confirm", help="retrain the study's Pareto front and basic networks with fresh seeds (resumable)"
    )
    p.add_argument("study")
    p.add_argument("--seeds", type=int, default=None, help="seeds per candidate (default: confirm_seeds, 5)")
    p.add_argument("--no-report", action="store_true")
    p.add_argument("--set", dest="arg", action="append", default=[], help="override KEY=VALUE (dotted key)")
    p = sub.add_parser(
        "tabulate", help="train every candidate x seed of a finite space and write its table (resumable)"
    )
    p.add_argument("study")
    p.add_argument("--out", default=None, help="table file (default: tables/<study>.parquet)")
    p.add_argument("--no-report", action="store_true")
    p.add_argument("--set", dest="arg", action="append", default=[], help="override KEY=VALUE (dotted key)")
    args = parser.parse_args(argv)

    try:
        from icbench import cli

        return cli.dispatch(args, _kv(getattr(args, "arg", [])))
    except IcbenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
