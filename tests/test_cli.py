"""The `icbench` command as people use it: the light check before torch, names and suggestions, `--version`,
`-q`/`-v`, complete help, shell completion, `icbench data` without a network.

Timing of the light path is a benchmark (benchmarks/cli_latency.py), not a test; here the tests check what
makes it fast: which modules the validation path imports.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from icbench.cli import build_parser, main, version_text
from icbench.names import FAMILY_SIZES, NAMES, closest, unknown_message
from icbench.search.schema import write_study_files

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "ray", "optuna", "pandas", "torchvision")

STUDY = """
dataset: {name: synthetic, kwargs: {n: 200, image_size: 16, in_chans: 1}}
family: {name: resnet_cifar, size: resnet8, width: 0.25}
budget: {epochs: 1}
"""
SPACE = """
params:
  unit: {type: categorical, choices: [ic, conv]}
"""

#: Runs `icbench.cli.main` in a fresh interpreter, then prints its exit status and the heavy modules loaded.
PROBE = """
import json, sys
from icbench.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "heavy": sorted(m for m in %r if m in sys.modules)}))
"""


def _probe(args: list[str], cwd: Path) -> tuple[dict[str, object], str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE % (HEAVY,), *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert done.stdout.strip(), done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


# --------------------------------------------------------------------- names: the light table is the truth


def test_the_names_table_equals_the_registries() -> None:
    """`icbench.names` declares what the registries hold; it cannot drift from them."""
    from icbench.data import DATASETS, dataset_info
    from icbench.estimators import ESTIMATORS
    from icbench.families import FAMILIES
    from icbench.placement import STRATEGIES
    from icbench.search.executors import EXECUTORS
    from icbench.search.samplers import SAMPLERS
    from icbench.search.schedulers import SCHEDULERS
    from icbench.units import UNITS

    registries = [DATASETS, FAMILIES, UNITS, STRATEGIES, SAMPLERS, SCHEDULERS, EXECUTORS, ESTIMATORS]
    assert {r.name: sorted(r.keys()) for r in registries} == {k: sorted(v) for k, v in NAMES.items()}
    for name, family in FAMILIES.items():
        sizes = FAMILY_SIZES[name]
        if sizes is None:  # open-ended: every listed size of the family is accepted by check_size
            assert name in ("torchvision", "user")
        else:
            assert sorted(family.sizes()) == sorted(sizes), name
    assert dataset_info("cifar10").input_shape == (3, 32, 32)


@pytest.mark.parametrize(
    ("typo", "known", "meant"),
    [
        ("resnet21", FAMILY_SIZES["resnet_cifar"], "resnet20"),
        ("resnet33", FAMILY_SIZES["resnet_cifar"], "resnet32"),
        ("resnt_cifar", NAMES["family"], "resnet_cifar"),
        ("ic_duel", NAMES["unit"], "ic_dual"),
        ("cifar1O", NAMES["dataset"], "cifar10"),
        ("last-k", NAMES["strategy"], "last_k"),
        ("nsga", NAMES["sampler"], "nsga2"),
        ("zzz", NAMES["unit"], None),
    ],
)
def test_suggestions_pick_the_closest_name(typo: str, known: tuple[str, ...], meant: str | None) -> None:
    assert closest(typo, known) == meant
    msg = unknown_message("thing", typo, known)
    assert msg.startswith(f"unknown thing {typo!r}; known things: ")
    assert ("did you mean" in msg) == (meant is not None)


# --------------------------------------------------------------------- the light check


@pytest.mark.parametrize(
    ("edit", "field", "suggestion"),
    [
        (("resnet_cifar", "resnt_cifar"), "family.name", "resnet_cifar"),
        (("resnet8", "resnet21"), "family.size", "resnet20"),
        (("synthetic", "synthetc"), "dataset.name", "synthetic"),
        (("budget:", "budgt:"), "budgt", "budget"),
        (("epochs: 1", "epoch: 1"), "budget.epoch", "epochs"),
        (("budget: {epochs: 1}", "budget: {epochs: 1}\nunit: icc"), "unit", "ic"),
        (("budget: {epochs: 1}", "budget: {epochs: 1}\nstrategy: last-k"), "strategy", "last_k"),
        (("budget: {epochs: 1}", "budget: {epochs: 1}\nsampler: {name: tp}"), "sampler.name", "tpe"),
    ],
)
def test_a_typo_is_refused_before_torch_or_ray_load(
    tmp_path: Path, edit: tuple[str, str], field: str, suggestion: str
) -> None:
    path = write_study_files(tmp_path, "s", STUDY.replace(*edit), SPACE)
    for command in (["validate"], ["run", "--dry-run"], ["run"]):
        out, err = _probe([*command, str(path)], tmp_path)
        assert out == {"code": 2, "heavy": []}, (command, out, err)
        assert err.count("\n") == 1 and field in err and f"did you mean {suggestion!r}" in err, err
    assert not (tmp_path / "runs").exists()


def test_an_unknown_choice_in_the_space_is_refused_light(tmp_path: Path) -> None:
    path = write_study_files(tmp_path, "s", STUDY, SPACE.replace("[ic, conv]", "[ic, cnov]"))
    out, err = _probe(["validate", str(path)], tmp_path)
    assert out == {"code": 2, "heavy": []} and "params.unit.choices" in err and "'conv'" in err, err


def test_sites_and_estimate_refuse_unknown_names_light(tmp_path: Path) -> None:
    out, err = _probe(["sites", "resnet_cifr"], tmp_path)
    assert out == {"code": 2, "heavy": []} and "did you mean 'resnet_cifar'" in err, err
    out, err = _probe(["sites", "resnet_cifar", "--size", "resnet21"], tmp_path)
    assert out == {"code": 2, "heavy": []} and "did you mean 'resnet20'" in err, err
    out, err = _probe(["estimate", "t.parquet", "--estimators", "synflw"], tmp_path)
    assert out == {"code": 2, "heavy": []} and "did you mean 'synflow'" in err, err


def test_importing_the_validation_path_imports_nothing_heavy() -> None:
    code = (
        "import sys, json; import icbench.cli, icbench.search.quick, icbench.names; "
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


# --------------------------------------------------------------------- --version, -q, -v, help


def test_version_names_what_matters_without_importing_it(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import sys, icbench.cli as c; c.main(['--version'])"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    first = [line.split()[0] for line in done.stdout.splitlines()]
    assert first[:1] == ["icbench"] and {"torch", "ray", "optuna", "python"} <= set(first)
    assert "CUDA" in done.stdout or "CPU-only" in done.stdout
    assert version_text().splitlines()[0].startswith("icbench ")
    code = "import sys, icbench.cli as c\ntry: c.main(['--version'])\nexcept SystemExit: pass\nprint([m for m in ('torch', 'ray') if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip().endswith("[]"), done.stdout


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_argument_of_every_command_has_help() -> None:
    parser = build_parser()
    assert parser.description and parser.description.endswith(".")  # not cut mid-sentence
    commands = _subparsers(parser)
    assert {"run", "validate", "sites", "report", "compare", "confirm", "tabulate", "estimate", "data",
            "completion"} <= set(commands)  # fmt: skip
    for name, sub in commands.items():
        options = {o for a in sub._actions for o in a.option_strings}
        assert {"-q", "-v"} <= options, name
        for action in sub._actions:
            assert action.help and action.help.strip(), f"{name}: {action.dest} has no help text"


@pytest.mark.parametrize("flag", ["-q", "-v"])
def test_quiet_and_verbose_on_validate(tmp_path: Path, flag: str) -> None:
    path = write_study_files(tmp_path, "s", STUDY, SPACE)
    done = subprocess.run(
        [sys.executable, "-m", "icbench", "validate", flag, str(path)],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    if flag == "-q":
        assert lines == ["study 's' is valid: dry run, nothing trained, nothing written"]
    else:  # the study as read, with its defaults, then the dry run
        assert "confirm_seeds: 5" in done.stdout and "sites of the base network" in done.stdout
        assert lines[-1] == "dry run: nothing trained, nothing written"


def test_quiet_is_accepted_before_and_after_the_command() -> None:
    parser = build_parser()
    assert parser.parse_args(["-q", "validate", "x.yaml"]).verbosity == -1
    assert parser.parse_args(["validate", "x.yaml", "-v"]).verbosity == 1
    assert parser.parse_args(["validate", "x.yaml"]).verbosity == 0


# --------------------------------------------------------------------- completion


def test_shell_completion_through_argcomplete(tmp_path: Path) -> None:
    """argcomplete's protocol: the shell sets _ARGCOMPLETE and COMP_LINE; the candidates go to fd 8."""
    out = tmp_path / "candidates"

    def complete(line: str) -> list[str]:
        env = {**os.environ, "_ARGCOMPLETE": "1", "_ARGCOMPLETE_IFS": "\n", "COMP_LINE": line,
               "COMP_POINT": str(len(line)), "_ARGCOMPLETE_STDOUT_FILENAME": str(out)}  # fmt: skip
        subprocess.run([sys.executable, "-m", "icbench"], env=env, capture_output=True, timeout=60)
        return out.read_text().split("\n")

    assert {"run", "validate", "sites", "confirm", "data"} <= set(complete("icbench "))
    assert {"--dry-run", "--no-report"} <= set(complete("icbench run --"))
    assert set(complete("icbench data c")) == {"cifar10", "cifar100"}


