"""Versioned schema migrations, applied at launch.

A fresh database gets the current schema from ``schema.metadata`` and is stamped with
``SCHEMA_VERSION``; an older one runs the steps in ``MIGRATIONS`` in order. Several processes may
launch at once: PostgreSQL serializes them with an advisory lock, SQLite with ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, MetaData, inspect, select, text

from engine.error import DBOSSchemaVersionError
from engine.storage.database import Database
from engine.storage.schema import SCHEMA_VERSION, app_metadata, metadata, schema_version

# version -> step that upgrades a database from version-1 to version.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {}

_ADVISORY_LOCK_KEY = 0x6B65_6570_7469_6D65 & 0x7FFF_FFFF_FFFF_FFFF  # "keeptime"


def migrate_system_database(db: Database) -> int:
    """Bring the system database to ``SCHEMA_VERSION``; returns the version found before."""
    with db.write() as conn:
        _lock_and_create_schema(db, conn)
        found = _current_version(db, conn)
        if found is None:
            metadata.create_all(conn)
            conn.execute(schema_version.insert().values(version=SCHEMA_VERSION))
            return 0
        if found > SCHEMA_VERSION:
            raise DBOSSchemaVersionError(
                f"the system database {db.db_url.masked} has schema version {found}, but this "
                f"keeptime understands versions up to {SCHEMA_VERSION} (upgrade keeptime, or "
                "point it at another database)"
            )
        for version in range(found + 1, SCHEMA_VERSION + 1):
            MIGRATIONS[version](conn)
            conn.execute(schema_version.update().values(version=version))
        return found


def create_application_tables(db: Database) -> None:
    """The application database only needs the transaction checkpoint table."""
    with db.write() as conn:
        _lock_and_create_schema(db, conn)
        app_metadata.create_all(conn)


def drop_system_tables(db: Database) -> None:
    with db.write() as conn:
        _lock_and_create_schema(db, conn)
        _drop_all(metadata, conn)


def drop_application_tables(db: Database) -> None:
    with db.write() as conn:
        _lock_and_create_schema(db, conn)
        _drop_all(app_metadata, conn)


def _drop_all(meta: MetaData, conn: Connection) -> None:
    meta.drop_all(conn)


def _lock_and_create_schema(db: Database, conn: Connection) -> None:
    if db.is_sqlite:
        return
    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY})
    conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{db.schema}"'))


def _current_version(db: Database, conn: Connection) -> int | None:
    if not inspect(conn).has_table(schema_version.name, schema=db.schema):
        return None
    value = conn.execute(select(schema_version.c.version)).scalar()
    return int(value) if value is not None else None
