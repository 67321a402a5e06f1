"""Executor heartbeats, and taking over the PENDING work of executors that stopped beating."""

from __future__ import annotations

from sqlalchemy import delete, select, update

from engine.storage.schema import executors, workflow_status
from engine.storage.store import SystemStore, WorkflowRow

ws = workflow_status.c


class ExecutorStore:
    def __init__(self, store: SystemStore) -> None:
        self.store = store
        self.db = store.db

    def heartbeat(self, executor_id: str, app_version: str) -> None:
        now = self.store.now_ms()
        stmt = self.store._insert(executors).values(
            executor_id=executor_id, application_version=app_version, last_heartbeat_ms=now
        )
        with self.db.write() as conn:
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["executor_id"],
                    set_={"application_version": app_version, "last_heartbeat_ms": now},
                )
            )

    def forget(self, executor_id: str) -> None:
        with self.db.write() as conn:
            conn.execute(delete(executors).where(executors.c.executor_id == executor_id))

    def dead_executors(self, me: str, stale_after_ms: int) -> list[str]:
        cutoff = self.store.now_ms() - stale_after_ms
        with self.db.read() as conn:
            return list(
                conn.execute(
                    select(executors.c.executor_id).where(
                        executors.c.last_heartbeat_ms < cutoff, executors.c.executor_id != me
                    )
                ).scalars()
            )

    def take_over(self, dead_id: str, me: str, app_version: str) -> list[WorkflowRow]:
        """Move the dead executor's PENDING workflows of our version to us (one winner per row)."""
        now = self.store.now_ms()
        with self.db.write() as conn:
            ids = list(
                conn.execute(
                    update(workflow_status)
                    .where(
                        ws.status == "PENDING",
                        ws.executor_id == dead_id,
                        ws.application_version == app_version,
                    )
                    .values(executor_id=me, updated_at=now)
                    .returning(ws.workflow_uuid)
                ).scalars()
            )
            left = conn.execute(
                select(ws.workflow_uuid)
                .where(ws.status == "PENDING", ws.executor_id == dead_id)
                .limit(1)
            ).first()
            if left is None:
                conn.execute(delete(executors).where(executors.c.executor_id == dead_id))
            if not ids:
                return []
            rows = conn.execute(select(workflow_status).where(ws.workflow_uuid.in_(ids))).all()
        return [WorkflowRow.from_row(r) for r in rows]
