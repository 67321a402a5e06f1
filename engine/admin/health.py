"""Liveness, readiness and queue endpoints, plus the probes the daemon's metrics reuse."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.admin import docs
from engine.admin.problems import Problem
from engine.admin.routing import Reply, Request, Response, Route
from engine.error import DBOSException
from engine.queue import registered_queues
from engine.runtime.current import current_runtime
from engine.storage import stats
from engine.storage.debounce import DEBOUNCE_HOLD_QUEUE

Readiness = Callable[[], bool]


def database_reachable() -> bool:
    """True when DBOS is launched and its system database answers a trivial query."""
    try:
        current_runtime().db.check_connection()
    except DBOSException:
        return False
    return True


def queue_depths() -> dict[str, dict[str, int]]:
    """ENQUEUED and PENDING counts per queue, from the system database."""
    return stats.queue_depths(current_runtime().db)


def pending_debounces() -> dict[str, int]:
    """Open debounce windows per workflow name (their runs wait, ENQUEUED, on a hold queue)."""
    return stats.counts_by_name(current_runtime().db, DEBOUNCE_HOLD_QUEUE, "ENQUEUED")


def livez(_: Request) -> Response:
    return Response(200, {"status": "alive"})


def readyz_handler(readiness: Readiness | None) -> Callable[[Request], Response]:
    def readyz(_: Request) -> Response:
        if not database_reachable():
            raise Problem(503, "not_ready", "the system database is not reachable")
        if readiness is not None and not readiness():
            raise Problem(503, "not_ready", "starting up: schedules are not loaded yet")
        return Response(200, {"status": "ready"})

    return readyz


def list_queues(_: Request) -> Response:
    depths = queue_depths()
    registered = {q.name: q for q in registered_queues()}
    items = []
    for name in sorted(set(registered) | set(depths)):
        counts = depths.get(name, {})
        item: dict[str, Any] = {
            "name": name,
            "registered": name in registered,
            "enqueued": counts.get("ENQUEUED", 0),
            "pending": counts.get("PENDING", 0),
        }
        queue = registered.get(name)
        if queue is not None:
            item.update(
                concurrency=queue.concurrency,
                worker_concurrency=queue.worker_concurrency,
                limiter=dict(queue.limiter) if queue.limiter else None,
                priority_enabled=queue.priority_enabled,
                partition_queue=queue.partition_queue,
            )
        items.append(item)
    return Response(200, {"queues": items})


_STATUS = {"type": "object", "properties": {"status": {"type": "string"}}}
_QUEUES = {
    "type": "object",
    "properties": {
        "queues": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "registered": {"type": "boolean"},
                    "enqueued": {"type": "integer"},
                    "pending": {"type": "integer"},
                },
            },
        }
    },
}


def health_routes(readiness: Readiness | None) -> list[Route]:
    unavailable = Reply("Not ready", docs.PROBLEM, "application/problem+json")
    return [
        Route(
            "GET",
            "/livez",
            livez,
            "Liveness: the process answers (needs no token)",
            "health",
            {200: Reply("Alive", _STATUS)},
            public=True,
        ),
        Route(
            "GET",
            "/readyz",
            readyz_handler(readiness),
            "Readiness: the database is reachable and the schedules are loaded",
            "health",
            {200: Reply("Ready", _STATUS), 503: unavailable},
        ),
        Route(
            "GET",
            "/api/v1/queues",
            list_queues,
            "List queues with their ENQUEUED and PENDING counts",
            "queues",
            {200: Reply("Queues", _QUEUES)},
        ),
    ]
