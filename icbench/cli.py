"""The `icbench` command (also `python -m icbench` and `python run_study.py`).

icbench run studies/quickstart.yaml          # run, or resume, a study; report at the end
icbench run studies/quickstart.yaml --dry-run
icbench validate studies/quickstart.yaml     # the same check as --dry-run
icbench sites resnet_cifar --size resnet20 --image-size 32 --in-chans 3
icbench report studies/quickstart.yaml
icbench compare studies/a.yaml studies/b.yaml
icbench confirm studies/quickstart.yaml --seeds 5   # front + basic networks x 5 fresh seeds
icbench tabulate studies/icbench_resnet8_mnist5k.yaml  # every candidate x seed -> tables/*.parquet
icbench run studies/icbench_replay.yaml                # a search replayed on that table, in seconds
icbench estimate tables/icbench_v2.parquet --estimators params,val_acc_e1,synflow  # cheap estimators vs the table
icbench data cifar10 --root data                       # download CIFAR-10 (needs internet)
icbench completion bash                                # shell completion script

Bad input of any kind ends with one line on stderr and exit status 2; a run stopped early, 3; a download
that cannot reach its server, 1.

This module imports only the standard library and `icbench.errors` at import time. A study file is read
and checked against the schema and the registered names (`icbench.search.quick`) before torch, Ray or
Optuna are imported, so a typo is refused in well under a second; every sub-command imports what it
needs when it runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from icbench.errors import ConfigError, IcbenchError, Interrupted

PROG = "icbench"
DESCRIPTION = (
    "Architecture search and benchmarks for the Inter-layer Collision (IC) unit: run, validate, confirm "
    "and tabulate studies; list a family's sites; build and compare reports; score cheap estimators; "
    "download datasets."
)
EPILOG = (
    "Exit status: 0 done; 1 a download failed; 2 bad input (one line on stderr naming the file and field, "
    "before anything is trained or written); 3 a run stopped early (failure cap, exhausted space). "
    "`icbench COMMAND -h` describes a command's options."
)
#: The packages `--version` names (read from their installed metadata: nothing is imported).
VERSIONED = ("torch", "torchvision", "ray", "optuna", "pydantic")

Echo = Callable[[str], None]


# ------------------------------------------------------------------------------------------- parser


def _kv(items: list[str]) -> dict[str, object]:
    import yaml

    out: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise IcbenchError(f"expected KEY=VALUE, got {item!r}")
        out[key] = yaml.safe_load(value)
    return out


def _verbosity(top: bool) -> argparse.ArgumentParser:
    """`-q`/`-v`, accepted before the sub-command (`top`) and after it; after it, unset means 'as before'."""
    p = argparse.ArgumentParser(add_help=False)
    default: Any = 0 if top else argparse.SUPPRESS
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "-q", "--quiet", dest="verbosity", action="store_const", const=-1, default=default,
        help="print only errors and the final line(s) (no progress)",
    )  # fmt: skip
    g.add_argument(
        "-v", "--verbose", dest="verbosity", action="store_const", const=1, default=default,
        help="print more: the study as read with its defaults (validate), tracebacks of errors",
    )  # fmt: skip
    return p


class _Version(argparse.Action):
    """`--version`: the versions that matter, computed only when asked for (nothing heavy is imported)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kw: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)

    def __call__(self, parser: argparse.ArgumentParser, ns: argparse.Namespace, *_: Any) -> None:
        print(version_text())
        parser.exit()


def version_text() -> str:
    """icbench's version and those of torch (with the CUDA it was built for), Ray, Optuna, ..., Python.

    Read from installed package metadata and torch's `version.py` as text: nothing is imported, so it
    answers in a fraction of a second. Whether a GPU is usable is a run-time question (`icbench validate`
    checks a study's devices).
    """
    import platform
    from importlib import metadata

    from icbench import __version__

    lines = [f"icbench {__version__}"]
    for name in VERSIONED:
        try:
            v = metadata.version(name)
        except metadata.PackageNotFoundError:
            v = "not installed"
        if name == "torch" and v != "not installed":
            cuda = _torch_cuda_build()
            v += f" (CUDA {cuda})" if cuda else " (CPU-only build)"
        lines.append(f"{name} {v}")
    lines.append(f"python {platform.python_version()} ({sys.executable})")
    return "\n".join(lines)


