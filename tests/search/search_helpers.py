"""Helpers for the search tests: study files in tmp folders."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def write_study(tmp_path: Path, study: str, space: str, name: str = "s") -> Path:
    """A study file `name` with runs/ and reports/ kept inside tmp_path."""
    (tmp_path / "space.yaml").write_text(space)
    p = tmp_path / f"{name}.yaml"
    p.write_text(
        f"name: {name}\nsearch_space: space.yaml\nruns_dir: {tmp_path / 'runs'}\n"
        f"reports_dir: {tmp_path / 'reports'}\n{study}"
    )
    return p
