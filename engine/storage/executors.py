"""The ``executors`` table: who holds each executor ID, heartbeats, and taking over the PENDING
work of executors judged dead (the judging itself is engine.core.liveness)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Row, delete, select, update

from engine.core.liveness import ExecutorRecord, ProcessIdentity
from engine.storage.schema import executors, workflow_status
from engine.storage.store import SystemStore, WorkflowRow, retry_on_connection_loss

ws = workflow_status.c
ex = executors.c


class Beat(StrEnum):
    """What a heartbeat found."""

    BEATING = "beating"  # our row, our incarnation: the normal case
    REINSTATED = "reinstated"  # our row was gone (our work was taken over); written anew
    SUPPLANTED = "supplanted"  # another process holds our ID now; nothing written


@dataclass(frozen=True, slots=True)
class Holder:
    """The process claiming or holding an executor ID."""

    executor_id: str
    application_version: str
    incarnation: str
    process: ProcessIdentity


class ExecutorStore:
    def __init__(self, store: SystemStore) -> None:
        self.store = store
        self.db = store.db

    @retry_on_connection_loss
    def read(self, executor_id: str) -> ExecutorRecord | None:
        with self.db.read() as conn:
            row = conn.execute(select(executors).where(ex.executor_id == executor_id)).first()
        return _record(row) if row is not None else None

    @retry_on_connection_loss
    def others(self, me: str) -> list[ExecutorRecord]:
        """Every executor row but ours."""
        with self.db.read() as conn:
            rows = conn.execute(select(executors).where(ex.executor_id != me)).all()
        return [_record(r) for r in rows]

    @retry_on_connection_loss
    def claim(self, holder: Holder, seen: ExecutorRecord | None) -> bool:
        """Take the ID if its row is still as ``seen`` (absent, or the same incarnation and
        heartbeat): of two processes claiming at once, exactly one wins."""
        now = self.store.now_ms()
        values = self._holder_values(holder, now)
        with self.db.write() as conn:
            if seen is None:
                stmt = self.db.dialect.insert(executors).values(
                    executor_id=holder.executor_id, **values
                )
                if _inserted(conn, stmt):
                    return True
                # A retried attempt whose first try committed finds its own row.
                return _holds(conn, holder)
            claimed = conn.execute(update(executors).where(_unchanged_since(seen)).values(**values))
            return bool(claimed.rowcount) or _holds(conn, holder)

    @retry_on_connection_loss
    def heartbeat(self, holder: Holder) -> Beat:
        now = self.store.now_ms()
        with self.db.write() as conn:
            beat = conn.execute(
                update(executors)
                .where(ex.executor_id == holder.executor_id, ex.incarnation == holder.incarnation)
                .values(last_heartbeat_ms=now, application_version=holder.application_version)
            )
            if beat.rowcount:
                return Beat.BEATING
            stmt = self.db.dialect.insert(executors).values(
                executor_id=holder.executor_id, **self._holder_values(holder, now)
            )
            return Beat.REINSTATED if _inserted(conn, stmt) else Beat.SUPPLANTED

    def take_over(self, dead: ExecutorRecord, me: str, app_version: str) -> list[WorkflowRow]:
        """Move the dead executor's PENDING workflows of our version to us, provided its row is
        still as we judged it (it did not beat, and no restart claimed its ID meanwhile)."""
        now = self.store.now_ms()
        with self.db.write() as conn:
            # Marking the row first locks it: a claim or heartbeat of the same ID waits for us
            # and then finds the row changed, or runs first and makes this update match nothing.
            marked = conn.execute(
                update(executors)
                .where(_unchanged_since(dead))
                .values(incarnation=f"taken-over-by:{me}")
            )
            if not marked.rowcount:
                return []
            ids = list(
                conn.execute(
                    update(workflow_status)
                    .where(
                        ws.status == "PENDING",
                        ws.executor_id == dead.executor_id,
                        ws.application_version == app_version,
                    )
                    .values(executor_id=me, updated_at=now)
                    .returning(ws.workflow_uuid)
                ).scalars()
            )
            left = conn.execute(
                select(ws.workflow_uuid)
                .where(ws.status == "PENDING", ws.executor_id == dead.executor_id)
                .limit(1)
            ).first()
            if left is None:
                conn.execute(delete(executors).where(ex.executor_id == dead.executor_id))
            if not ids:
                return []
            rows = conn.execute(select(workflow_status).where(ws.workflow_uuid.in_(ids))).all()
        return [WorkflowRow.from_row(r) for r in rows]

    @staticmethod
    def _holder_values(holder: Holder, now: int) -> dict[str, Any]:
        return {
            "application_version": holder.application_version,
            "last_heartbeat_ms": now,
            "host": holder.process.host,
            "pid": holder.process.pid,
            "process_key": holder.process.process_key,
            "process_start": holder.process.process_start,
            "incarnation": holder.incarnation,
            "started_at_ms": now,
        }


def _unchanged_since(seen: ExecutorRecord) -> Any:
    incarnation = (
        ex.incarnation.is_(None) if seen.incarnation is None else ex.incarnation == seen.incarnation
    )
    return (
        (ex.executor_id == seen.executor_id)
        & incarnation
        & (ex.last_heartbeat_ms == seen.last_heartbeat_ms)
    )


def _holds(conn: Any, holder: Holder) -> bool:
    found = conn.execute(
        select(ex.incarnation).where(ex.executor_id == holder.executor_id)
    ).scalar()
    return bool(found == holder.incarnation)


def _record(row: Row[Any]) -> ExecutorRecord:
    return ExecutorRecord(
        executor_id=row.executor_id,
        application_version=row.application_version,
        last_heartbeat_ms=row.last_heartbeat_ms,
        host=row.host,
        pid=row.pid,
        process_key=row.process_key,
        process_start=row.process_start,
        incarnation=row.incarnation,
    )


def _inserted(conn: Connection, stmt: Any) -> bool:
    """Insert the executor row unless its ID exists; whether this insert made it.

    Judged by the returned row, not ``rowcount``: psycopg reports -1 for an INSERT through
    SQLAlchemy, which read as a success let two processes claim one free ID at once.
    """
    skipped_if_taken = stmt.on_conflict_do_nothing(index_elements=["executor_id"])
    return conn.execute(skipped_if_taken.returning(ex.executor_id)).first() is not None
