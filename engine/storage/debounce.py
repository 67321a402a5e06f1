"""Debounce windows in the system database.

A window is one ``debounce_windows`` row per (namespace, key) plus the debounced workflow itself,
created at the window's first call as an ENQUEUED row on a queue no worker serves
(:data:`DEBOUNCE_HOLD_QUEUE`). Each call replaces the held row's inputs and moves the window's
deadline, in one transaction. Firing deletes the window and releases the held row in one
transaction, so exactly one process starts it, and a call after that opens a new window.

A call is the hot path (one durable write each), so its SQL is plain text built once per database
and run on the driver's connection: no SQLAlchemy compilation or execution machinery per call. On
SQLite a call is one transaction: an upsert of the window that returns the window's workflow, then
the insert (a new window) or the update (joined) of that workflow. On PostgreSQL the same three
statements are one autocommitted statement (data-modifying CTEs), so one round trip that is also
the commit; when that statement cannot tell (a concurrent first call, a cancelled workflow), the
call is redone as the transaction above.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, select, update

from engine.core.debounce import open_window
from engine.storage.dialect import Dialect
from engine.storage.schedules import release_values
from engine.storage.schema import debounce_windows, quoted_name, workflow_status
from engine.storage.store import SystemStore, WorkflowRow, retry_on_connection_loss

dw = debounce_windows.c
ws = workflow_status.c

DEBOUNCE_HOLD_QUEUE = "_keeptime_debounce"


@dataclass(frozen=True)
class DebounceCall:
    namespace: str
    key: str
    period_ms: int
    max_wait_ms: int | None
    queue_name: str | None
    workflow_name: str
    inputs: str | None
    new_workflow_id: str  # the ID of the workflow to create if this call opens a window


@dataclass(frozen=True)
class Window:
    namespace: str
    key: str
    workflow_id: str
    fire_at_ms: int


@dataclass(frozen=True)
class FireOutcome:
    """What an attempt to fire found: the released workflow, or when the window is due now."""

    released: WorkflowRow | None
    not_before_ms: int | None


class DebounceStore:
    def __init__(self, store: SystemStore) -> None:
        self.store = store
        self.db = store.db
        self._call_sql = _call_sql(self.db.dialect, self.db.schema)

    def debounce(self, call: DebounceCall) -> Window:
        """Join the open window for the key (replacing its inputs) or open a new one."""
        sql = self._call_sql
        params = _call_params(call, self.store.now_ms())
        if sql.one_statement is not None:
            found = self._debounce_in_one_statement(sql.one_statement, params)
            if found is not None:
                return Window(call.namespace, call.key, found[0], found[1])
            # The window was opened by a transaction that committed after this statement's
            # snapshot, or its workflow was cancelled: redo the call in a transaction, whose
            # later statements see every commit.
            params = _call_params(call, self.store.now_ms())
        with self.db.write() as conn:
            workflow_id, fire_at = _debounce_in_transaction(self.db.dialect, conn, sql, params)
        return Window(call.namespace, call.key, workflow_id, fire_at)

    def _debounce_in_one_statement(
        self, statement: str, params: dict[str, Any]
    ) -> tuple[str, int] | None:
        """The whole call as one autocommitted statement; None when the transaction must decide."""
        # Database.write() would cost a BEGIN and a COMMIT round trip more.
        with self.db.autocommit() as conn:
            row = self.db.dialect.first_row_on_driver(conn, statement, params)
            workflow_id, fire_at, done = row
        return (workflow_id, int(fire_at)) if done else None

    def fire(self, namespace: str, key: str, executor_id: str, app_version: str) -> FireOutcome:
        """Close the window if it is due and release its workflow (to its queue or to us)."""
        now = self.store.now_ms()
        with self.db.write() as conn:
            # FOR UPDATE: SQLite leaves it out (its writers are serialized).
            query = (
                select(dw.workflow_id, dw.fire_at_ms, dw.queue_name)
                .where(dw.namespace == namespace, dw.debounce_key == key)
                .with_for_update()
            )
            found = conn.execute(query).first()
            if found is None:
                return FireOutcome(None, None)
            workflow_id, fire_at, queue_name = found
            if fire_at > now:
                return FireOutcome(None, int(fire_at))
            conn.execute(
                delete(debounce_windows).where(dw.namespace == namespace, dw.debounce_key == key)
            )
            released = conn.execute(
                update(workflow_status)
                .where(
                    ws.workflow_uuid == workflow_id,
                    ws.status == "ENQUEUED",
                    ws.queue_name == DEBOUNCE_HOLD_QUEUE,
                )
                .values(**release_values(queue_name, executor_id, app_version, now))
            )
            if not released.rowcount:
                return FireOutcome(None, None)
            row = conn.execute(select(workflow_status).where(ws.workflow_uuid == workflow_id)).one()
        return FireOutcome(WorkflowRow.from_row(row), None)

    @retry_on_connection_loss
    def due_windows(self, until_ms: int, limit: int = 500) -> list[Window]:
        """Open windows whose deadline is at or before ``until_ms``, earliest first."""
        with self.db.read() as conn:
            rows = conn.execute(
                select(dw.namespace, dw.debounce_key, dw.workflow_id, dw.fire_at_ms)
                .where(dw.fire_at_ms <= until_ms)
                .order_by(dw.fire_at_ms)
                .limit(limit)
            ).all()
        return [Window(r[0], r[1], r[2], int(r[3])) for r in rows]

    @retry_on_connection_loss
    def open_windows(self) -> list[Window]:
        with self.db.read() as conn:
            rows = conn.execute(
                select(dw.namespace, dw.debounce_key, dw.workflow_id, dw.fire_at_ms).order_by(
                    dw.fire_at_ms
                )
            ).all()
        return [Window(r[0], r[1], r[2], int(r[3])) for r in rows]


# -- one call --------------------------------------------------------------------------------------


def _call_params(call: DebounceCall, now: int) -> dict[str, Any]:
    fire_at, max_at = open_window(now, call.period_ms, call.max_wait_ms)
    return {
        "namespace": call.namespace,
        "key": call.key,
        "new_id": call.new_workflow_id,
        "now": now,
        "fire_at": fire_at,
        "max_at": max_at,
        "quiet": now + call.period_ms,  # a joined window's deadline, before its cap
        "queue": call.queue_name,
        "name": call.workflow_name,
        "inputs": call.inputs,
        "enqueued": "ENQUEUED",
        "hold": DEBOUNCE_HOLD_QUEUE,
    }


def _debounce_in_transaction(
    dialect: Dialect, conn: Connection, sql: _CallSql, params: dict[str, Any]
) -> tuple[str, int]:
    """The call as statements of one transaction: (the window's workflow ID, its deadline)."""
    first_row, rowcount = dialect.first_row_on_driver, dialect.rowcount_on_driver
    workflow_id, fire_at = first_row(conn, sql.upsert_window, params)
    if workflow_id != params["new_id"]:
        joined = {**params, "workflow_id": workflow_id}
        if rowcount(conn, sql.replace_inputs, joined):
            return workflow_id, int(fire_at)
        # Its workflow was cancelled meanwhile: that window is over, open a new one.
        rowcount(conn, sql.delete_window, params)
        workflow_id, fire_at = first_row(conn, sql.upsert_window, params)
    rowcount(conn, sql.insert_held, params)
    return workflow_id, int(fire_at)


@dataclass(frozen=True)
class _CallSql:
    upsert_window: str
    replace_inputs: str
    delete_window: str
    insert_held: str
    one_statement: str | None  # the whole call at once, where the dialect can


def _call_sql(dialect: Dialect, schema: str | None) -> _CallSql:
    """The SQL of a call, in the driver's parameter style (``Dialect.driver_sql``)."""

    windows = quoted_name(debounce_windows, schema)
    workflows = quoted_name(workflow_status, schema)
    # A joined window's deadline is next_fire_at() (engine/core/debounce.py) in SQL.
    upsert = (
        f"INSERT INTO {windows} AS d (namespace, debounce_key, workflow_id, first_call_ms,"
        " fire_at_ms, max_fire_at_ms, queue_name)"
        " VALUES (:namespace, :key, :new_id, :now, :fire_at, :max_at, :queue)"
        " ON CONFLICT (namespace, debounce_key) DO UPDATE SET fire_at_ms = CASE"
        " WHEN d.max_fire_at_ms IS NULL OR d.max_fire_at_ms > :quiet THEN :quiet"
        " ELSE d.max_fire_at_ms END"
        " RETURNING workflow_id, fire_at_ms"
    )
    held_columns = (
        "(workflow_uuid, status, name, inputs, created_at, updated_at, recovery_attempts,"
        " queue_name)"
    )
    held_values = ":new_id, :enqueued, :name, :inputs, :now, :now, 0, :hold"
    one_statement = (
        # The parts share one snapshot: a window opened by a transaction that committed while
        # the upsert waited for it has a workflow row that `joined` cannot see, so the statement
        # reports "not done", as for a cancelled workflow, and the caller redoes the call in a
        # transaction.
        f"WITH w AS ({upsert}),"
        f" opened AS (INSERT INTO {workflows} {held_columns} SELECT {held_values} FROM w"
        " WHERE w.workflow_id = :new_id RETURNING 1),"
        f" joined AS (UPDATE {workflows} AS s SET inputs = :inputs, updated_at = :now FROM w"
        " WHERE s.workflow_uuid = w.workflow_id AND w.workflow_id <> :new_id"
        " AND s.status = :enqueued AND s.queue_name = :hold RETURNING 1)"
        " SELECT w.workflow_id, w.fire_at_ms,"
        " EXISTS (SELECT 1 FROM opened) OR EXISTS (SELECT 1 FROM joined) FROM w"
    )

    driver = dialect.driver_sql
    return _CallSql(
        upsert_window=driver(upsert),
        replace_inputs=driver(
            f"UPDATE {workflows} SET inputs = :inputs, updated_at = :now"
            " WHERE workflow_uuid = :workflow_id AND status = :enqueued AND queue_name = :hold"
        ),
        delete_window=driver(
            f"DELETE FROM {windows} WHERE namespace = :namespace AND debounce_key = :key"
        ),
        insert_held=driver(f"INSERT INTO {workflows} {held_columns} VALUES ({held_values})"),
        one_statement=driver(one_statement) if dialect.writes_in_one_statement else None,
    )
