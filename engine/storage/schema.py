"""The system database schema: the single source of truth for every table and index.

Tables live in the placeholder schema ``dbos``; the engine maps it to the configured PostgreSQL
schema (``dbos_system_schema``) or to nothing on SQLite via ``schema_translate_map``.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

SCHEMA_PLACEHOLDER = "dbos"
SCHEMA_VERSION = 3  # 2: the enqueue NOTIFY trigger (PostgreSQL); 3: executor process columns

metadata = MetaData(schema=SCHEMA_PLACEHOLDER)

schema_version = Table(
    "keeptime_schema_version",
    metadata,
    Column("version", Integer, nullable=False),
)

workflow_status = Table(
    "workflow_status",
    metadata,
    Column("workflow_uuid", Text, primary_key=True),
    Column("status", String(40), nullable=False),
    Column("name", Text, nullable=False),
    Column("class_name", Text),
    Column("config_name", Text),
    Column("authenticated_user", Text),
    Column("assumed_role", Text),
    Column("authenticated_roles", Text),
    Column("inputs", Text),
    Column("output", Text),
    Column("error", Text),
    Column("executor_id", Text),
    Column("application_version", Text),
    Column("application_id", Text),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("recovery_attempts", Integer, nullable=False, default=0),
    Column("queue_name", Text),
    Column("queue_partition_key", Text),
    Column("deduplication_id", Text),
    Column("priority", Integer),
    Column("timeout_ms", BigInteger),
    Column("deadline_epoch_ms", BigInteger),
    Column("started_at_epoch_ms", BigInteger),
    Column("parent_workflow_id", Text),
    # Enqueue order within one millisecond of created_at (microseconds, per process monotonic).
    Column("queue_order", BigInteger),
    Index("ix_ws_created_at", "created_at"),
    Index("ix_ws_status_created", "status", "created_at"),
    Index("ix_ws_name_created", "name", "created_at"),
    Index("ix_ws_executor_status", "executor_id", "status"),
    Index("ix_ws_app_version", "application_version", "created_at"),
    Index("ix_ws_user", "authenticated_user", "created_at"),
    Index("ix_ws_queue_status", "queue_name", "status", "priority", "created_at"),
    Index("ix_ws_queue_started", "queue_name", "started_at_epoch_ms"),
    Index("ix_ws_parent", "parent_workflow_id"),
    Index("ux_ws_dedup", "queue_name", "deduplication_id", unique=True),
)

operation_outputs = Table(
    "operation_outputs",
    metadata,
    Column("workflow_uuid", Text, nullable=False),
    Column("function_id", Integer, nullable=False),
    Column("function_name", Text, nullable=False),
    Column("output", Text),
    Column("error", Text),
    Column("child_workflow_id", Text),
    Column("started_at_epoch_ms", BigInteger),
    Column("completed_at_epoch_ms", BigInteger),
    PrimaryKeyConstraint("workflow_uuid", "function_id"),
)

notifications = Table(
    "notifications",
    metadata,
    Column("message_id", Text, primary_key=True),
    Column("destination_uuid", Text, nullable=False),
    Column("topic", Text, nullable=False),
    Column("message", Text, nullable=False),
    Column("created_at_epoch_ms", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Index("ix_notifications_dest_topic", "destination_uuid", "topic", "seq"),
)

workflow_events = Table(
    "workflow_events",
    metadata,
    Column("workflow_uuid", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("value", Text, nullable=False),
    PrimaryKeyConstraint("workflow_uuid", "key"),
)

streams = Table(
    "streams",
    metadata,
    Column("workflow_uuid", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("offset", Integer, nullable=False),
    Column("value", Text),
    Column("closed", Integer, nullable=False, default=0),
    PrimaryKeyConstraint("workflow_uuid", "key", "offset"),
)

executors = Table(
    "executors",
    metadata,
    Column("executor_id", Text, primary_key=True),
    Column("application_version", Text),
    Column("last_heartbeat_ms", BigInteger, nullable=False),
    # Who holds the ID (engine.core.liveness): the host, and the PID with the boot and PID
    # namespace it belongs to (process_key) and its start time, so a process on the same
    # machine can ask the kernel whether the holder still runs. A new UUID per launch
    # (incarnation) guards heartbeats and takeovers against a holder that changed meanwhile.
    Column("host", Text),
    Column("pid", Integer),
    Column("process_key", Text),
    Column("process_start", Text),
    Column("incarnation", Text),
    Column("started_at_ms", BigInteger),
)

# Columns added to ``executors`` by schema version 3 (see engine.storage.migrations).
EXECUTOR_PROCESS_COLUMNS = (
    "host",
    "pid",
    "process_key",
    "process_start",
    "incarnation",
    "started_at_ms",
)

# Schedules: the definition (for management without a running scheduler), the pause flag, and the
# catch-up watermark (the last nominal tick handled), so catch-up decisions survive restarts.
schedules = Table(
    "schedules",
    metadata,
    Column("name", Text, primary_key=True),
    Column("source", String(16), nullable=False),  # "decorator" or "managed"
    Column("definition", Text, nullable=False),  # JSON: cron, timezone, workflow, policies, queue
    Column("inputs", Text),  # extra workflow arguments, encoded with the configured serializer
    Column("paused", Integer, nullable=False, default=0),
    Column("last_tick_epoch_ms", BigInteger),
    Column("last_workflow_id", Text),
    Column("updated_at", BigInteger, nullable=False),
)

# Open debounce windows: one per (namespace, key). The debounced workflow itself is a held
# ENQUEUED row whose inputs each debounce call replaces; firing deletes the window and releases it.
debounce_windows = Table(
    "debounce_windows",
    metadata,
    Column("namespace", Text, nullable=False),
    Column("debounce_key", Text, nullable=False),
    Column("workflow_id", Text, nullable=False),
    Column("first_call_ms", BigInteger, nullable=False),
    Column("fire_at_ms", BigInteger, nullable=False),
    Column("max_fire_at_ms", BigInteger),
    Column("queue_name", Text),
    PrimaryKeyConstraint("namespace", "debounce_key"),
    Index("ix_debounce_fire_at", "fire_at_ms"),
)

# Application database: checkpoints of @DBOS.transaction, committed with the transaction itself.
app_metadata = MetaData(schema=SCHEMA_PLACEHOLDER)

transaction_outputs = Table(
    "transaction_outputs",
    app_metadata,
    Column("workflow_uuid", Text, nullable=False),
    Column("function_id", Integer, nullable=False),
    Column("output", Text),
    Column("created_at", BigInteger, nullable=False),
    PrimaryKeyConstraint("workflow_uuid", "function_id"),
)


def quoted_name(table: Table, schema: str | None) -> str:
    """``table``'s quoted, schema-qualified name (no schema on SQLite), for hand-written SQL."""
    return f'"{table.name}"' if schema is None else f'"{schema}"."{table.name}"'