def _torch_cuda_build() -> str | None:
    """The CUDA version torch was built for, read from `torch/version.py` without importing torch."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "version.py"
    try:
        tree = ast.parse(path.read_text())
    except (OSError, SyntaxError):
        return None
    for node in tree.body:
        target = getattr(node, "target", None) or (getattr(node, "targets", None) or [None])[0]
        if isinstance(target, ast.Name) and target.id == "cuda" and getattr(node, "value", None) is not None:
            try:
                value = ast.literal_eval(node.value)  # type: ignore[arg-type]
            except ValueError:
                return None
            return value if isinstance(value, str) else None
    return None


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The command's argument parser (every sub-command and option, each with its help text)."""
    parser = argparse.ArgumentParser(
        prog=prog, description=DESCRIPTION, epilog=EPILOG, parents=[_verbosity(top=True)]
    )
    parser.add_argument("--version", action=_Version, help="print the versions of icbench, torch (and its CUDA build), Ray, Optuna, pydantic and Python, and exit")  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = [_verbosity(top=False)]

    def add(name: str, help: str, description: str | None = None) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=description or help, parents=common)

    def study_arg(p: argparse.ArgumentParser, what: str = "the study file (YAML, e.g. studies/quickstart.yaml)") -> None:
        p.add_argument("study", help=what)

    def set_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--set", dest="arg", action="append", default=[], metavar="KEY=VALUE",
            help="override a setting of the study file by its dotted key, e.g. --set n_trials=4 --set "
            "training.lr=0.05 (repeatable; VALUE is read as YAML)",
        )  # fmt: skip

    def no_report(p: argparse.ArgumentParser, what: str = "the report") -> None:
        p.add_argument("--no-report", action="store_true", help=f"do not write {what} at the end (`icbench report` builds it later)")  # fmt: skip

    p = add("run", "run or resume a study, then write its report",
            "Run a study, or resume it (the same file again continues it), until it has its target number "
            "of trials; then write its report under reports/<study>/.")  # fmt: skip
    study_arg(p)
    p.add_argument("--dry-run", action="store_true", help="check everything the run checks, show the sites and the MACs range of the space; train nothing, write nothing")  # fmt: skip
    no_report(p)
    p.add_argument(
        "--replay", metavar="TABLE", default=None,
        help="replay the study against a benchmark table (as study `<name>.replay`): no training",
    )  # fmt: skip
    set_arg(p)
    p = add("validate", "check a study without running it (the same as run --dry-run)")
    study_arg(p)
    set_arg(p)
    p = add("sites", "site table of a family, and the cost of a placement")
    p.add_argument("family", help="a registered family: mobilenet_v2, resnet, resnet_cifar, torchvision, user, vgg")
    p.add_argument("--size", help="the family's size (e.g. resnet20); default: the family's default size")
    p.add_argument("--width", type=float, default=1.0, help="channel width multiplier (default 1.0)")
    p.add_argument("--in-chans", type=int, default=3, help="input channels (default 3)")
    p.add_argument("--image-size", type=int, default=32, help="input height and width in pixels (default 32)")
    p.add_argument("--num-classes", type=int, default=10, help="output classes (default 10)")
    p.add_argument("--unit", default="ic", help="the unit a --strategy places: conv, ic, ic_dual, se (default ic)")
    p.add_argument("--strategy", default=None, help="show this placement's units and cost (all, stages, first_k, last_k, every_other, kernel, random, mask, none)")  # fmt: skip
    p.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE", help="strategy argument, e.g. --arg k=2 (repeatable)")  # fmt: skip
    p = add("report", "(re)build a study's report, or a benchmark table's (a .parquet file)")
    study_arg(p, "study file, or a table file (.parquet) from `tabulate`")
    p.add_argument("--out", default=None, help="report folder (default: reports/<study or table name>)")
    p = add("compare", "overlay two studies' fronts")
    p.add_argument("study_a", help="the first study file")
    p.add_argument("study_b", help="the second study file")
    p.add_argument("--out", default=None, help="output folder (default: beside the first study's report, compare-<a>-vs-<b>/)")  # fmt: skip
    p = add("confirm", "retrain the study's Pareto front and basic networks with fresh seeds (resumable)")
    study_arg(p)
    p.add_argument("--seeds", type=int, default=None, help="seeds per candidate (default: the study's confirm_seeds, 5)")  # fmt: skip
    no_report(p, "the confirmation report")
    set_arg(p)
    p = add("tabulate", "train every candidate x seed of a finite space and write its table (resumable)")
    study_arg(p)
    p.add_argument("--out", default=None, help="table file (default: tables/<study>.parquet)")
    p.add_argument(
        "--pilot", type=int, default=None, metavar="N",
        help="train only N placements drawn at random (every unit and seed, and the basic network) and "
        "write tables/<study>.pilot.parquet: its report shows whether the full table would carry signal",
    )  # fmt: skip
    p.add_argument("--pilot-seed", type=int, default=0, help="which placements a pilot draws (default 0)")
    no_report(p, "the table's report")
    set_arg(p)
    p = add("estimate", "score a table's candidates with cheap estimators and measure them against the table")
    p.add_argument("table", help="a benchmark table (.parquet) from `tabulate`, with at least 2 seeds")
    p.add_argument(
        "--estimators", default=None,
        help="comma-separated estimator names (default: every registered one); an unknown name lists the valid ones",
    )  # fmt: skip
    p.add_argument("--repeats", type=int, default=3, help="repeats, one per table seed held out (default 3)")
    p.add_argument(
        "--workers", type=int, default=1,
        help="processes scoring at once, one torch thread each, as a table's rows are trained (default 1)",
    )  # fmt: skip
    p.add_argument("--out", default=None, help="report folder (default: reports/<table stem>/)")
    p = add("data", "download a dataset that icbench reads from disk (cifar10, cifar100); needs internet",
            "Download CIFAR-10 or CIFAR-100 with torchvision's downloader into ROOT/cifar-10-batches-py "
            "(or cifar-100-python), the layout `dataset: {name: cifar10, root: ROOT}` reads; the archive "
            "is checked against its MD5. Without network access it fails with one line (exit status 1).")  # fmt: skip
    p.add_argument("dataset", choices=("cifar10", "cifar100"), help="which dataset")
    p.add_argument("--root", default="data", help="folder to download into (default: data)")
    p.add_argument("--url", default=None, help="download the archive from this mirror instead of the dataset's home page")  # fmt: skip
    p = add("completion", "print a shell completion script (bash, zsh, fish)",
            "Print a completion script for the shell, e.g. `eval \"$(icbench completion bash)\"` in ~/.bashrc "
            "(uses argcomplete).")  # fmt: skip
    p.add_argument("shell", choices=("bash", "zsh", "fish"), help="the shell")
    return parser


