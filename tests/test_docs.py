"""The README and the manual (docs/): every Python example runs, every command they show parses, every file
they name exists, every page they link to exists, and the README stays short.

Python: every ```python block is executed, a page's blocks in order in one interpreter (as a notebook
runs them), in a scratch folder that sees the repository's studies/, search_spaces/ and tables/ (so
what they write, runs/ and reports/, stays out of the checkout). A block that cannot run here (a
cluster, a GPU, a download) starts with `# docs-test: skip (<why>)`; such blocks are reported as skipped
tests, with the reason, so the count shows in the test summary. A block whose page needs another page's
results first (the README reads the quickstart's trials, which docs/api.md runs) starts with
`# docs-test: after <page>`.

A command is a line of a ```bash block that runs the CLI (`icbench`, `python -m icbench`, `run_study.py`)
or a benchmark script. CLI commands are parsed by the CLI's own parser (nothing runs); study, space and
table paths in them must exist in the repository unless they come from a shell variable. A benchmark
command must name an existing script and only options that script declares. The cluster script is also
run verbatim by tests/cluster/test_readme_cluster.py.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
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
    except SystemExit as e:  # argparse's way of refusing (and of ending `--version`, `-h` with 0)
        if e.code == 0 and {"--version", "-h", "--help"} & set(args):
            return
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
        # reports/ and runs/ are what the commands write (git-ignored); the committed reports are docs/results/.
        for path in re.findall(r"`((?:studies|search_spaces|tables|benchmarks|docs/results)/[\w./-]+)`", text):
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


# ------------------------------------------------------------------------------------------- Python


SKIP = re.compile(r"^# docs-test: skip \((.+)\)", re.M)
AFTER = re.compile(r"^# docs-test: after (\S+)", re.M)
#: Runs a page's blocks in order in one namespace; says which block failed.
RUNNER = """
import json, sys, traceback
blocks = json.load(open(sys.argv[1]))
scope = {"__name__": "__main__"}
for i, (line, code) in enumerate(blocks):
    try:
        exec(compile(code, f"{sys.argv[2]}:{line}", "exec"), scope)
    except BaseException:
        traceback.print_exc()
        print(f"DOCS-TEST FAILED: python block {i + 1} at {sys.argv[2]}:{line}", file=sys.stderr)
        sys.exit(1)
"""


def python_blocks(path: Path) -> list[tuple[int, str]]:
    """(line number, code) of every ```python block of a page."""
    text = path.read_text()
    return [(text[: m.start()].count("\n") + 2, m.group(1)) for m in re.finditer(r"```python\n(.*?)```", text, flags=re.S)]


RUNNABLE = {p.relative_to(REPO).as_posix(): [b for b in python_blocks(p) if not SKIP.search(b[1])] for p in PAGES}
RUNNABLE = {page: blocks for page, blocks in RUNNABLE.items() if blocks}
SKIPPED = [(p.relative_to(REPO).as_posix(), line, SKIP.search(code).group(1))  # type: ignore[union-attr]
           for p in PAGES for line, code in python_blocks(p) if SKIP.search(code)]  # fmt: skip


class _DocsSession:
    """One scratch folder for every page's examples, and the pages already run there."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for name in ("studies", "search_spaces", "tables", "benchmarks"):
            (root / name).symlink_to(REPO / name)
        self.done: dict[str, str] = {}

    def run(self, page: str) -> str:
        if page in self.done:
            return self.done[page]
        blocks = RUNNABLE[page]
        for _, code in blocks:
            for dep in AFTER.findall(code):
                assert dep in RUNNABLE, f"{page}: `# docs-test: after {dep}` names no page with Python examples"
                self.run(dep)
        spec = self.root / f"{page.replace('/', '_')}.json"
        spec.write_text(json.dumps(blocks))
        done = subprocess.run(
            [sys.executable, "-c", RUNNER, str(spec), page], cwd=self.root, capture_output=True, text=True,
            timeout=900,
        )  # fmt: skip
        assert done.returncode == 0, f"{page}: an example failed\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
        self.done[page] = done.stdout
        return done.stdout


@pytest.fixture(scope="session")
def docs_session(tmp_path_factory: pytest.TempPathFactory) -> _DocsSession:
    return _DocsSession(tmp_path_factory.mktemp("docs"))


def test_the_docs_have_python_examples() -> None:
    assert "docs/api.md" in RUNNABLE and sum(len(b) for b in RUNNABLE.values()) >= 4, RUNNABLE.keys()


@pytest.mark.slow  # the API page trains a 3-trial quickstart (about a minute on 2 cores)
@pytest.mark.xdist_group("ray")
@pytest.mark.parametrize("page", sorted(RUNNABLE))
def test_every_python_example_runs(page: str, docs_session: _DocsSession) -> None:
    out = docs_session.run(page)
    assert out.strip(), f"{page}: the examples printed nothing"


@pytest.mark.parametrize(("page", "line", "why"), SKIPPED, ids=[f"{p}:{n}" for p, n, _ in SKIPPED])
def test_examples_that_cannot_run_here(page: str, line: int, why: str) -> None:
    """Reported as skipped, with the reason, so the summary counts them (`-ra`)."""
    pytest.skip(f"{page}:{line}: {why}")


# ------------------------------------------------------------------------------------------- reference


def test_the_reference_page_is_generated_from_the_schema() -> None:
    """docs/reference.md is what `python -m icbench.search.reference` writes, and every field is described."""
    from icbench.search.reference import generate, undocumented

    assert undocumented() == [], f"fields without a description in icbench/search/schema.py: {undocumented()}"
    page = (REPO / "docs" / "reference.md").read_text()
    assert page == generate(), "docs/reference.md is stale: python -m icbench.search.reference > docs/reference.md"


def test_a_field_without_a_description_fails_the_reference() -> None:
    from pydantic import BaseModel

    from icbench.search import reference

    class Section(BaseModel):
        #: Documented the way schema.py documents its fields.
        documented: int = 0
        bare: int = 0

    assert reference.describe(Section, "documented", Section.model_fields["documented"]) == (
        "Documented the way schema.py documents its fields."
    )
    assert reference.describe(Section, "bare", Section.model_fields["bare"]) is None
    with pytest.raises(reference.MissingDescription, match="Section.bare"):
        reference._table(Section, "section")


def _yaml_blocks() -> list[tuple[str, str]]:
    return [(p.relative_to(REPO).as_posix(), block) for p in PAGES
            for block in re.findall(r"```yaml\n(.*?)```", p.read_text(), flags=re.S)]  # fmt: skip


@pytest.mark.parametrize(("page", "block"), _yaml_blocks(), ids=[f"{p}:{i}" for i, (p, _) in enumerate(_yaml_blocks())])
def test_every_yaml_example_is_valid(page: str, block: str) -> None:
    """A search-space example validates against the schema; a study-file fragment uses only its keys."""
    import yaml

    from icbench.search.schema import SearchSpace, StudyConfig, _validate

    data = yaml.safe_load(block)
    assert isinstance(data, dict), f"{page}: a YAML example that is not a mapping"
    if "params" in data:
        _validate(SearchSpace, data, Path(page))
    else:
        unknown = set(data) - set(StudyConfig.model_fields)
        assert not unknown, f"{page}: keys {unknown} are not study-file keys"
