"""Claiming queued workflows: flow control evaluated inside one write transaction.

Correctness across processes:

* SQLite serializes every writer with ``BEGIN IMMEDIATE``, so the counts a claim reads cannot
  change before it commits.
* PostgreSQL locks candidate rows with ``FOR UPDATE SKIP LOCKED``, so two workers never claim the
  same workflow. That alone does not protect *global* limits: two workers could both count
  ``PENDING = 0`` and both claim up to ``concurrency``. A queue with a global concurrency limit or
  a rate limiter therefore also locks the queue's name first (``Dialect.lock_key``: a
  transaction-scoped advisory lock). A claim's statements then see every claim committed before
  it (READ COMMITTED), and the lock is held only for the few milliseconds the claim takes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection, case, func, or_, select, update

from engine.core.admission import ClaimLimits, Usage, claim_budget, earliest, window_frees_at
from engine.storage.schema import workflow_status
from engine.storage.store import (
    SystemStore,
    WorkflowRow,
    retried_with_recheck,
    retry_on_connection_loss,
)

# ClaimLimits and Usage are core's (engine/core/admission.py); importable from here as before.
__all__ = ["ENQUEUE_ORDER", "ClaimLimits", "ClaimResult", "EnqueueOrder", "QueueStore", "Usage"]

ws = workflow_status.c

_LOCK_PREFIX = "keeptime.queue:"


@dataclass
class ClaimResult:
    rows: list[WorkflowRow]
    # When a rate-limit window next frees a slot for work still waiting (epoch ms), if it is full.
    retry_at_ms: int | None = None


class EnqueueOrder:
    """A strictly increasing microsecond stamp per process: FIFO among same-millisecond enqueues.

    ``created_at`` has millisecond resolution, and a burst of enqueues shares one value; this
    stamp (stored in ``queue_order``) breaks those ties in enqueue order.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0

    def next(self, clock: Callable[[], float]) -> int:
        with self._lock:
            self._last = max(self._last + 1, int(clock() * 1_000_000))
            return self._last


ENQUEUE_ORDER = EnqueueOrder()


