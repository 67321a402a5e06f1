"""The queue worker: one thread per process that claims queued workflows and runs them."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from engine.storage.queues import ClaimLimits, QueueStore

if TYPE_CHECKING:
    from engine.queue import Queue
    from engine.runtime.executor import Runtime

logger = logging.getLogger("keeptime.engine")
_wakeups: dict[int, threading.Event] = {}


def wake(runtime: Runtime) -> None:
    """Called after a local enqueue so the worker does not wait for its next poll."""
    event = _wakeups.get(id(runtime))
    if event is not None:
        event.set()


def start(runtime: Runtime) -> None:
    event = threading.Event()
    _wakeups[id(runtime)] = event
    runtime.finish_listeners.append(event.set)
    store = QueueStore(runtime.store)
    runtime.spawn("keeptime-queues", lambda: _loop(runtime, store, event))


def _limits(queue: Queue) -> ClaimLimits:
    spec = queue.spec
    return ClaimLimits(
        queue_name=spec.name,
        concurrency=spec.concurrency,
        worker_concurrency=spec.worker_concurrency,
        limit=spec.limit,
        period_ms=int(spec.period_seconds * 1000) if spec.period_seconds is not None else None,
        partitioned=spec.partition_queue,
    )


def poll_once(runtime: Runtime, store: QueueStore) -> int:
    from engine.queue import registered_queues

    started = 0
    for queue in registered_queues():
        for row in store.claim(_limits(queue), runtime.executor_id, runtime.app_version):
            if runtime.execute_existing(row):
                started += 1
    return started


def _loop(runtime: Runtime, store: QueueStore, event: threading.Event) -> None:
    from engine.queue import registered_queues

    try:
        while not runtime.stopping.is_set():
            try:
                poll_once(runtime, store)
            except Exception:
                logger.exception("queue worker poll failed; retrying")
            queues = registered_queues()
            interval = min((q.spec.polling_interval_sec for q in queues), default=1.0)
            event.wait(interval)
            event.clear()
    finally:
        _wakeups.pop(id(runtime), None)
