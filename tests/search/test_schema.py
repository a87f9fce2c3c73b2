"""Study and search-space files: every malformed input is a ConfigError naming the file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from icbench.errors import ConfigError
from icbench.search.schema import load_search_space
from icbench.search.study import load_study

SPACE = """
params:
  unit: {type: categorical, choices: [ic, conv]}
  lr: {type: float, low: 0.01, high: 0.2, log: true}
"""


def write(tmp_path: Path, study: str, space: str = SPACE) -> Path:
    (tmp_path / "space.yaml").write_text(space)
    p = tmp_path / "study.yaml"
    p.write_text(study)
    return p


def error_for(tmp_path: Path, study: str, space: str = SPACE) -> ConfigError:
    with pytest.raises(ConfigError) as e:
        load_study(write(tmp_path, study, space))
    return e.value


def test_minimal_study_loads_with_defaults(tmp_path: Path) -> None:
    loaded = load_study(write(tmp_path, "name: s\nsearch_space: space.yaml\n"))
    c = loaded.config
    assert [o.name for o in c.objectives] == ["val_acc", "macs"]
    assert [o.resolved_direction for o in c.objectives] == ["maximize", "minimize"]
    assert c.sampler.name == "tpe" and c.sampler.seed == 0
    assert loaded.space_path == (tmp_path / "space.yaml").resolve()


def test_unknown_key_suggests_the_closest(tmp_path: Path) -> None:
    e = error_for(tmp_path, "name: s\nsearch_space: space.yaml\nbudget: {epohcs: 3}\n")
    assert e.field == "budget.epohcs" and "did you mean 'epochs'" in str(e)
    assert str(tmp_path / "study.yaml") in str(e)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("budget: {epochs: -1}", "budget.epochs"),
        ("budget: {epochs: two}", "budget.epochs"),
        ("sampler: {name: annealing}", "sampler.name"),
        ("objectives: [val_acc, flops]", "objectives.1.name"),
        ("objectives: [val_acc, val_acc]", "objectives"),
        ("execution: {address: auto}", "execution"),
        ("wld: {lambda0: 1.5}", "wld.lambda0"),
        ("constraints: {max_macs: -3}", "constraints.max_macs"),
    ],
)
def test_bad_values_name_their_field(tmp_path: Path, body: str, field: str) -> None:
    e = error_for(tmp_path, f"name: s\nsearch_space: space.yaml\n{body}\n")
    assert e.field is not None and e.field.startswith(field), (e.field, str(e))


def test_missing_search_space_file(tmp_path: Path) -> None:
    e = error_for(tmp_path, "name: s\nsearch_space: nowhere.yaml\n")
    assert e.field == "search_space" and "nowhere.yaml" in str(e)


@pytest.mark.parametrize(
    ("text", "needle"),
    [("", "empty"), ("name: [unclosed\n", "not valid YAML"), ("- a\n- b\n", "mapping"),
     ("name: s\nsearch_space: !!python/object/apply:os.system ['true']\n", "not valid YAML")],
)  # fmt: skip
def test_malformed_files(tmp_path: Path, text: str, needle: str) -> None:
    p = tmp_path / "study.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_study(p)


@pytest.mark.parametrize(
    ("space", "needle"),
    [
        ("params: {}", "params"),
        ("params:\n  k: {type: int, low: 5, high: 1}", "high"),
        ("params:\n  lr: {type: float, low: 0, high: 1, log: true}", "log"),
        (
            "params:\n  k: {type: int, low: 1, high: 3, when: {strategy: [last_k]}}",
            "unknown parameter 'strategy'",
        ),
        (
            "params:\n  k: {type: int, low: 1, high: 3, when: {s: [x]}}\n  s: {type: categorical, choices: [x]}",
            "declared after",
        ),
        ("params:\n  k: {type: integer, low: 1, high: 3}", "type"),
    ],
)
def test_bad_search_spaces(tmp_path: Path, space: str, needle: str) -> None:
    p = tmp_path / "space.yaml"
    p.write_text(space)
    with pytest.raises(ConfigError, match=needle) as e:
        load_search_space(p)
    assert str(p) in str(e.value)
