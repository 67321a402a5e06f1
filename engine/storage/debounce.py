"""Debounce windows in the system database.

A window is one ``debounce_windows`` row per (namespace, key) plus the debounced workflow itself,
created at the window's first call as an ENQUEUED row on a queue no worker serves
(:data:`DEBOUNCE_HOLD_QUEUE`). Each call replaces the held row's inputs and moves the window's
deadline, in one transaction. Firing deletes the window and releases the held row in one
transaction, so exactly one process starts it, and a call after that opens a new window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, select, update

from engine.core.debounce import next_fire_at, open_window
from engine.error import DBOSStorageError
from engine.storage.schedules import release_values
from engine.storage.schema import debounce_windows, workflow_status
from engine.storage.store import SystemStore, WorkflowRow

dw = debounce_windows.c
ws = workflow_status.c

DEBOUNCE_HOLD_QUEUE = "_keeptime_debounce"
_MAX_RACES = 20


@dataclass(frozen=True)
class DebounceCall:
    namespace: str
    key: str
    period_ms: int
    max_wait_ms: int | None
    queue_name: str | None
    held: WorkflowRow  # the workflow to create if this call opens a window


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


class _LostRace(Exception):
    """Another transaction opened the window first; retry as an update."""


class DebounceStore:
    def __init__(self, store: SystemStore) -> None:
        self.store = store
        self.db = store.db

    def debounce(self, call: DebounceCall) -> Window:
        """Join the open window for the key (replacing its inputs) or open a new one."""
        for _ in range(_MAX_RACES):
            try:
                with self.db.write() as conn:
                    return self._debounce(conn, call, self.store.now_ms())
            except _LostRace:
                continue
        raise DBOSStorageError(
            f"debounce of key {call.key!r} kept racing with other writers; try again"
        )

    def _debounce(self, conn: Connection, call: DebounceCall, now: int) -> Window:
        query = select(dw.workflow_id, dw.max_fire_at_ms).where(
            dw.namespace == call.namespace, dw.debounce_key == call.key
        )
        if not self.db.is_sqlite:
            query = query.with_for_update()
        found = conn.execute(query).first()
        if found is not None:
            joined = self._join(conn, call, found[0], found[1], now)
            if joined is not None:
                return joined
            conn.execute(_delete_window(call.namespace, call.key))
        return self._open(conn, call, now)

    def _join(
        self, conn: Connection, call: DebounceCall, workflow_id: str, max_at: int | None, now: int
    ) -> Window | None:
        replaced = conn.execute(
            update(workflow_status)
            .where(
                ws.workflow_uuid == workflow_id,
                ws.status == "ENQUEUED",
                ws.queue_name == DEBOUNCE_HOLD_QUEUE,
            )
            .values(inputs=call.held.inputs, updated_at=now)
        )
        if not replaced.rowcount:
            return None  # cancelled or released meanwhile: the window is over
        fire_at = next_fire_at(now, call.period_ms, max_at)
        conn.execute(
            update(debounce_windows)
            .where(dw.namespace == call.namespace, dw.debounce_key == call.key)
            .values(fire_at_ms=fire_at)
        )
        return Window(call.namespace, call.key, workflow_id, fire_at)

    def _open(self, conn: Connection, call: DebounceCall, now: int) -> Window:
        fire_at, max_at = open_window(now, call.period_ms, call.max_wait_ms)
        inserted = conn.execute(
            self.store._insert(debounce_windows)
            .values(
                namespace=call.namespace,
                debounce_key=call.key,
                workflow_id=call.held.workflow_uuid,
                first_call_ms=now,
                fire_at_ms=fire_at,
                max_fire_at_ms=max_at,
                queue_name=call.queue_name,
            )
            .on_conflict_do_nothing()
            .returning(dw.workflow_id)
        ).first()
        if inserted is None:
            raise _LostRace()
        conn.execute(self.store._insert(workflow_status).values(**call.held.values()))
        return Window(call.namespace, call.key, call.held.workflow_uuid, fire_at)

    def fire(self, namespace: str, key: str, executor_id: str, app_version: str) -> FireOutcome:
        """Close the window if it is due and release its workflow (to its queue or to us)."""
        now = self.store.now_ms()
        with self.db.write() as conn:
            query = select(dw.workflow_id, dw.fire_at_ms, dw.queue_name).where(
                dw.namespace == namespace, dw.debounce_key == key
            )
            if not self.db.is_sqlite:
                query = query.with_for_update()
            found = conn.execute(query).first()
            if found is None:
                return FireOutcome(None, None)
            workflow_id, fire_at, queue_name = found
            if fire_at > now:
                return FireOutcome(None, int(fire_at))
            conn.execute(_delete_window(namespace, key))
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

    def open_windows(self) -> list[Window]:
        with self.db.read() as conn:
            rows = conn.execute(
                select(dw.namespace, dw.debounce_key, dw.workflow_id, dw.fire_at_ms).order_by(
                    dw.fire_at_ms
                )
            ).all()
        return [Window(r[0], r[1], r[2], int(r[3])) for r in rows]


def _delete_window(namespace: str, key: str) -> Any:
    return delete(debounce_windows).where(dw.namespace == namespace, dw.debounce_key == key)
