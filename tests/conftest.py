"""Shared fixtures: real SQLite files and a real PostgreSQL server, one database per test."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.pgserver import PostgresServer, start_postgres

_db_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()


def _create_database(server: PostgresServer, name: str) -> None:
    with psycopg.connect(
        f"host=127.0.0.1 port={server.port} user=postgres dbname=postgres", autocommit=True
    ) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


@pytest.fixture()
def pg_url(pg_server: PostgresServer) -> str:
    name = f"t{os.getpid()}_{next(_db_counter)}"
    _create_database(pg_server, name)
    return pg_server.url_for(name)


@pytest.fixture()
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'system.sqlite'}"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh system database URL on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'system.sqlite'}"
    server: PostgresServer = request.getfixturevalue("pg_server")
    name = f"t{os.getpid()}_{next(_db_counter)}"
    _create_database(server, name)
    return server.url_for(name)