class QueueStore:
    def __init__(self, store: SystemStore) -> None:
        self.store = store
        self.db = store.db

    @retry_on_connection_loss
    def queues_with_work(self, queue_names: Sequence[str]) -> set[str]:
        """Which of these queues have ENQUEUED workflows (one cheap read, no write lock)."""
        if not queue_names:
            return set()
        with self.db.read() as conn:
            found = conn.execute(
                select(ws.queue_name)
                .where(ws.queue_name.in_(list(queue_names)), ws.status == "ENQUEUED")
                .distinct()
            ).scalars()
            return {name for name in found if name is not None}

    def claim(
        self,
        limits: ClaimLimits,
        executor_id: str,
        app_version: str,
        runnable: Sequence[str],
        skip: Sequence[str] = (),
    ) -> ClaimResult:
        """Move the allowed number of ENQUEUED workflows to PENDING on this executor.

        Only workflows of ``app_version`` (or of no version) whose function is in ``runnable`` are
        taken, so nothing is claimed that this process cannot run. ``skip`` lists workflow IDs this
        process already failed to start.

        Retried while the database is unavailable. Every attempt stamps its claims with the same
        time, so a retry also returns what an attempt before it claimed and committed before its
        connection broke (else that work would sit PENDING here, run by nobody, until a restart).
        """
        now = self.store.now_ms()
        claimant = _Claimant(0, executor_id, app_version, runnable, skip, now)
        return retried_with_recheck(
            self.db, "claim", lambda again: self._claim_once(limits, claimant, again)
        )

    def _claim_once(self, limits: ClaimLimits, claimant: _Claimant, again: bool) -> ClaimResult:
        now, executor_id = claimant.now, claimant.executor_id
        result = ClaimResult(self._claimed_earlier(limits, claimant) if again else [])
        with self.db.write() as conn:
            if limits.has_global_limits:
                self.db.dialect.lock_key(conn, _LOCK_PREFIX + limits.queue_name)
            usage = self._usage(conn, limits, executor_id, now)
            for partition in self._partitions(conn, limits):
                part_usage = usage.get(partition, Usage())
                budget = claim_budget(limits, part_usage)
                if budget <= 0:
                    result.retry_at_ms = earliest(
                        result.retry_at_ms, window_frees_at(limits, part_usage)
                    )
                    continue
                result.rows.extend(
                    self._claim_rows(conn, limits, partition, replace(claimant, budget=budget))
                )
        return result

    def _claimed_earlier(self, limits: ClaimLimits, claimant: _Claimant) -> list[WorkflowRow]:
        """This queue's workflows claimed by an earlier attempt of this claim (same executor,
        same time stamp, still PENDING)."""
        with self.db.read() as conn:
            rows = conn.execute(
                select(workflow_status).where(
                    ws.queue_name == limits.queue_name,
                    ws.status == "PENDING",
                    ws.executor_id == claimant.executor_id,
                    ws.started_at_epoch_ms == claimant.now,
                    ws.updated_at == claimant.now,
                )
            ).all()
        return [WorkflowRow.from_row(r) for r in rows]

    @retry_on_connection_loss
    def release(self, workflow_id: str, executor_id: str) -> bool:
        """Put a claimed workflow this process could not start back on its queue."""
        with self.db.write() as conn:
            result = conn.execute(
                update(workflow_status)
                .where(
                    ws.workflow_uuid == workflow_id,
                    ws.status == "PENDING",
                    ws.executor_id == executor_id,
                    ws.queue_name.is_not(None),
                )
                .values(
                    status="ENQUEUED",
                    executor_id=None,
                    started_at_epoch_ms=None,
                    deadline_epoch_ms=None,
                    recovery_attempts=ws.recovery_attempts - 1,
                    updated_at=self.store.now_ms(),
                )
            )
            return bool(result.rowcount)

    def _partitions(self, conn: Connection, limits: ClaimLimits) -> list[str | None]:
        if not limits.partitioned:
            return [None]
        return list(
            conn.execute(
                select(ws.queue_partition_key)
                .where(ws.queue_name == limits.queue_name, ws.status == "ENQUEUED")
                .distinct()
            ).scalars()
        )

    def _usage(
        self, conn: Connection, limits: ClaimLimits, executor_id: str, now: int
    ) -> dict[str | None, Usage]:
        """Running and recently started counts, per partition, in one query."""
        pending = ws.status == "PENDING"
        counted: Any = pending
        recent: Any = None
        if limits.limit is not None and limits.period_ms is not None:
            recent = ws.started_at_epoch_ms >= now - limits.period_ms
            counted = or_(pending, recent)
        key = ws.queue_partition_key if limits.partitioned else None
        columns: list[Any] = [
            func.sum(case((pending, 1), else_=0)),
            func.sum(case((pending & (ws.executor_id == executor_id), 1), else_=0)),
            func.sum(case((recent, 1), else_=0)) if recent is not None else None,
            func.min(case((recent, ws.started_at_epoch_ms), else_=None))
            if recent is not None
            else None,
        ]
        query = select(
            *(c for c in [key, *columns] if c is not None),
        ).where(ws.queue_name == limits.queue_name, counted)
        if key is not None:
            query = query.group_by(key)
        usage: dict[str | None, Usage] = {}
        for row in conn.execute(query).all():
            values = list(row)
            part = values.pop(0) if key is not None else None
            if values[0] is None:  # no matching rows: SUM over nothing
                continue
            recent_starts = int(values[2] or 0) if recent is not None else 0
            oldest = values[3] if recent is not None else None
            usage[part] = Usage(
                int(values[0] or 0),
                int(values[1] or 0),
                recent_starts,
                int(oldest) if oldest is not None else None,
            )
        return usage

    def _claim_rows(
        self,
        conn: Connection,
        limits: ClaimLimits,
        partition: str | None,
        claimant: _Claimant,
    ) -> list[WorkflowRow]:
        query = select(ws.workflow_uuid).where(
            ws.queue_name == limits.queue_name,
            ws.status == "ENQUEUED",
            (ws.application_version == claimant.app_version) | ws.application_version.is_(None),
            ws.name.in_(list(claimant.runnable)),
        )
        if claimant.skip:
            query = query.where(ws.workflow_uuid.not_in(list(claimant.skip)))
        if limits.partitioned:
            query = query.where(ws.queue_partition_key == partition)
        # No priority first, then lower numbers; FIFO within one priority.
        query = query.order_by(
            ws.priority.is_not(None), ws.priority, ws.created_at, ws.queue_order, ws.workflow_uuid
        ).limit(claimant.budget)
        # SKIP LOCKED: two claims never take the same row. SQLite leaves it out (its writers
        # are serialized).
        query = query.with_for_update(skip_locked=True)
        ids = list(conn.execute(query).scalars())
        if not ids:
            return []
        now = claimant.now
        claimed = conn.execute(
            update(workflow_status)
            .where(ws.workflow_uuid.in_(ids), ws.status == "ENQUEUED")
            .values(
                status="PENDING",
                executor_id=claimant.executor_id,
                started_at_epoch_ms=now,
                # The timeout clock starts at dequeue (NULL timeout stays NULL).
                deadline_epoch_ms=ws.timeout_ms + now,
                recovery_attempts=ws.recovery_attempts + 1,
                updated_at=now,
                # A row enqueued without a version (DBOSClient's default) takes the claimant's:
                # recovery and takeover match the version by equality, and a NULL would match
                # nobody, leaving the run PENDING forever once its executor restarts or dies.
                application_version=func.coalesce(ws.application_version, claimant.app_version),
            )
            .returning(*workflow_status.c)
        ).all()
        by_id = {r._mapping["workflow_uuid"]: WorkflowRow.from_row(r) for r in claimed}
        return [by_id[i] for i in ids if i in by_id]


@dataclass(frozen=True)
class _Claimant:
    budget: int
    executor_id: str
    app_version: str
    runnable: Sequence[str]
    skip: Sequence[str]
    now: int
