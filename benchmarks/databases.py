"""A fresh database for every run: a new SQLite file, or a new PostgreSQL database on one server
(a throwaway one from tests/pgserver.py unless --pg-url names one)."""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

BACKENDS = ("sqlite", "postgres")


class Databases:
    def __init__(self, pg_admin_url: str | None) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="keeptime-bench-"))
        self.pg_admin_url = pg_admin_url
        self._server: Any = None
        self._ids = itertools.count(1)

    def start(self, backends: tuple[str, ...]) -> None:
        if "postgres" in backends and self.pg_admin_url is None:
            from tests.pgserver import start_postgres

            self._server = start_postgres()
            self.pg_admin_url = self._server.admin_url

    def close(self) -> None:
        if self._server is not None:
            self._server.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def server_version(self) -> str | None:
        if self.pg_admin_url is None:
            return None
        import psycopg

        with psycopg.connect(_plain(self.pg_admin_url)) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else None

    @contextmanager
    def fresh(self, backend: str) -> Iterator[str]:
        """The URL of a new, empty database; dropped (or deleted) afterwards."""
        n = next(self._ids)
        if backend == "sqlite":
            path = self.workdir / f"run{n}.sqlite"
            try:
                yield f"sqlite:///{path}"
            finally:
                for suffix in ("", "-wal", "-shm", "-journal"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
            return
        assert self.pg_admin_url is not None
        name = f"keeptime_bench_{n}"
        self._admin(f"DROP DATABASE IF EXISTS {name}")
        self._admin(f"CREATE DATABASE {name}")
        try:
            yield urlunsplit(urlsplit(_plain(self.pg_admin_url))._replace(path=f"/{name}"))
        finally:
            self._admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(_plain(self.pg_admin_url or ""), autocommit=True) as conn:
            conn.execute(sql.encode())


def _plain(url: str) -> str:
    """psycopg and both engines accept ``postgresql://``; SQLAlchemy URLs name the driver."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)
