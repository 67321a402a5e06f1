"""Listing and managing workflows: the queries behind list/get/steps, cancel, resume, fork and
requeue, and recovery's view of PENDING work.

``SystemStore`` exposes these (and decides which are retried while the database is
unavailable); this module holds their SQL.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import and_, case, func, or_, select, update

from engine.storage.database import Database
from engine.storage.rows import ListFilter, StepRecord, WorkflowRow
from engine.storage.schema import operation_outputs, workflow_status

#: What resume and requeue take: cancelled, given-up, or still-queued workflows.
RESUMABLE_STATUSES = ("CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED", "ENQUEUED")


class WorkflowManagement:
    """The management and recovery queries of the system store (one transaction each)."""

    def __init__(self, db: Database, now_ms: Callable[[], int]) -> None:
        self.db = db
        self.now_ms = now_ms

    def pending_workflows(
        self, executor_ids: Sequence[str], app_version: str | None
    ) -> list[WorkflowRow]:
        query = select(workflow_status).where(
            workflow_status.c.status == "PENDING",
            workflow_status.c.executor_id.in_(list(executor_ids)),
        )
        if app_version is not None:
            query = query.where(workflow_status.c.application_version == app_version)
        with self.db.read() as conn:
            rows = conn.execute(query.order_by(workflow_status.c.created_at)).all()
        return [WorkflowRow.from_row(r) for r in rows]

    def start_recovery_attempt(
        self, workflow_id: str, executor_id: str, max_attempts: int | None
    ) -> WorkflowRow | None:
        """Count one more start of this executor's PENDING workflow; past the limit, give up.

        Returns None when the workflow is no longer PENDING on ``executor_id`` (another executor
        took it over), so two executors never both resume it.
        """
        with self.db.write() as conn:
            started = conn.execute(
                update(workflow_status)
                .where(
                    workflow_status.c.workflow_uuid == workflow_id,
                    workflow_status.c.status == "PENDING",
                    workflow_status.c.executor_id == executor_id,
                )
                .values(
                    recovery_attempts=workflow_status.c.recovery_attempts + 1,
                    updated_at=self.now_ms(),
                )
            )
            if not started.rowcount:
                return None
            if max_attempts is not None:
                conn.execute(
                    update(workflow_status)
                    .where(
                        workflow_status.c.workflow_uuid == workflow_id,
                        workflow_status.c.status == "PENDING",
                        workflow_status.c.recovery_attempts > max_attempts + 1,
                    )
                    .values(status="MAX_RECOVERY_ATTEMPTS_EXCEEDED", deduplication_id=None)
                )
            row = conn.execute(
                select(workflow_status).where(workflow_status.c.workflow_uuid == workflow_id)
            ).first()
        return WorkflowRow.from_row(row) if row is not None else None

    def cancel_workflow_tree(self, workflow_id: str) -> list[str]:
        """Cancel a workflow and every non-terminal descendant; returns the IDs cancelled."""
        cancelled: list[str] = []
        with self.db.write() as conn:
            frontier = [workflow_id]
            seen: set[str] = set()
            while frontier:
                current = frontier.pop()
                if current in seen:
                    continue
                seen.add(current)
                result = conn.execute(
                    update(workflow_status)
                    .where(
                        workflow_status.c.workflow_uuid == current,
                        workflow_status.c.status.in_(("PENDING", "ENQUEUED")),
                    )
                    .values(status="CANCELLED", deduplication_id=None, updated_at=self.now_ms())
                )
                if result.rowcount:
                    cancelled.append(current)
                children = (
                    conn.execute(
                        select(workflow_status.c.workflow_uuid).where(
                            workflow_status.c.parent_workflow_id == current
                        )
                    )
                    .scalars()
                    .all()
                )
                frontier.extend(children)
        return cancelled

    def list_workflows(self, flt: ListFilter) -> list[WorkflowRow]:
        ws = workflow_status.c
        conditions: list[Any] = []
        if flt.workflow_ids is not None:
            conditions.append(ws.workflow_uuid.in_(list(flt.workflow_ids)))
        if flt.workflow_id_prefix is not None:
            conditions.append(ws.workflow_uuid.startswith(flt.workflow_id_prefix, autoescape=True))
        if flt.statuses is not None:
            conditions.append(ws.status.in_(list(flt.statuses)))
        if flt.start_ms is not None:
            conditions.append(ws.created_at >= flt.start_ms)
        if flt.end_ms is not None:
            conditions.append(ws.created_at <= flt.end_ms)
        if flt.name is not None:
            conditions.append(ws.name == flt.name)
        if flt.app_version is not None:
            conditions.append(ws.application_version == flt.app_version)
        if flt.user is not None:
            conditions.append(ws.authenticated_user == flt.user)
        if flt.queue_name is not None:
            conditions.append(ws.queue_name == flt.queue_name)
        if flt.queued_only:
            conditions.append(
                and_(
                    ws.queue_name.is_not(None), or_(ws.status == "ENQUEUED", ws.status == "PENDING")
                )
            )
        order = (
            (ws.created_at.desc(), ws.workflow_uuid.desc())
            if flt.sort_desc
            else (ws.created_at.asc(), ws.workflow_uuid.asc())
        )
        query = select(workflow_status).where(*conditions).order_by(*order)
        if flt.limit is not None:
            query = query.limit(flt.limit)
        if flt.offset is not None:
            query = query.offset(flt.offset)
        with self.db.read() as conn:
            rows = conn.execute(query).all()
        return [WorkflowRow.from_row(r) for r in rows]

    def list_steps(self, workflow_id: str) -> list[StepRecord]:
        with self.db.read() as conn:
            rows = conn.execute(
                select(operation_outputs)
                .where(operation_outputs.c.workflow_uuid == workflow_id)
                .order_by(operation_outputs.c.function_id)
            ).all()
        return [StepRecord.from_row(r) for r in rows]

    def count_workflows(self) -> int:
        with self.db.read() as conn:
            return int(
                conn.execute(select(func.count()).select_from(workflow_status)).scalar() or 0
            )

    def cancelled_among(self, workflow_ids: Sequence[str]) -> list[str]:
        """Which of these workflows are CANCELLED (the watcher's one query per interval)."""
        if not workflow_ids:
            return []
        with self.db.read() as conn:
            return list(
                conn.execute(
                    select(workflow_status.c.workflow_uuid).where(
                        workflow_status.c.workflow_uuid.in_(list(workflow_ids)),
                        workflow_status.c.status == "CANCELLED",
                    )
                ).scalars()
            )

    def resume_workflow(
        self, workflow_id: str, executor_id: str
    ) -> tuple[bool, WorkflowRow | None]:
        """Make a cancelled, given-up or still-queued workflow PENDING here, off its queue.

        Returns (changed, row). A PENDING or finished workflow is left as it is.
        """
        now = self.now_ms()
        with self.db.write() as conn:
            result = conn.execute(
                update(workflow_status)
                .where(
                    workflow_status.c.workflow_uuid == workflow_id,
                    workflow_status.c.status.in_(RESUMABLE_STATUSES),
                )
                .values(
                    status="PENDING",
                    executor_id=executor_id,
                    recovery_attempts=0,
                    queue_name=None,
                    deduplication_id=None,
                    # A resumed workflow gets its full timeout again, from now.
                    deadline_epoch_ms=case(
                        (
                            workflow_status.c.timeout_ms.is_not(None),
                            now + workflow_status.c.timeout_ms,
                        ),
                        else_=None,
                    ),
                    started_at_epoch_ms=now,
                    updated_at=now,
                )
            )
            row = conn.execute(
                select(workflow_status).where(workflow_status.c.workflow_uuid == workflow_id)
            ).first()
        return bool(result.rowcount), (WorkflowRow.from_row(row) if row is not None else None)

    def fork_workflow(self, source: WorkflowRow, new_row: WorkflowRow, start_step: int) -> None:
        """Create ``new_row`` with copies of the source's steps before ``start_step``."""
        with self.db.write() as conn:
            conn.execute(workflow_status.insert().values(**new_row.values()))
            steps = conn.execute(
                select(operation_outputs).where(
                    operation_outputs.c.workflow_uuid == source.workflow_uuid,
                    operation_outputs.c.function_id < start_step,
                )
            ).all()
            for step in steps:
                values = dict(step._mapping)
                values["workflow_uuid"] = new_row.workflow_uuid
                conn.execute(operation_outputs.insert().values(**values))

    def requeue_workflow(self, workflow_id: str, queue_name: str) -> bool:
        """Put a cancelled, given-up or queued workflow on ``queue_name`` for any executor."""
        with self.db.write() as conn:
            result = conn.execute(
                update(workflow_status)
                .where(
                    workflow_status.c.workflow_uuid == workflow_id,
                    workflow_status.c.status.in_(RESUMABLE_STATUSES),
                )
                .values(
                    status="ENQUEUED",
                    queue_name=queue_name,
                    queue_partition_key=None,
                    deduplication_id=None,
                    priority=None,
                    executor_id=None,
                    recovery_attempts=0,
                    started_at_epoch_ms=None,
                    deadline_epoch_ms=None,
                    updated_at=self.now_ms(),
                )
            )
        return bool(result.rowcount)
