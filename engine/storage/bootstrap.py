"""Creating a missing PostgreSQL database at first launch, as the reference does.

A ``postgresql://`` URL may name a database that does not exist yet. Before the schema is
migrated, a probe connection tells. libpq reports a failed connection as text only (psycopg's
``sqlstate`` is None for it, even though the server sent SQLSTATE 3D000), and that text is
translated into the server's language; so a failure is only a candidate, and the server's
catalog decides: connected to the ``postgres`` maintenance database with the URL's credentials,
the database is created only when ``pg_database`` has no row for it. Every other failure is
raised as the probe saw it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from engine.error import DBOSConfigError, DBOSStorageError
from engine.storage.database import Database

# SQLSTATE of "database ... does not exist", when the driver does report it.
MISSING_DATABASE = "3D000"
# Where CREATE DATABASE is issued from; template1 exists on every server, postgres nearly so.
_MAINTENANCE_DATABASES = ("postgres", "template1")


def ensure_database_exists(db: Database) -> bool:
    """Create ``db``'s PostgreSQL database if the server says it does not exist.

    Returns True when this call created it. SQLite needs nothing (the file is created on first
    connection). Safe when several processes launch at once: the loser's duplicate-database error
    is ignored. A role without CREATEDB gets a DBOSConfigError that says how to fix it.
    """
    if not db.dialect.creates_databases:
        return False
    try:
        with db.read():
            return False
    except DBOSStorageError as exc:
        if not _may_be_missing_database(db, exc):
            raise
        probe_error = exc
    return _create_if_missing(db, probe_error)


def _may_be_missing_database(db: Database, exc: DBOSStorageError) -> bool:
    state = _sqlstate(exc)
    if state is not None:
        return state == MISSING_DATABASE
    # No SQLSTATE: a connection failure. The server's message names the missing database in
    # any language; one that does not name it (refused, timed out) is no candidate.
    name = db.db_url.url.database
    return bool(name) and f'"{name}"' in str(exc)


def _create_if_missing(db: Database, probe_error: DBOSStorageError) -> bool:
    name = db.db_url.url.database
    assert name is not None  # checked by _may_be_missing_database
    conn = _maintenance_connection(db)
    if conn is None:
        raise probe_error  # the server cannot confirm it; the probe's error says the most
    with conn:
        if _database_exists(conn, name):
            raise probe_error  # it exists: the probe failed for another reason
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except (pg_errors.DuplicateDatabase, pg_errors.UniqueViolation):
            # Another process created it between our check and our CREATE: that is success.
            return False
        except pg_errors.InsufficientPrivilege as exc:
            if _database_exists(conn, name):
                return False
            raise _no_createdb_error(db, name, _current_role(conn)) from exc
        except psycopg.Error as exc:
            raise DBOSStorageError(
                f"the database {name!r} of {db.db_url.masked} does not exist, and creating it "
                f"failed: {_first_line(exc)} (create it yourself with CREATE DATABASE)"
            ) from exc
    return True


def _maintenance_connection(db: Database) -> psycopg.Connection[Any] | None:
    """An autocommit connection to a maintenance database (CREATE DATABASE cannot run inside a
    transaction block), or None when none accepts the URL's credentials."""
    for params in _maintenance_params(db):
        try:
            return psycopg.connect(**params, autocommit=True)
        except psycopg.Error:
            continue
    return None


def _maintenance_params(db: Database) -> Iterator[dict[str, Any]]:
    """psycopg.connect() arguments for each maintenance database: the URL's host, port, user,
    password and query options, translated by the same SQLAlchemy dialect as the engine's."""
    for maintenance in _MAINTENANCE_DATABASES:
        url = db.db_url.url.set(database=maintenance)
        _, params = db.engine.dialect.create_connect_args(url)
        params.pop("context", None)  # SQLAlchemy's adapters map; plain psycopg needs none
        yield dict(params)


def _database_exists(conn: psycopg.Connection[Any], name: str) -> bool:
    row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return row is not None


def _current_role(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute("SELECT current_user").fetchone()
    return str(row[0]) if row is not None else "?"


def _no_createdb_error(db: Database, name: str, role: str) -> DBOSConfigError:
    quoted_db = sql.Identifier(name).as_string(None)
    quoted_role = sql.Identifier(role).as_string(None)
    return DBOSConfigError(
        f"the database {name!r} of {db.db_url.masked} does not exist, and the role {role!r} may "
        f"not create it (it lacks CREATEDB). Have an administrator run "
        f"'CREATE DATABASE {quoted_db} OWNER {quoted_role};', or grant the right with "
        f"'ALTER ROLE {quoted_role} CREATEDB;', then start again"
    )


def _sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of the driver error behind ``exc`` (translated errors keep it as cause)."""
    seen: BaseException | None = exc
    while seen is not None:
        for candidate in (seen, getattr(seen, "orig", None)):
            state = getattr(candidate, "sqlstate", None)
            if isinstance(state, str):
                return state
        seen = seen.__cause__
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else repr(exc)
