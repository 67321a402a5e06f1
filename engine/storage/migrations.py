"""Versioned schema migrations, applied at launch.

A fresh database gets the current schema from ``schema.metadata`` and is stamped with
``SCHEMA_VERSION``; an older one runs the steps in ``MIGRATIONS`` in order. Several processes may
launch at once: each dialect makes them take turns (``Dialect.prepare_migration``).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, MetaData, inspect, select, text

from engine.error import DBOSSchemaVersionError
from engine.storage.bootstrap import ensure_database_exists
from engine.storage.database import Database
from engine.storage.debounce import DEBOUNCE_HOLD_QUEUE
from engine.storage.dialect import Announcer
from engine.storage.messages import WAKEUP_CHANNEL
from engine.storage.schedules import HOLD_QUEUE_PREFIX
from engine.storage.schema import (
    EXECUTOR_PROCESS_COLUMNS,
    SCHEMA_VERSION,
    app_metadata,
    executors,
    metadata,
    quoted_name,
    schema_version,
)

# The NOTIFY payload that wakes the queue workers of one schema (see install_enqueue_notify).
QUEUE_WAKEUP_PREFIX = "queues:"


def install_enqueue_notify(db: Database, conn: Connection) -> None:
    """Where the dialect notifies, announce to the queue workers whenever a row becomes
    ENQUEUED (a trigger, so no writer can forget it), except rows parked on hold queues
    (debounce windows, buffered ticks), which wait for the scheduler."""
    announcer = Announcer(
        channel=WAKEUP_CHANNEL,
        payload=QUEUE_WAKEUP_PREFIX + (db.schema or ""),
        held_queue=DEBOUNCE_HOLD_QUEUE,
        held_prefix=HOLD_QUEUE_PREFIX,
    )
    db.dialect.announce_enqueues(conn, db.schema, announcer)


def add_executor_process_columns(db: Database, conn: Connection) -> None:
    """Version 3: who holds each executor ID (host, process, incarnation); see
    engine.core.liveness. Rows written before it keep NULLs and are judged by heartbeats alone."""
    table = quoted_name(executors, db.schema)
    for name in EXECUTOR_PROCESS_COLUMNS:
        sql_type = executors.c[name].type.compile(dialect=conn.dialect)
        conn.execute(text(f'ALTER TABLE {table} ADD COLUMN "{name}" {sql_type}'))


# version -> step that upgrades a database from version-1 to version.
MIGRATIONS: dict[int, Callable[[Database, Connection], None]] = {
    2: install_enqueue_notify,
    3: add_executor_process_columns,
}


def migrate_system_database(db: Database) -> int:
    """Bring the system database to ``SCHEMA_VERSION``; returns the version found before."""
    ensure_database_exists(db)
    with db.write() as conn:
        _lock_and_create_schema(db, conn)
        found = _current_version(db, conn)
        if found is None:
            metadata.create_all(conn)
            install_enqueue_notify(db, conn)
            conn.execute(schema_version.insert().values(version=SCHEMA_VERSION))
            return 0
        if found > SCHEMA_VERSION:
            raise DBOSSchemaVersionError(
                f"the system database {db.db_url.masked} has schema version {found}, but this "
                f"keeptime understands versions up to {SCHEMA_VERSION} (upgrade keeptime, or "
                "point it at another database)"
            )
        for version in range(found + 1, SCHEMA_VERSION + 1):
            MIGRATIONS[version](db, conn)
            conn.execute(schema_version.update().values(version=version))
        return found


def create_application_tables(db: Database) -> None:
    """The application database only needs the transaction checkpoint table."""
    ensure_database_exists(db)
    with db.write() as conn:
        _lock_and_create_schema(db, conn)
        app_metadata.create_all(conn)


def drop_system_tables(db: Database) -> None:
    with db.write() as conn:
        _lock_and_create_schema(db, conn)
        _drop_all(metadata, conn)
        db.dialect.drop_enqueue_announcer(conn, db.schema)


def drop_application_tables(db: Database) -> None:
    with db.write() as conn:
        _lock_and_create_schema(db, conn)
        _drop_all(app_metadata, conn)


def _drop_all(meta: MetaData, conn: Connection) -> None:
    meta.drop_all(conn)


def _lock_and_create_schema(db: Database, conn: Connection) -> None:
    db.dialect.prepare_migration(conn, db.schema)


def _current_version(db: Database, conn: Connection) -> int | None:
    if not inspect(conn).has_table(schema_version.name, schema=db.schema):
        return None
    value = conn.execute(select(schema_version.c.version)).scalar()
    return int(value) if value is not None else None
