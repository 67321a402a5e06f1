"""Claiming queued workflows: flow control evaluated inside one write transaction.

On PostgreSQL candidate rows are locked with ``FOR UPDATE SKIP LOCKED`` so concurrent workers
never claim the same workflow; SQLite serializes writers with ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, func, select, update

from engine.storage.schema import workflow_status
from engine.storage.store import SystemStore, WorkflowRow

ws = workflow_status.c


@dataclass(frozen=True)
class ClaimLimits:
    queue_name: str
    concurrency: int | None
    worker_concurrency: int | None
    limit: int | None
    period_ms: int | None
    partitioned: bool
    max_batch: int = 100


class QueueStore:
    def __init__(self, store: SystemStore) -> None:
        self.store = store
        self.db = store.db

    def claim(self, limits: ClaimLimits, executor_id: str, app_version: str) -> list[WorkflowRow]:
        """Move up to the allowed number of ENQUEUED workflows to PENDING on this executor."""
        now = self.store.now_ms()
        claimed: list[WorkflowRow] = []
        with self.db.write() as conn:
            partitions: list[str | None] = [None]
            if limits.partitioned:
                partitions = list(
                    conn.execute(
                        select(ws.queue_partition_key)
                        .where(ws.queue_name == limits.queue_name, ws.status == "ENQUEUED")
                        .distinct()
                    ).scalars()
                )
            for partition in partitions:
                budget = self._budget(conn, limits, partition, executor_id, now)
                if budget <= 0:
                    continue
                claimed.extend(
                    self._claim_rows(conn, limits, partition, budget, executor_id, app_version, now)
                )
        return claimed

    def _budget(
        self,
        conn: Connection,
        limits: ClaimLimits,
        partition: str | None,
        executor_id: str,
        now: int,
    ) -> int:
        budget = limits.max_batch
        scope = [ws.queue_name == limits.queue_name]
        if limits.partitioned:
            scope.append(ws.queue_partition_key == partition)
        if limits.limit is not None and limits.period_ms is not None:
            started = conn.execute(
                select(func.count()).where(*scope, ws.started_at_epoch_ms >= now - limits.period_ms)
            ).scalar_one()
            budget = min(budget, limits.limit - int(started))
        if limits.concurrency is not None:
            running = conn.execute(
                select(func.count()).where(*scope, ws.status == "PENDING")
            ).scalar_one()
            budget = min(budget, limits.concurrency - int(running))
        if limits.worker_concurrency is not None:
            mine = conn.execute(
                select(func.count()).where(
                    *scope, ws.status == "PENDING", ws.executor_id == executor_id
                )
            ).scalar_one()
            budget = min(budget, limits.worker_concurrency - int(mine))
        return budget

    def _claim_rows(
        self,
        conn: Connection,
        limits: ClaimLimits,
        partition: str | None,
        budget: int,
        executor_id: str,
        app_version: str,
        now: int,
    ) -> list[WorkflowRow]:
        query = select(workflow_status).where(
            ws.queue_name == limits.queue_name,
            ws.status == "ENQUEUED",
            (ws.application_version == app_version) | ws.application_version.is_(None),
        )
        if limits.partitioned:
            query = query.where(ws.queue_partition_key == partition)
        # NULL priority (none assigned) first, then lower numbers, then FIFO.
        query = query.order_by(
            ws.priority.is_not(None), ws.priority, ws.created_at, ws.workflow_uuid
        ).limit(budget)
        if not self.db.is_sqlite:
            query = query.with_for_update(skip_locked=True)
        rows = [WorkflowRow.from_row(r) for r in conn.execute(query).all()]
        for row in rows:
            deadline = now + row.timeout_ms if row.timeout_ms is not None else None
            conn.execute(
                update(workflow_status)
                .where(ws.workflow_uuid == row.workflow_uuid, ws.status == "ENQUEUED")
                .values(
                    status="PENDING",
                    executor_id=executor_id,
                    started_at_epoch_ms=now,
                    deadline_epoch_ms=deadline,
                    recovery_attempts=ws.recovery_attempts + 1,
                    updated_at=now,
                )
            )
            row.status = "PENDING"
            row.executor_id = executor_id
            row.started_at_epoch_ms = now
            row.deadline_epoch_ms = deadline
        return rows
