"""Queues: durable FIFO (or priority) work lists with concurrency and rate limits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypedDict, TypeVar

from engine.error import DBOSInvalidArgumentError
from engine.handles import WorkflowHandle, WorkflowHandleAsync
from engine.runtime import queue_worker
from engine.runtime.context import start_options
from engine.runtime.current import current_runtime
from engine.runtime.declared_queues import DECLARED, QueueSpec
from engine.runtime.internal_queue import INTERNAL_QUEUE_NAME
from engine.runtime.registry import startable_function
from engine.runtime.starting import QueuePlacement, split_call

P = ParamSpec("P")
R = TypeVar("R")


class QueueRateLimit(TypedDict):
    """A queue's ``limiter``: at most ``limit`` workflow starts per ``period`` seconds, across all
    processes."""

    limit: int
    period: float


def registered_queues() -> list[Queue]:
    """Every queue created in this process."""
    return [q for q in DECLARED.all() if isinstance(q, Queue)]


def find_queue(name: str) -> Queue | None:
    """The queue named ``name`` created in this process, or None."""
    queue = DECLARED.find(name)
    return queue if isinstance(queue, Queue) else None


class Queue:
    """A named queue of workflows with flow control. Create it at import time: a process's queue
    worker only serves the queues created in it.

    ``concurrency`` caps the queue's running workflows across all processes, ``worker_concurrency``
    in each process; ``limiter`` caps how many start per period. ``priority_enabled`` allows
    ``SetEnqueueOptions(priority=...)``; with ``partition_queue`` every enqueue needs a
    ``queue_partition_key`` and the limits apply per partition. Bad settings raise
    DBOSInvalidArgumentError. A second queue of the same name replaces the first in this process.
    """

    def __init__(
        self,
        name: str,
        concurrency: int | None = None,
        limiter: QueueRateLimit | None = None,
        *,
        worker_concurrency: int | None = None,
        priority_enabled: bool = False,
        partition_queue: bool = False,
        polling_interval_sec: float = 1.0,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise DBOSInvalidArgumentError(f"a queue needs a non-empty string name, got {name!r}")
        _check_concurrency(name, concurrency, worker_concurrency)
        limit, period = _check_limiter(name, limiter)
        _check_positive_number(name, "polling_interval_sec", polling_interval_sec)
        self.name = name
        self.spec = QueueSpec(
            name,
            concurrency,
            worker_concurrency,
            limit,
            period,
            bool(priority_enabled),
            bool(partition_queue),
            float(polling_interval_sec),
        )
        self.concurrency = concurrency
        self.worker_concurrency = worker_concurrency
        self.limiter = limiter
        self.priority_enabled = priority_enabled
        self.partition_queue = partition_queue
        DECLARED.declare(self)
        queue_worker.wake_all()  # declared after launch: its backlog starts now

    def enqueue(self, func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> WorkflowHandle[R]:
        """Put ``func(*args, **kwargs)`` on this queue and return its handle; a queue worker starts
        it, in FIFO order (or by priority).

        ``func`` is a workflow or a step. ``SetWorkflowID``, ``SetWorkflowTimeout`` (its clock
        starts at dequeue) and ``SetEnqueueOptions`` apply. Raises DBOSQueueDeduplicatedError if the
        deduplication ID is in use on this queue, and DBOSInvalidArgumentError when the partition
        key or priority set does not fit this queue.
        """
        runtime = current_runtime()
        fn = startable_function(func)
        instance, rest = split_call(fn, func, args)
        plan = runtime.plan(fn, instance, rest, kwargs, self._placement())
        queue_worker.wake(runtime)
        return WorkflowHandle(runtime, plan.workflow_id)

    async def enqueue_async(
        self, func: Callable[P, Coroutine[Any, Any, R]], *args: P.args, **kwargs: P.kwargs
    ) -> WorkflowHandleAsync[R]:
        """Async ``enqueue``. A coroutine workflow enqueued this way runs in another event loop, on
        a worker thread, as the spec says."""
        handle = await asyncio.to_thread(lambda: self.enqueue(func, *args, **kwargs))
        return WorkflowHandleAsync(current_runtime(), handle.workflow_id)

    def _placement(self) -> QueuePlacement:
        opts = start_options()
        if self.partition_queue and opts.queue_partition_key is None:
            raise DBOSInvalidArgumentError(
                f"queue {self.name!r} is partitioned: enqueue inside "
                "SetEnqueueOptions(queue_partition_key=...)"
            )
        if not self.partition_queue and opts.queue_partition_key is not None:
            raise DBOSInvalidArgumentError(
                f"queue {self.name!r} is not partitioned, but a queue_partition_key was set "
                "(create it with Queue(..., partition_queue=True))"
            )
        if opts.priority is not None and not self.priority_enabled:
            raise DBOSInvalidArgumentError(
                f"queue {self.name!r} does not have priorities enabled "
                "(create it with Queue(..., priority_enabled=True))"
            )
        return QueuePlacement(
            self.name, opts.queue_partition_key, opts.deduplication_id, opts.priority
        )


def _check_concurrency(name: str, concurrency: Any, worker_concurrency: Any) -> None:
    _check_positive_int(name, "concurrency", concurrency)
    _check_positive_int(name, "worker_concurrency", worker_concurrency)
    if (
        concurrency is not None
        and worker_concurrency is not None
        and worker_concurrency > concurrency
    ):
        raise DBOSInvalidArgumentError(
            f"queue {name!r}: worker_concurrency ({worker_concurrency}) cannot exceed "
            f"concurrency ({concurrency}); lower worker_concurrency or raise concurrency"
        )


def _check_limiter(name: str, limiter: Any) -> tuple[int | None, float | None]:
    if limiter is None:
        return None, None
    if not isinstance(limiter, dict) or set(limiter) != {"limit", "period"}:
        raise DBOSInvalidArgumentError(
            f"queue {name!r}: limiter must be {{'limit': <int >= 1>, 'period': <seconds > 0>}}, "
            f"got {limiter!r}"
        )
    _check_positive_int(name, "limiter 'limit'", limiter["limit"])
    _check_positive_number(name, "limiter 'period'", limiter["period"])
    return int(limiter["limit"]), float(limiter["period"])


def _check_positive_int(name: str, label: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise DBOSInvalidArgumentError(
            f"queue {name!r}: {label} must be a positive integer (or None for no limit), "
            f"got {value!r}"
        )


def _check_positive_number(name: str, label: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise DBOSInvalidArgumentError(
            f"queue {name!r}: {label} must be a number of seconds > 0, got {value!r}"
        )


#: Declared with the facade, so every process that can run workflows serves it.
INTERNAL_QUEUE = Queue(INTERNAL_QUEUE_NAME)