# ------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """Parse `argv` (default: the process's arguments), run the sub-command, return the exit status."""
    parser = build_parser(prog)
    if "_ARGCOMPLETE" in os.environ:  # shell completion asks; argcomplete answers and exits
        import argcomplete

        argcomplete.autocomplete(parser)
    args = parser.parse_args(argv)
    try:
        return dispatch(args, _kv(getattr(args, "arg", [])))
    except IcbenchError as e:
        from icbench.redact import redact

        if args.verbosity > 0:
            import traceback

            print(redact(traceback.format_exc()), file=sys.stderr, end="")
        print(f"error: {redact(str(e))}", file=sys.stderr)  # never a password, whatever the message
        return 2
    except Interrupted as e:  # SIGINT/SIGTERM during a study command: say so, never "done"; 130 or 143
        print(
            f"interrupted by {e.signal_name}: the run did not finish; running the same command again "
            "continues it (trials with a checkpoint resume from it)",
            file=sys.stderr,
        )
        return e.exit_status
    except Exception as e:  # a full disk is a fault of the machine, not of the input: one line, exit 1
        from icbench.places import disk_full

        full = disk_full(e)
        if full is None:
            raise
        print(f"error: {full}", file=sys.stderr)
        return 1


def entry(prog: str = PROG) -> NoReturn:
    """The command: `main`, then exit without Python's teardown once torch is loaded (`exit_now`)."""
    exit_now(main(prog=prog))


