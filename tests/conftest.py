"""Fixtures shared across test folders: a throwaway PostgreSQL server and a throwaway S3-protocol server."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from pg_server import PostgresServer, server_bin
from s3_server import S3Server, moto_available


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


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A real S3-protocol server (moto's server mode) of this test session's own; skipped where moto is
    not installed, except in CI (`CI` set), where the `test` extra installs it and its absence fails."""
    if not moto_available():
        if os.environ.get("CI"):
            pytest.fail("moto[server] and boto3 not installed (pip install -e '.[test]')")
        pytest.skip("moto[server] not installed (pip install -e '.[test]')")
    server = S3Server()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The session's S3 server with the AWS_* variables that point clients at it set for this test."""
    for key, value in s3_server.environment().items():
        monkeypatch.setenv(key, value)
    return s3_server
