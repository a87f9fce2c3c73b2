"""The `icbench` command (also `python -m icbench` and `python run_study.py`): run / validate a study, list
a family's sites, build or compare reports, confirm, tabulate.

icbench run studies/quickstart.yaml          # run, or resume, a study; report at the end
icbench run studies/quickstart.yaml --dry-run
icbench sites resnet_cifar --size resnet20 --image-size 32 --in-chans 3
icbench report studies/quickstart.yaml
icbench compare studies/a.yaml studies/b.yaml
icbench confirm studies/quickstart.yaml --seeds 5   # front + basic networks x 5 fresh seeds
icbench tabulate studies/icbench_resnet8_mnist5k.yaml  # every candidate x seed -> tables/*.parquet
icbench run studies/icbench_replay.yaml                # a search replayed on that table, in seconds
icbench estimate tables/icbench_v2.parquet --estimators params,val_acc_e1,synflow  # cheap estimators vs the table

Bad input of any kind ends with one line on stderr and exit status 2; a run stopped early, 3.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from icbench.errors import ConfigError, IcbenchError

PROG = "icbench"


def _kv(items: list[str]) -> dict[str, object]:
    import yaml

    out: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise IcbenchError(f"expected KEY=VALUE, got {item!r}")
        out[key] = yaml.safe_load(value)
    return out


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The command's argument parser (every subcommand and option)."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
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
    p.add_argument(
        "--pilot", type=int, default=None, metavar="N",
        help="train only N placements drawn at random (every unit and seed, and the basic network) and "
        "write tables/<study>.pilot.parquet: its report shows whether the full table would carry signal",
    )
    p.add_argument("--pilot-seed", type=int, default=0, help="which placements a pilot draws")
    p.add_argument("--no-report", action="store_true")
    p.add_argument("--set", dest="arg", action="append", default=[], help="override KEY=VALUE (dotted key)")
    p = sub.add_parser(
        "estimate", help="score a table's candidates with cheap estimators and measure them against the table"
    )
    p.add_argument("table", help="a benchmark table (.parquet) from `tabulate`, with at least 2 seeds")
    p.add_argument(
        "--estimators", default=None,
        help="comma-separated estimator names (default: every registered one); an unknown name lists the valid ones",
    )
    p.add_argument("--repeats", type=int, default=3, help="repeats, one per table seed held out (default 3)")
    p.add_argument(
        "--workers", type=int, default=1,
        help="processes scoring at once, one torch thread each, as a table's rows are trained (default 1)",
    )  # fmt: skip
    p.add_argument("--out", default=None, help="report folder (default: reports/<table stem>/)")
    return parser


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """Parse `argv` (default: the process's arguments), run the subcommand, return the exit status."""
    args = build_parser(prog).parse_args(argv)

    try:
        return dispatch(args, _kv(getattr(args, "arg", [])))
    except IcbenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def dispatch(args: argparse.Namespace, kv: dict[str, Any]) -> int:
    """Run a parsed subcommand; `kv` holds its KEY=VALUE options (`--set` overrides or `--arg`s)."""
    return {
        "run": lambda a: _run(a, kv),
        "validate": lambda a: _validate(a, kv),
        "sites": lambda a: _sites(a, kv),
        "report": _report,
        "compare": _compare,
        "confirm": lambda a: _confirm(a, kv),
        "tabulate": lambda a: _tabulate(a, kv),
        "estimate": _estimate,
    }[args.command](args)


def _run(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    if args.dry_run:
        return _validate(args, overrides)
    from icbench.search import run_study

    if getattr(args, "replay", None):  # a replay is another experiment: its own study, `<name>.replay`
        from icbench.search import load_study

        overrides = {
            "execution.backend": "replay",
            "execution.table": str(Path(args.replay).expanduser().resolve()),
            "name": f"{load_study(args.study).config.name}.replay",
            **overrides,
        }
    run = run_study(args.study, report=not args.no_report, overrides=overrides)
    return 3 if run.stop_reason else 0


def _validate(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    from icbench.search import dry_run

    dry_run(args.study, overrides)
    return 0


def _sites(args: argparse.Namespace, strategy_args: dict[str, Any]) -> int:
    from icbench.cost import measure_cost
    from icbench.families import build_model
    from icbench.placement import apply, format_site_table, make_placement, sites

    model = build_model(
        args.family, args.size, num_classes=args.num_classes, in_chans=args.in_chans,
        image_size=args.image_size, width=args.width,
    )  # fmt: skip
    shape = (args.in_chans, args.image_size, args.image_size)
    site_list = sites(model, shape, family=args.family)
    placement = None
    if args.strategy:
        placement = make_placement(site_list, args.strategy, args.unit, **strategy_args)
    print(format_site_table(site_list, placement))
    basic = measure_cost(model, shape, latency=False)
    print(
        f"\nbasic network: {basic.macs / 1e6:.3f} MMac, {basic.params / 1e6:.4f} M params (FLOPs = 2 x MACs)"
    )
    if placement is not None:
        cost = measure_cost(apply(model, placement, site_list), shape, latency=False)
        print(
            f"placement {placement.canonical}: {cost.macs / 1e6:.3f} MMac, {cost.params / 1e6:.4f} M params"
        )
    return 0


def _study_location(study: str) -> tuple[str, str, Path, str | None]:
    """(storage URL, study name, report folder, study file) for a study file path."""
    from icbench.search import load_study
    from icbench.search.storage import resolve_url, storage_url

    if not Path(study).exists():
        raise IcbenchError(f"study file not found: {study}")
    loaded = load_study(study)
    try:
        url = resolve_url(storage_url(loaded))  # a missing database driver is one line naming the extra
    except ConfigError as e:
        raise ConfigError(e.detail, source=study, field=e.field) from None
    return (
        url,
        loaded.config.name,
        Path(loaded.config.reports_dir) / loaded.config.name,
        study,
    )


def _report(args: argparse.Namespace) -> int:
    """A study file's report, or a benchmark table's (a `.parquet` path) into reports/<table stem>/."""
    given = getattr(args, "out", None)
    if args.study.endswith(".parquet"):
        from icbench.report.bench import build_bench_report

        table_out = Path(given) if given else Path("reports") / Path(args.study).stem
        build_bench_report(args.study, table_out)
        print(f"table report written to {table_out}/ (bench.md)")
        return 0
    from icbench.report import build_report

    url, name, out, study_file = _study_location(args.study)
    out = Path(given) if given else out
    build_report(url, name, out, study_file=study_file)
    print(f"report written to {out}/")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from icbench.report import compare_studies

    url_a, name_a, out_a, _ = _study_location(args.study_a)
    url_b, name_b, _, _ = _study_location(args.study_b)
    out = Path(args.out) if args.out else out_a.parent / f"compare-{name_a}-vs-{name_b}"
    compare_studies(url_a, name_a, url_b, name_b, out)
    print(f"comparison written to {out}/")
    return 0


def _tabulate(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    """Train every candidate x seed of a finite space (resumable) and write its benchmark table."""
    from icbench.search.tabulate import tabulate

    run = tabulate(
        args.study, out=args.out, report=not args.no_report, overrides=overrides, pilot=args.pilot,
        pilot_seed=args.pilot_seed,
    )
    return 3 if run.stop_reason else 0


def _estimate(args: argparse.Namespace) -> int:
    """Score a table's candidates with cheap estimators and write estimators.md beside its report."""
    from icbench.estimators.run import DEFAULT, estimate

    names = [n.strip() for n in args.estimators.split(",") if n.strip()] if args.estimators else list(DEFAULT)
    if args.repeats < 1:
        raise ConfigError(f"--repeats must be at least 1 (got {args.repeats})", field="--repeats")
    if args.workers < 1:
        raise ConfigError(f"--workers must be at least 1 (got {args.workers})", field="--workers")
    md = estimate(args.table, names, repeats=args.repeats, out_dir=args.out, workers=args.workers)
    print(f"estimators written to {md}")
    return 0


def _confirm(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    """Retrain the study's front and basic networks with fresh seeds (a linked `<study>.confirm` study)."""
    from icbench.search.confirm import confirm_study

    run = confirm_study(args.study, args.seeds, report=not args.no_report, overrides=overrides)
    return 3 if run.stop_reason else 0