def exit_now(code: int) -> NoReturn:
    """Exit with `code`, skipping the interpreter's teardown after a successful command that loaded torch.

    Python's finalisation frees every module's objects one by one; with torch, Ray and pandas loaded that
    takes seconds (`benchmarks/cli_latency.py` measures it). After a success everything the command wrote
    is closed: the steps of the interpreter's own exit that matter still run (non-daemon threads joined,
    exit handlers such as logging's and Ray's, the standard streams flushed), then the process ends
    (`os._exit`). A failed command (an error, a full disk, an interrupt) may leave files or writers half
    closed, so it keeps Python's whole teardown, as does a light command (a normal exit is quick).
    """
    if code != 0 or "torch" not in sys.modules:
        sys.exit(code)
    import atexit
    import threading

    threading._shutdown()  # type: ignore[attr-defined]  # the interpreter's first step at exit
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`icbench report | head`) or a closed stream
            pass
    os._exit(code)


def dispatch(args: argparse.Namespace, kv: dict[str, Any]) -> int:
    """Run a parsed sub-command; `kv` holds its KEY=VALUE options (`--set` overrides or `--arg`s)."""
    return {
        "run": lambda a: _run(a, kv),
        "validate": lambda a: _validate(a, kv),
        "sites": lambda a: _sites(a, kv),
        "report": _report,
        "compare": _compare,
        "confirm": lambda a: _confirm(a, kv),
        "tabulate": lambda a: _tabulate(a, kv),
        "estimate": _estimate,
        "data": _data,
        "completion": _completion,
    }[args.command](args)


def _echo(args: argparse.Namespace) -> Echo:
    """Where progress lines go: stdout, or nowhere under `-q`."""
    return (lambda _: None) if getattr(args, "verbosity", 0) < 0 else print


def _quick(study: str, overrides: dict[str, Any]) -> Any:
    """The study's schema and registered names, checked before anything heavy is imported."""
    from icbench.search.quick import quick_check

    return quick_check(study, overrides)


def _final(args: argparse.Namespace, run: Any, what: str) -> int:
    """Under `-q`, the one line that says what a run did (otherwise its progress lines have said it)."""
    if args.verbosity < 0:
        where = f"; report {run.report_dir}/" if getattr(run, "report_dir", None) else ""
        stop = f"; stopped early: {run.stop_reason}" if run.stop_reason else ""
        print(
            f"{what} {run.name}: {run.n_complete} complete, {run.n_pruned} pruned, {run.n_failed} failed, "
            f"{run.n_rejected} rejected, {getattr(run, 'n_duplicate', 0)} duplicate{stop}{where} ({run.wall_time_s:.1f} s)"
        )
    return 3 if run.stop_reason else 0


