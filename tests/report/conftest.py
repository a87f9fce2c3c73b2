"""Pytest fixtures for the report tests: fixture studies in a temporary SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_fixtures import make_grid_study, make_search_study


@pytest.fixture()
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'study.db'}"


@pytest.fixture()
def search_url(db_url: str) -> str:
    make_search_study(db_url)
    return db_url


@pytest.fixture()
def grid_url(db_url: str) -> str:
    make_grid_study(db_url)
    return db_url