def test_completion_script(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", "bash"]) == 0
    script = capsys.readouterr().out
    assert "complete " in script and "icbench" in script and "_ARGCOMPLETE" in script


# --------------------------------------------------------------------- icbench data


def test_data_without_network_is_one_line_and_exit_1(tmp_path: Path) -> None:
    """A mirror nobody listens on stands for no network: nothing is downloaded in tests."""
    done = subprocess.run(
        [sys.executable, "-m", "icbench", "data", "cifar10", "--root", str(tmp_path / "data"),
         "--url", "http://127.0.0.1:9/cifar-10-python.tar.gz"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: cannot download cifar10"), done.stderr
    assert "cifar-10-python.tar.gz" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "data" / "cifar-10-batches-py").exists()


def test_data_refuses_a_dataset_it_does_not_download() -> None:
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["data", "mnist5k"])
    assert e.value.code == 2


def test_quiet_run_prints_one_final_line(tmp_path: Path) -> None:
    """`run -q` of a replayed study (no training): no progress, one line saying what the run did."""
    for name in ("studies", "search_spaces", "tables"):
        (tmp_path / name).symlink_to(REPO / name)
    done = subprocess.run(
        [sys.executable, "-m", "icbench", "run", "-q", "studies/icbench_v2_replay.yaml", "--set", "n_trials=3",
         "--no-report"],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("study icbench_v2_replay: 3 complete"), done.stdout


def test_verbose_validate_never_prints_a_storage_password(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`-v` prints the study as read; a password in its storage URL is masked (the check stops before
    connecting: the quick check alone runs here, on a study the full check then refuses or not)."""
    from icbench.cli import _validate

    path = write_study_files(
        tmp_path, "s", STUDY + "storage: postgresql://icb:s3cret-pw@127.0.0.1:9/icb\n", SPACE
    )
    args = build_parser().parse_args(["validate", "-v", str(path)])
    try:
        _validate(args, {})
    except Exception:  # the unreachable server is refused after the study was printed
        pass
    out = capsys.readouterr()
    assert "postgresql://icb:***@127.0.0.1:9/icb" in out.out and "s3cret-pw" not in out.out + out.err


# ------------------------------------------------------------------------------------- exit without teardown

#: Ends like the command: writes unflushed output, registers an exit handler, then `exit_now(CODE)`;
#: a marker says whether it ended through `os._exit` (no teardown).
EXIT_PROBE = """
import atexit, os, sys
from pathlib import Path
from icbench.cli import exit_now
heavy, code, handler, fast = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
if heavy == "torch":
    import torch
real_exit = os._exit
os._exit = lambda status: (fast.write_text("fast"), real_exit(status))
atexit.register(lambda: handler.write_text("ran"))
print("last line, still in the buffer", end="")
print("to stderr", end="", file=sys.stderr)
exit_now(code)
"""


@pytest.mark.parametrize(
    ("heavy", "code", "fast"),
    [("torch", 0, True), ("torch", 7, False), ("light", 0, False)],
    ids=["torch_success", "torch_failure", "light"],
)
def test_exit_now_keeps_the_exit_status_the_output_and_the_exit_handlers(
    tmp_path: Path, heavy: str, code: int, fast: bool
) -> None:
    """After a success with torch loaded the command skips Python's teardown (os._exit): nothing it printed
    or registered to run at exit may be lost, and the exit status stays the command's. A failure, or a
    command without torch, exits normally."""
    handler, marker = tmp_path / "atexit.txt", tmp_path / "fast.txt"
    done = subprocess.run(
        [sys.executable, "-c", EXIT_PROBE, heavy, str(code), str(handler), str(marker)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == code, done.stderr
    assert done.stdout == "last line, still in the buffer" and done.stderr == "to stderr"
    assert handler.read_text() == "ran"
    assert marker.exists() is fast


def test_the_command_entries_exit_through_exit_now() -> None:
    """`icbench`, `python -m icbench` and `run_study.py` all end in `exit_now`."""
    assert 'icbench = "icbench.cli:entry"' in (REPO / "pyproject.toml").read_text()
    assert "entry(" in (REPO / "icbench" / "__main__.py").read_text()
    assert "exit_now(main())" in (REPO / "run_study.py").read_text()
