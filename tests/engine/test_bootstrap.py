"""A PostgreSQL database named by the URL but missing on the server is created at first launch.

Real servers only: the session's throwaway PostgreSQL (trust authentication, so roles need no
password) and SQLite files.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import URL

from daemon.cli import main
from engine import DBOS, DBOSClient
from engine.error import DBOSConfigError, DBOSStorageError
from engine.storage import bootstrap
from engine.storage.bootstrap import ensure_database_exists
from engine.storage.database import Database, parse_database_url
from engine.storage.migrations import migrate_system_database
from engine.storage.schema import SCHEMA_VERSION
from tests.daemon.daemon_process import DaemonProcess, free_port
from tests.pgserver import PostgresServer

_names = itertools.count()


def _admin(server: PostgresServer) -> psycopg.Connection[Any]:
    return psycopg.connect(
        f"host=127.0.0.1 port={server.port} user=postgres dbname=postgres", autocommit=True
    )


def _exists(server: PostgresServer, name: str) -> bool:
    with _admin(server) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return row is not None


def _url(server: PostgresServer, database: str, user: str = "postgres") -> str:
    url = URL.create(
        "postgresql+psycopg", username=user, host="127.0.0.1", port=server.port, database=database
    )
    return url.render_as_string(hide_password=False)


@pytest.fixture()
def missing_db(pg_server: PostgresServer) -> Iterator[str]:
    """A database name that does not exist yet; it has a space, a quote and capitals, so it only
    works when quoted as an identifier. Dropped afterwards."""
    name = f'Kt "new" db {os.getpid()}_{next(_names)}'
    assert not _exists(pg_server, name)
    yield name
    with _admin(pg_server) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture()
def role_factory(pg_server: PostgresServer) -> Iterator[Callable[[str], str]]:
    """Create LOGIN roles with the given options (as the postgres superuser); dropped afterwards."""
    made: list[str] = []

    def make(options: str) -> str:
        role = f"kt_role_{os.getpid()}_{next(_names)}"
        with _admin(pg_server) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN " + options).format(sql.Identifier(role)))
        made.append(role)
        return role

    yield make
    with _admin(pg_server) as conn:
        for role in made:
            owned = conn.execute(
                "SELECT datname FROM pg_database WHERE pg_get_userbyid(datdba) = %s", (role,)
            ).fetchall()
            for (name,) in owned:
                conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture()
def fresh_dbos() -> Iterator[None]:
    DBOS.destroy()
    yield
    DBOS.destroy()


@DBOS.workflow()
def bootstrap_echo(x: int) -> int:
    return x + 1


@DBOS.transaction()
def bootstrap_txn(x: int) -> int:
    return x * 3


def test_launch_creates_the_missing_database(
    pg_server: PostgresServer, missing_db: str, fresh_dbos: None
) -> None:
    DBOS(config={"name": "boot", "system_database_url": _url(pg_server, missing_db)})
    DBOS.launch()
    assert _exists(pg_server, missing_db)
    assert bootstrap_echo(1) == 2
    DBOS.destroy()
    # The second launch finds the database and its schema: nothing to create, work still there.
    DBOS(config={"name": "boot", "system_database_url": _url(pg_server, missing_db)})
    DBOS.launch()
    assert [s.output for s in DBOS.list_workflows()] == [2]


def test_client_creates_the_missing_database(pg_server: PostgresServer, missing_db: str) -> None:
    client = DBOSClient(system_database_url=_url(pg_server, missing_db))
    try:
        assert _exists(pg_server, missing_db)
        assert client.list_workflows() == []
    finally:
        client.destroy()


def test_the_application_database_is_created_too(
    pg_server: PostgresServer, missing_db: str, db_url: str, fresh_dbos: None
) -> None:
    DBOS(
        config={
            "name": "boot",
            "system_database_url": db_url,
            "application_database_url": _url(pg_server, missing_db),
        }
    )
    DBOS.launch()
    assert bootstrap_txn(5) == 15
    assert _exists(pg_server, missing_db)


def test_a_role_with_createdb_creates_a_database_it_owns(
    pg_server: PostgresServer, missing_db: str, role_factory: Callable[[str], str]
) -> None:
    role = role_factory("CREATEDB")
    db = Database(parse_database_url(_url(pg_server, missing_db, user=role)))
    try:
        assert migrate_system_database(db) == 0
    finally:
        db.dispose()
    with _admin(pg_server) as conn:
        owner = conn.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (missing_db,)
        ).fetchone()
    assert owner == (role,)


def test_a_role_without_createdb_gets_a_clear_error(
    pg_server: PostgresServer,
    missing_db: str,
    role_factory: Callable[[str], str],
    fresh_dbos: None,
) -> None:
    role = role_factory("NOCREATEDB")
    DBOS(config={"name": "boot", "system_database_url": _url(pg_server, missing_db, user=role)})
    with pytest.raises(DBOSConfigError) as caught:
        DBOS.launch()
    message = str(caught.value)
    assert repr(missing_db) in message and repr(role) in message
    quoted_db = sql.Identifier(missing_db).as_string(None)
    assert f'CREATE DATABASE {quoted_db} OWNER "{role}";' in message
    assert f'ALTER ROLE "{role}" CREATEDB;' in message
    assert not _exists(pg_server, missing_db)


def test_an_existing_database_the_role_may_not_enter_is_not_recreated(
    pg_server: PostgresServer, pg_url: str, role_factory: Callable[[str], str]
) -> None:
    """The probe fails and its message names the database, but the catalog has it: the original
    error is raised, and nothing is created or dropped."""
    role = role_factory("CREATEDB")
    name = pg_url.rsplit("/", 1)[1]
    with _admin(pg_server) as conn:
        conn.execute(
            sql.SQL("REVOKE CONNECT ON DATABASE {} FROM PUBLIC").format(sql.Identifier(name))
        )
    db = Database(parse_database_url(_url(pg_server, name, user=role)))
    try:
        with pytest.raises(DBOSStorageError, match="permission denied for database"):
            ensure_database_exists(db)
    finally:
        db.dispose()


def test_other_connection_failures_are_raised_unchanged(
    pg_server: PostgresServer, missing_db: str
) -> None:
    db = Database(parse_database_url(_url(pg_server, missing_db, user="no_such_role")))
    try:
        with pytest.raises(DBOSStorageError, match='role "no_such_role" does not exist'):
            ensure_database_exists(db)
    finally:
        db.dispose()
    assert not _exists(pg_server, missing_db)


def test_processes_racing_to_create_it_all_succeed(
    pg_server: PostgresServer, missing_db: str
) -> None:
    racers = 4
    barrier = threading.Barrier(racers)
    outcomes: list[object] = []

    def launch() -> None:
        db = Database(parse_database_url(_url(pg_server, missing_db)))
        try:
            barrier.wait(timeout=30)
            outcomes.append(migrate_system_database(db))
        except Exception as exc:  # collected and asserted below
            outcomes.append(exc)
        finally:
            db.dispose()

    threads = [threading.Thread(target=launch) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # One racer created and stamped the schema (it found version 0); the others found it done.
    assert sorted(outcomes, key=repr) == [0] + [SCHEMA_VERSION] * (racers - 1), outcomes
    assert _exists(pg_server, missing_db)


def test_losing_the_create_race_is_success(
    pg_server: PostgresServer, missing_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deterministic loser: another process creates the database between the catalog check and
    our CREATE DATABASE, which then fails with duplicate_database."""
    original = bootstrap._database_exists

    def created_by_someone_else(conn: psycopg.Connection[Any], name: str) -> bool:
        with _admin(pg_server) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        monkeypatch.setattr(bootstrap, "_database_exists", original)
        return False

    monkeypatch.setattr(bootstrap, "_database_exists", created_by_someone_else)
    db = Database(parse_database_url(_url(pg_server, missing_db)))
    try:
        assert ensure_database_exists(db) is False
        assert migrate_system_database(db) == 0
    finally:
        db.dispose()