def _run(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    if args.dry_run:
        return _validate(args, overrides)
    if getattr(args, "replay", None):  # a replay is another experiment: its own study, `<name>.replay`
        replay = {"execution.backend": "replay", "execution.table": str(Path(args.replay).expanduser().resolve())}
        overrides = {**replay, "name": f"{_quick(args.study, replay).config.name}.replay", **overrides}
    _quick(args.study, overrides)
    from icbench.search import run_study

    run = run_study(args.study, report=not args.no_report, overrides=overrides, echo=_echo(args))
    return _final(args, run, "study")


def _validate(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    loaded = _quick(args.study, overrides)
    if args.verbosity > 0:
        import yaml

        from icbench.redact import redact

        print(f"# {loaded.study_path}, as read, with every default")
        print(redact(yaml.safe_dump(loaded.config.model_dump(mode="json"), sort_keys=False).rstrip()))
    from icbench.search import dry_run

    dry_run(args.study, overrides, echo=_echo(args))
    if args.verbosity < 0:
        print(f"study {loaded.config.name!r} is valid: dry run, nothing trained, nothing written")
    return 0


def _sites(args: argparse.Namespace, strategy_args: dict[str, Any]) -> int:
    from icbench.names import FAMILY_SIZES, NAMES, unknown_message

    for kind, value, known in (("family", args.family, NAMES["family"]), ("unit", args.unit, NAMES["unit"]),
                               ("strategy", args.strategy, NAMES["strategy"])):  # fmt: skip
        if value is not None and value not in known:
            raise ConfigError(unknown_message(kind, value, known), field=f"--{kind}" if kind != "family" else kind)
    sizes = FAMILY_SIZES[args.family]
    if args.size is not None and sizes is not None and args.size not in sizes:
        raise ConfigError(unknown_message(f"{args.family} size", args.size, sizes), field="--size")

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
    if args.verbosity >= 0:
        print(format_site_table(site_list, placement))
        print()
    basic = measure_cost(model, shape, latency=False)
    print(f"basic network: {basic.macs / 1e6:.3f} MMac, {basic.params / 1e6:.4f} M params (FLOPs = 2 x MACs)")
    if placement is not None:
        cost = measure_cost(apply(model, placement, site_list), shape, latency=False)
        print(
            f"placement {placement.canonical}: {cost.macs / 1e6:.3f} MMac, {cost.params / 1e6:.4f} M params"
        )
    return 0


def _study_location(study: str) -> tuple[str, str, Path, str | None]:
    """(storage URL, study name, report folder, study file) for a study file path."""
    if not Path(study).exists():
        raise IcbenchError(f"study file not found: {study}")
    _quick(study, {})
    from icbench.search import load_study
    from icbench.search.storage import resolve_url, storage_url

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
        if not Path(args.study).is_file():
            raise IcbenchError(f"table not found: {args.study}")
        from icbench.report.bench import build_bench_report

        table_out = Path(given) if given else Path("reports") / Path(args.study).stem
        build_bench_report(args.study, table_out)
        print(f"table report written to {table_out}/ (bench.md)")
        return 0
    url, name, out, study_file = _study_location(args.study)
    from icbench.report import build_report

    out = Path(given) if given else out
    build_report(url, name, out, study_file=study_file)
    print(f"report written to {out}/")
    return 0


def _compare(args: argparse.Namespace) -> int:
    url_a, name_a, out_a, _ = _study_location(args.study_a)
    url_b, name_b, _, _ = _study_location(args.study_b)
    from icbench.report import compare_studies

    out = Path(args.out) if args.out else out_a.parent / f"compare-{name_a}-vs-{name_b}"
    compare_studies(url_a, name_a, url_b, name_b, out)
    print(f"comparison written to {out}/")
    return 0


def _tabulate(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    """Train every candidate x seed of a finite space (resumable) and write its benchmark table."""
    _quick(args.study, overrides)
    from icbench.search.tabulate import tabulate

    run = tabulate(
        args.study, out=args.out, report=not args.no_report, overrides=overrides, pilot=args.pilot,
        pilot_seed=args.pilot_seed, echo=_echo(args),
    )  # fmt: skip
    return _final(args, run, "table study")


def _estimate(args: argparse.Namespace) -> int:
    """Score a table's candidates with cheap estimators and write estimators.md beside its report."""
    from icbench.names import NAMES, unknown_message

    # `--estimators ,` is an empty list, refused by `estimate`: never read as "every estimator"
    names = [n.strip() for n in args.estimators.split(",") if n.strip()] if args.estimators is not None else None
    for name in names or []:
        if name not in NAMES["estimator"]:
            raise ConfigError(unknown_message("estimator", name, NAMES["estimator"]), field="--estimators")
    if args.repeats < 1:
        raise ConfigError(f"--repeats must be at least 1 (got {args.repeats})", field="--repeats")
    if args.workers < 1:
        raise ConfigError(f"--workers must be at least 1 (got {args.workers})", field="--workers")
    from icbench.estimators.run import DEFAULT, estimate

    md = estimate(
        args.table, list(DEFAULT) if names is None else names, repeats=args.repeats, out_dir=args.out, workers=args.workers,
        echo=_echo(args),
    )  # fmt: skip
    print(f"estimators written to {md}")
    return 0


def _confirm(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    """Retrain the study's front and basic networks with fresh seeds (a linked `<study>.confirm` study)."""
    _quick(args.study, overrides)
    from icbench.search.confirm import confirm_study

    run = confirm_study(args.study, args.seeds, report=not args.no_report, overrides=overrides, echo=_echo(args))
    return _final(args, run, "confirmation study")


def _data(args: argparse.Namespace) -> int:
    """Download a dataset into `--root`; a network failure is one line and exit status 1."""
    from icbench.data.download import DownloadError, download

    try:
        folder = download(args.dataset, args.root, url=args.url, echo=_echo(args))
    except DownloadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{args.dataset} is in {folder} (use `dataset: {{name: {args.dataset}, root: {args.root}}}`)")
    return 0


def _completion(args: argparse.Namespace) -> int:
    """Print the shell's completion script (argcomplete's), registering every name the command goes by."""
    try:
        import argcomplete
    except ImportError:  # a declared dependency; say so rather than fail obscurely
        raise IcbenchError("shell completion needs argcomplete: pip install argcomplete") from None
    print(argcomplete.shellcode([PROG, "run_study.py"], shell=args.shell))
    return 0
