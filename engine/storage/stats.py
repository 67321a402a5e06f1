"""Read-only counts for monitoring: queue depth and the like (one query each)."""

from __future__ import annotations

from sqlalchemy import func, select

from engine.storage.database import Database
from engine.storage.schema import workflow_status

QUEUE_STATUSES = ("ENQUEUED", "PENDING")


def queue_depths(db: Database) -> dict[str, dict[str, int]]:
    """For each queue with work, the number of its ENQUEUED and PENDING workflows."""
    ws = workflow_status.c
    query = (
        select(ws.queue_name, ws.status, func.count())
        .where(ws.queue_name.is_not(None), ws.status.in_(QUEUE_STATUSES))
        .group_by(ws.queue_name, ws.status)
    )
    with db.read() as conn:
        rows = conn.execute(query).all()
    depths: dict[str, dict[str, int]] = {}
    for queue_name, status, count in rows:
        depths.setdefault(str(queue_name), dict.fromkeys(QUEUE_STATUSES, 0))[str(status)] = int(
            count
        )
    return depths


def counts_by_name(db: Database, queue_name: str, status: str) -> dict[str, int]:
    """How many workflows of each name are in ``status`` on ``queue_name``."""
    ws = workflow_status.c
    query = (
        select(ws.name, func.count())
        .where(ws.queue_name == queue_name, ws.status == status)
        .group_by(ws.name)
    )
    with db.read() as conn:
        return {str(name): int(count) for name, count in conn.execute(query).all()}