def test_sqlite_needs_no_bootstrap(tmp_path: Path) -> None:
    db = Database(parse_database_url(f"sqlite:///{tmp_path / 'new.sqlite'}"))
    try:
        assert ensure_database_exists(db) is False
        assert migrate_system_database(db) == 0
    finally:
        db.dispose()
    assert (tmp_path / "new.sqlite").exists()


# -- the daemon ------------------------------------------------------------------------------------


def _daemon_config(folder: Path, url: str) -> Path:
    path = folder / "keeptime.toml"
    # TOML basic strings: the database name's quotes need escaping.
    escaped = url.replace("\\", "\\\\").replace('"', '\\"')
    path.write_text(
        f'[engine]\nname = "boot"\ndatabase_url = "{escaped}"\n'
        f'[http]\nlisten = "127.0.0.1:{free_port()}"\n',
        encoding="utf-8",
    )
    return path


def test_keeptime_db_migrate_creates_the_missing_database(
    pg_server: PostgresServer, missing_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _daemon_config(tmp_path, _url(pg_server, missing_db))
    assert main(["db", "migrate", "-c", str(config)]) == 0
    assert "migrated the database from schema version 0" in capsys.readouterr().out
    assert _exists(pg_server, missing_db)


@pytest.mark.slow
def test_keeptime_run_starts_on_a_missing_database(
    pg_server: PostgresServer, missing_db: str, tmp_path: Path
) -> None:
    config = _daemon_config(tmp_path, _url(pg_server, missing_db))
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    try:
        daemon.wait_ready()
        assert _exists(pg_server, missing_db)
        assert daemon.stop() == 0
    finally:
        daemon.close()
