"""Versioned schema migrations, applied at launch.

A fresh database gets the current schema from ``schema.metadata`` and is stamped with
``SCHEMA_VERSION``; an older one runs the steps in ``MIGRATIONS`` in order. Several processes may
launch at once: PostgreSQL serializes them with an advisory lock, SQLite with ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, MetaData, inspect, select, text

from engine.error import DBOSSchemaVersionError
from engine.storage.bootstrap import ensure_database_exists
from engine.storage.database import Database
from engine.storage.debounce import DEBOUNCE_HOLD_QUEUE
from engine.storage.messages import WAKEUP_CHANNEL
from engine.storage.schedules import HOLD_QUEUE_PREFIX
from engine.storage.schema import (
    EXECUTOR_PROCESS_COLUMNS,
    SCHEMA_VERSION,
    app_metadata,
    executors,
    metadata,
    schema_version,
)

# The NOTIFY payload that wakes the queue workers of one schema (see install_enqueue_notify).
QUEUE_WAKEUP_PREFIX = "queues:"
_NOTIFY_FUNCTION = "keeptime_notify_enqueued"


def install_enqueue_notify(db: Database, conn: Connection) -> None:
    """On PostgreSQL, NOTIFY the queue workers whenever a row becomes ENQUEUED.

    A trigger covers every way work gets enqueued (the app, DBOSClient in another process,
    resume, fork, a debounce window closing), so no writer can forget the wake-up; PostgreSQL
    folds identical notifications of one transaction into one.
    """
    if db.is_sqlite:
        return
    schema = db.schema
    payload = QUEUE_WAKEUP_PREFIX + (schema or "")
    conn.execute(
        text(
            f'CREATE OR REPLACE FUNCTION "{schema}".{_NOTIFY_FUNCTION}() RETURNS trigger '
            "LANGUAGE plpgsql AS $$ BEGIN "
            f"PERFORM pg_notify('{WAKEUP_CHANNEL}', '{payload}'); RETURN NULL; END $$"
        )
    )
    conn.execute(text(f'DROP TRIGGER IF EXISTS keeptime_enqueued ON "{schema}"."workflow_status"'))
    # Rows parked on hold queues (debounce windows, buffered ticks) wait for the scheduler, not
    # a queue worker: waking every worker for each of them would be pure cost.
    conn.execute(
        text(
            'CREATE TRIGGER keeptime_enqueued AFTER INSERT OR UPDATE OF "status", "queue_name" '
            f'ON "{schema}"."workflow_status" FOR EACH ROW '
            """WHEN (NEW."status" = 'ENQUEUED' """
            f"AND NEW.\"queue_name\" <> '{DEBOUNCE_HOLD_QUEUE}' "
            f"AND NEW.\"queue_name\" NOT LIKE '{_like_prefix(HOLD_QUEUE_PREFIX)}%') "
            f'EXECUTE FUNCTION "{schema}".{_NOTIFY_FUNCTION}()'
        )
    )


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%")


def add_executor_process_columns(db: Database, conn: Connection) -> None:
    """Version 3: who holds each executor ID (host, process, incarnation); see
    engine.core.liveness. Rows written before it keep NULLs and are judged by heartbeats alone."""
    table = f'"{db.schema}"."executors"' if db.schema else '"executors"'
    for name in EXECUTOR_PROCESS_COLUMNS:
        sql_type = executors.c[name].type.compile(dialect=conn.dialect)
        conn.execute(text(f'ALTER TABLE {table} ADD COLUMN "{name}" {sql_type}'))


# version -> step that upgrades a database from version-1 to version.
MIGRATIONS: dict[int, Callable[[Database, Connection], None]] = {
    2: install_enqueue_notify,
    3: add_executor_process_columns,
}

_ADVISORY_LOCK_KEY = 0x6B65_6570_7469_6D65 & 0x7FFF_FFFF_FFFF_FFFF  # "keeptime"


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
        if not db.is_sqlite:
            conn.execute(text(f'DROP FUNCTION IF EXISTS "{db.schema}".{_NOTIFY_FUNCTION}()'))


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
