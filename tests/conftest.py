"""Fixtures shared across test folders: a throwaway PostgreSQL server."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from pg_server import PostgresServer, server_bin


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test session's own; skipped where the server is not installed,
    except in CI (`CI` set), where `.ci/run` installs it and a missing server is a failure."""
    bin_dir = server_bin()
    if bin_dir is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL server binaries not found (.ci/run installs the postgresql package)")
        pytest.skip("PostgreSQL server not installed (apt-get install postgresql)")
    pytest.importorskip("psycopg", reason="pip install -e '.[postgres]'")
    server = PostgresServer(bin_dir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of a new empty database on the session's server."""
    return postgres_server.new_database()
