"""Helpers for the search tests: study files in tmp folders."""

from __future__ import annotations

from pathlib import Path

from icbench.search.schema import write_study_files

HERE = Path(__file__).resolve().parent


def write_study(tmp_path: Path, study: str, space: str, name: str = "s") -> Path:
    """A study file `name` with runs/ and reports/ kept inside tmp_path."""
    return write_study_files(tmp_path, name, study, space)
