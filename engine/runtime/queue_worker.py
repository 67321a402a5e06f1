"""The queue worker: one thread per process that claims queued workflows and runs them.

It wakes when this process enqueues work or finishes a queued workflow (which may free a
concurrency slot), on PostgreSQL when any process enqueues (a trigger NOTIFYs), when a rate-limit
window is due to free a slot, and otherwise polls each queue every ``polling_interval_sec`` (the
backstop for lost notifications, SQLite, and slots freed by other processes). An idle poll is one
cheap read for all queues, never a write transaction. During a database outage a poll waits until
the database is back (or shutdown), and claims are safe to retry (see ``QueueStore.claim``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from engine.runtime.declared_queues import DECLARED, DeclaredQueue
from engine.runtime.registry import REGISTRY, STEP_WORKFLOW_PREFIX
from engine.runtime.wakeups import Waiter
from engine.storage.database import OUTAGE_ERRORS, waiting_out_outages
from engine.storage.migrations import QUEUE_WAKEUP_PREFIX
from engine.storage.queues import ClaimLimits, QueueStore
from engine.storage.store import StepRecord, WorkflowRow

if TYPE_CHECKING:
    from engine.runtime.executor import Runtime

logger = logging.getLogger("keeptime.engine")
#: Wake-ups within this long of the last poll wait out the rest of it (see _coalesce_wakeups).
WAKEUP_COALESCE_SECONDS = 0.005
# The running workers, so a queue declared after launch wakes them all; each runtime holds its
# own as ``runtime.queue_worker``. Weak: a destroyed runtime's worker goes with it.
_LIVE_WORKERS: weakref.WeakSet[QueueWorker] = weakref.WeakSet()


def wake(runtime: Runtime) -> None:
    """Called after a local enqueue so the worker does not wait for its next poll."""
    worker = runtime.queue_worker
    if worker is not None:
        worker.event.set()


def wake_all() -> None:
    """A queue was declared: every running worker looks at it now, not at its next poll."""
    for worker in list(_LIVE_WORKERS):
        worker.event.set()


def start(runtime: Runtime) -> None:
    worker = QueueWorker(runtime, QueueStore(runtime.store), threading.Event())
    runtime.queue_worker = worker
    _LIVE_WORKERS.add(worker)
    runtime.finish_listeners.append(worker.on_finish)
    runtime.stop_listeners.append(worker.event.set)
    runtime.spawn("keeptime-queues", worker.run)


def limits_of(queue: DeclaredQueue) -> ClaimLimits:
    spec = queue.spec
    return ClaimLimits(
        queue_name=spec.name,
        concurrency=spec.concurrency,
        worker_concurrency=spec.worker_concurrency,
        limit=spec.limit,
        period_ms=int(spec.period_seconds * 1000) if spec.period_seconds is not None else None,
        partitioned=spec.partition_queue,
    )


@dataclass(eq=False)  # compared (and hashed, in _LIVE_WORKERS) by identity
class QueueWorker:
    runtime: Runtime
    store: QueueStore
    event: threading.Event
    # Monotonic time at which each queue is next polled without a wake-up.
    due: dict[str, float] = field(default_factory=dict)
    # Workflows this process claimed but could not start; never claimed here again.
    unrunnable: set[str] = field(default_factory=set)
    # Workflows this worker started and that still run: their end frees a queue slot.
    running: set[str] = field(default_factory=set)
    last_poll: float = 0.0  # monotonic

    def on_finish(self, workflow_id: str) -> None:
        """A run ended here; poll now only if it held a queue slot (other ends change nothing
        for the queues, and a thousand ticks a second must not mean a thousand polls)."""
        if workflow_id in self.running:
            self.running.discard(workflow_id)
            self.event.set()

    def run(self) -> None:
        with self._woken_by_other_processes(), waiting_out_outages(self.runtime.stopping):
            self._loop()

    @contextlib.contextmanager
    def _woken_by_other_processes(self) -> Iterator[None]:
        """On PostgreSQL every enqueue NOTIFYs (a trigger does it); polling stays the backstop."""
        if not self.runtime.db.dialect.notifies:
            yield
            return
        wakeups = self.runtime.messaging
        key = QUEUE_WAKEUP_PREFIX + (self.runtime.db.schema or "")
        with wakeups.hub.watching(key, Waiter(event=self.event)):
            wakeups.ensure_listening()
            yield

    def _loop(self) -> None:
        try:
            while not self.runtime.stopping.is_set():
                # Clear before polling: a wake-up that arrives during the poll is not lost.
                woken = self.event.is_set()
                if woken:
                    self._coalesce_wakeups()
                self.event.clear()
                try:
                    self.poll(everything=woken)
                except OUTAGE_ERRORS:
                    # Only at shutdown (polls wait out outages); the outage itself is logged
                    # once by the database, not once per poll.
                    pass
                except Exception:
                    logger.exception("queue worker poll failed; retrying")
                self.event.wait(self._seconds_to_next_poll())
        finally:
            _LIVE_WORKERS.discard(self)

    def _coalesce_wakeups(self) -> None:
        """A wake-up right after a poll waits a moment: the enqueues and finishes of a busy
        process then share one claim, instead of each taking the writer for its own. The
        first wake-up after a quiet spell polls at once."""
        pause = self.last_poll + WAKEUP_COALESCE_SECONDS - time.monotonic()
        if pause > 0:
            self.runtime.stopping.wait(pause)

    def poll(self, everything: bool = True) -> int:
        """Claim and start what the limits allow; returns how many workflows started."""
        now = self.last_poll = time.monotonic()
        queues = {q.name: q for q in DECLARED.all()}
        for name in list(self.due):
            if name not in queues:
                del self.due[name]
        polled = [q for q in queues.values() if everything or self.due.get(q.name, 0) <= now]
        for queue in polled:
            self.due[queue.name] = now + queue.spec.polling_interval_sec
        with_work = self.store.queues_with_work([q.name for q in polled])
        started = 0
        for queue in polled:
            if queue.name in with_work:
                started += self._claim_and_start(queue)
        return started

    def _claim_and_start(self, queue: DeclaredQueue) -> int:
        result = self.store.claim(
            limits_of(queue),
            self.runtime.executor_id,
            self.runtime.app_version,
            runnable_names(),
            sorted(self.unrunnable),
        )
        if result.retry_at_ms is not None:
            wait_s = max(0.0, (result.retry_at_ms - self.runtime.now_ms()) / 1000)
            self.due[queue.name] = min(self.due[queue.name], time.monotonic() + wait_s)
        # One query for the recorded steps of the whole claim (forked or requeued work has some).
        recorded = self.runtime.store.load_steps_of([row.workflow_uuid for row in result.rows])
        return sum(1 for row in result.rows if self._start(row, recorded[row.workflow_uuid]))

    def _start(self, row: WorkflowRow, recorded: dict[int, StepRecord]) -> bool:
        try:
            self.running.add(row.workflow_uuid)
            if self.runtime.execute_existing(row, recorded):
                return True
        except Exception:
            logger.exception("cannot start queued workflow %s", row.workflow_uuid)
        self.running.discard(row.workflow_uuid)
        # Hand it back so another process (with the function or instance) can run it.
        self.unrunnable.add(row.workflow_uuid)
        self.store.release(row.workflow_uuid, self.runtime.executor_id)
        self.event.set()  # its slot is free again: look for other work now
        return False

    def _seconds_to_next_poll(self) -> float:
        if not self.due:
            return 1.0
        return max(0.0, min(self.due.values()) - time.monotonic())


def runnable_names() -> list[str]:
    """Workflow names this process can run (enqueued steps run as ``<temp>.`` workflows)."""
    names = set(REGISTRY.workflow_names())
    names.update(STEP_WORKFLOW_PREFIX + step for step in REGISTRY.step_names())
    return sorted(names)
