"""The README and the manual (docs/): every command they show parses, every file they name exists, every
page they link to exists, and the README stays short.

A command is a line of a ```bash block that runs the CLI (`icbench`, `python -m icbench`, `run_study.py`)
or a benchmark script. CLI commands are parsed by the CLI's own parser (nothing runs); study, space and
table paths in them must exist in the repository unless they come from a shell variable. A benchmark
command must name an existing script and only options that script declares. The cluster script is also
run verbatim by tests/cluster/test_readme_cluster.py.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from icbench.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
README_MAX_LINES = 250


def _bash_lines(path: Path) -> list[str]:
    """Command lines of the ```bash blocks of a page (continuations joined, comments and heredocs dropped)."""
    out: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", path.read_text(), flags=re.S):
        joined = block.replace("\\\n", " ")
        heredoc = None
        for line in joined.splitlines():
            if heredoc is not None:
                heredoc = None if line.strip() == heredoc else heredoc
                continue
            match = re.search(r"<<\s*'?(\w+)'?", line)
            if match:
                heredoc = match.group(1)
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


def _cli_args(line: str) -> list[str] | None:
    """The CLI arguments of a command line, or None when it does not run the CLI."""
    words = shlex.split(line)
    for i, w in enumerate(words):
        if w == "icbench" or w.endswith("/icbench"):
            return words[i + 1 :]
        if w.endswith("run_study.py"):
            return words[i + 1 :]
        if w == "-m" and i + 1 < len(words) and words[i + 1] == "icbench":
            return words[i + 2 :]
    return None


#: Commands written inline in the text: `python benchmarks/x.py --flag`, `run_study.py confirm ...`, ...
INLINE = re.compile(
    r"`((?:[A-Z_]+=\S+ )*(?:\.venv/bin/)?(?:python (?:-m icbench|\S*run_study\.py|benchmarks/\w+\.py)|icbench|run_study\.py)"
    r" [^`]*)`"
)


def _commands() -> list[tuple[str, str]]:
    out = [(p.relative_to(REPO).as_posix(), line) for p in PAGES for line in _bash_lines(p)]
    for p in PAGES:
        text = re.sub(r"```.*?```", "", p.read_text(), flags=re.S).replace("\n", " ")
        out += [(p.relative_to(REPO).as_posix(), m.group(1)) for m in INLINE.finditer(text)]
    return out


CLI = [(page, line) for page, line in _commands() if _cli_args(line) is not None]
BENCH = [(page, line) for page, line in _commands() if re.search(r"benchmarks/\w+\.py", line)]


def test_the_docs_show_commands_at_all() -> None:
    assert len(CLI) >= 15 and len(BENCH) >= 1, (len(CLI), len(BENCH))


@pytest.mark.parametrize(("page", "line"), CLI, ids=[f"{p}:{line[:60]}" for p, line in CLI])
def test_every_documented_cli_command_parses(page: str, line: str) -> None:
    args = _cli_args(line)
    assert args is not None
    try:
        parsed = build_parser().parse_args(args)
    except SystemExit as e:  # argparse's way of refusing
        pytest.fail(f"{page}: `{line}` does not parse (exit {e.code})")
    for name in ("study", "study_a", "study_b"):
        value = getattr(parsed, name, None)
        placeholder = "$" in str(value) or str(value).isupper()  # `icbench run STUDY`, `$SHARED/x.yaml`
        if value and not placeholder and not value.startswith(("studies/a.yaml", "studies/b.yaml")):
            assert (REPO / value).exists(), f"{page}: `{line}` names {value}, which does not exist"


@pytest.mark.parametrize(("page", "line"), BENCH, ids=[f"{p}:{line[:60]}" for p, line in BENCH])
def test_every_documented_benchmark_command_names_a_script_and_its_options(page: str, line: str) -> None:
    script = re.search(r"(benchmarks/\w+\.py)", line)
    assert script is not None
    path = REPO / script.group(1)
    assert path.exists(), f"{page}: `{line}` names {script.group(1)}, which does not exist"
    source = path.read_text()
    for option in re.findall(r"(?<![\w-])(--[a-z][\w-]*)", line.split(script.group(1), 1)[1]):
        assert f'"{option}"' in source, f"{page}: {script.group(1)} declares no option {option}"


def test_every_page_link_and_repository_path_exists() -> None:
    for page in PAGES:
        text = page.read_text()
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"
        for path in re.findall(r"`((?:studies|search_spaces|tables|benchmarks|reports)/[\w./-]+)`", text):
            if "<" in path or "*" in path or "{" in path:
                continue
            assert (REPO / path).exists(), f"{page.name} names {path}, which does not exist"


def test_the_readme_is_short_and_links_every_page() -> None:
    readme = (REPO / "README.md").read_text()
    assert readme.count("\n") <= README_MAX_LINES, f"README.md has {readme.count(chr(10))} lines"
    for page in sorted((REPO / "docs").glob("*.md")):
        assert f"docs/{page.name}" in readme, f"README.md does not link docs/{page.name}"
    assert "make quickstart" in readme and "make test" in readme


def test_every_page_is_in_the_site_navigation() -> None:
    nav = (REPO / "mkdocs.yml").read_text()
    for page in sorted((REPO / "docs").glob("*.md")):
        assert f": {page.name}" in nav, f"docs/{page.name} is not in mkdocs.yml's nav"
