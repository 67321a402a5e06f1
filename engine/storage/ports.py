"""The storage ports: one narrow Protocol per concern, as the engine and the daemon use it.

Each port lists exactly the store methods called from outside ``engine.storage`` (the runtime,
the facades, the admin API, the daemon), with the signatures of the store that implements it:

=================  =================================================  ========================
port               concern                                            implementation
=================  =================================================  ========================
``WorkflowPort``   workflow rows, step checkpoints, management        ``store.SystemStore``
``QueuePort``      claiming queued work within its flow control       ``queues.QueueStore``
``MessagePort``    messages, events, streams and their wake-up keys   ``messages.MessageStore``
``SchedulePort``   schedule definitions, pause flags, watermarks      ``schedules.ScheduleStore``
``DebouncePort``   debounce windows                                   ``debounce.DebounceStore``
``ExecutorPort``   executor identities, heartbeats, takeover          ``executors.ExecutorStore``
=================  =================================================  ========================

The contract each method states is pinned by ``tests/engine/ports/`` on SQLite and PostgreSQL.
Every method may also raise ``DBOSStorageError`` when the database stays unavailable past the
method's retries. The conformance checks at the bottom make mypy fail when a port and its
implementation drift apart.

``MessagePort`` still hands a SQLAlchemy ``Connection`` across the port (the writes a workflow
step makes commit in the step's own transaction); it is named ``Transaction`` here so that the
one leak stays visible.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    from sqlalchemy import Connection as Transaction

    from engine.core.liveness import ExecutorRecord
    from engine.storage.debounce import DebounceCall, DebounceStore, FireOutcome, Window
    from engine.storage.executors import Beat, ExecutorStore, Holder
    from engine.storage.messages import MessageStore, WaitTry
    from engine.storage.queues import ClaimLimits, ClaimResult, QueueStore
    from engine.storage.schedules import (
        FiredTick,
        Registration,
        ScheduleRow,
        ScheduleStore,
        TickState,
    )
    from engine.storage.store import (
        ListFilter,
        StepRecord,
        StepWrite,
        SystemStore,
        WorkflowOutcome,
        WorkflowRow,
    )

__all__ = [
    "DebouncePort",
    "ExecutorPort",
    "MessagePort",
    "QueuePort",
    "SchedulePort",
    "WorkflowPort",
]

T = TypeVar("T")


class WorkflowPort(Protocol):
    """Workflow rows and their step checkpoints: starting, finishing, recovery, management."""

    def insert_workflow(
        self, row: WorkflowRow, parent_step: StepRecord | None = None, parent_id: str | None = None
    ) -> tuple[bool, WorkflowRow]:
        """Create the row (and atomically the parent's step) unless its ID exists: (created,
        stored row); an existing row is never changed; a taken (queue, deduplication ID) raises
        DBOSQueueDeduplicatedError."""

    def insert_workflows(self, rows: Sequence[WorkflowRow]) -> set[str]:
        """Create many rows in one transaction; returns the IDs this call created (existing
        IDs are left as they are)."""

    def record_step(self, workflow_id: str, step: StepRecord, started_ms: int | None) -> StepWrite:
        """Checkpoint a step once per (workflow, function ID): a later record loses and gets the
        first one back as ``earlier``, with the workflow's current status."""

    def load_steps(self, workflow_id: str) -> dict[int, StepRecord]:
        """Every recorded step of the workflow, by function ID."""

    def load_steps_of(self, workflow_ids: Sequence[str]) -> dict[str, dict[int, StepRecord]]:
        """``load_steps`` for many workflows in one read; every asked ID gets an entry."""

    def complete_workflow(
        self, workflow_id: str, status: str, output: str | None, error: str | None
    ) -> bool:
        """Store the outcome of a PENDING workflow; False (and nothing changed) when it is not
        PENDING, e.g. cancelled meanwhile or finished already."""

    def complete_workflows(self, outcomes: Sequence[WorkflowOutcome]) -> set[str]:
        """``complete_workflow`` for many in one commit; returns the IDs that were PENDING."""

    def get_workflow(self, workflow_id: str) -> WorkflowRow | None:
        """The stored row, or None when no workflow has this ID."""

    def get_outcome(self, workflow_id: str) -> tuple[str, str | None, str | None] | None:
        """(status, output, error), or None when no workflow has this ID."""

    def pending_workflows(
        self, executor_ids: Sequence[str], app_version: str | None
    ) -> list[WorkflowRow]:
        """PENDING workflows of these executors (of ``app_version`` when given), oldest first."""

    def start_recovery_attempt(
        self, workflow_id: str, executor_id: str, max_attempts: int | None
    ) -> WorkflowRow | None:
        """Count one more start of a PENDING workflow of ``executor_id`` (past ``max_attempts``
        it becomes MAX_RECOVERY_ATTEMPTS_EXCEEDED); None when it is not PENDING there."""

    def cancel_workflow_tree(self, workflow_id: str) -> list[str]:
        """Cancel the workflow and every PENDING or ENQUEUED descendant, atomically; returns the
        IDs this call cancelled (finished ones are left alone)."""

    def list_workflows(self, flt: ListFilter) -> list[WorkflowRow]:
        """Rows matching every set field of ``flt``, by creation time (then ID), paged."""

    def list_steps(self, workflow_id: str) -> list[StepRecord]:
        """The workflow's recorded steps in function ID order."""

    def cancelled_among(self, workflow_ids: Sequence[str]) -> list[str]:
        """Which of these workflows are CANCELLED."""

    def resume_workflow(
        self, workflow_id: str, executor_id: str
    ) -> tuple[bool, WorkflowRow | None]:
        """Make a CANCELLED, given-up or ENQUEUED workflow PENDING on ``executor_id``, off its
        queue, with a fresh timeout: (changed, row); other statuses are left alone."""

    def fork_workflow(self, source: WorkflowRow, new_row: WorkflowRow, start_step: int) -> None:
        """Create ``new_row`` with copies of the source's steps numbered below ``start_step``,
        atomically; an existing ID raises DBOSStorageError."""

    def requeue_workflow(self, workflow_id: str, queue_name: str) -> bool:
        """Put a CANCELLED, given-up or ENQUEUED workflow on ``queue_name`` for any executor;
        False (nothing changed) for other statuses."""


class QueuePort(Protocol):
    """Claiming ENQUEUED workflows within their queue's concurrency, rate and partitions."""

    def queues_with_work(self, queue_names: Sequence[str]) -> set[str]:
        """Which of these queues hold ENQUEUED workflows (a read; claims nothing)."""

    def claim(
        self,
        limits: ClaimLimits,
        executor_id: str,
        app_version: str,
        runnable: Sequence[str],
        skip: Sequence[str] = (),
    ) -> ClaimResult:
        """Move what the limits allow to PENDING on ``executor_id`` (priority, then FIFO), each
        row once across all claimants; ``retry_at_ms`` says when a full rate window frees."""

    def release(self, workflow_id: str, executor_id: str) -> bool:
        """Give a claimed (PENDING, queued) workflow of ``executor_id`` back to its queue, as if
        never claimed; False when it is not in that state."""


class MessagePort(Protocol):
    """Messages, events and streams; writes from a workflow commit with their step record."""

    def message_key(self, destination_id: str, topic: str | None) -> str:
        """The wake-up key of a topic queue: the same for the same database, ID and topic."""

    def event_key(self, workflow_id: str, key: str) -> str:
        """The wake-up key of an event: the same for the same database, workflow and key."""

    def stream_key(self, workflow_id: str, key: str) -> str:
        """The wake-up key of a stream: the same for the same database, workflow and key."""

    def record_with(
        self,
        workflow_id: str,
        function_id: int,
        name: str,
        action: Callable[[Transaction], T],
        encode: Callable[[T], str | None],
    ) -> tuple[T | None, StepRecord | None]:
        """Run ``action`` and record its step in one transaction: (value, None); when the step
        exists already, ``action`` is rolled back and (None, earlier record) returned."""

    def try_wait_step(
        self,
        workflow_id: str,
        function_id: int,
        name: str,
        find: Callable[[Transaction], str | None],
        *,
        final: bool,
        deadline: StepRecord | None = None,
    ) -> WaitTry:
        """One try of a waiting step: record what ``find`` found (or None if ``final``) as the
        step, or else record ``deadline`` once; a step recorded earlier wins and rolls back."""

    def send(
        self,
        conn: Transaction,
        destination_id: str,
        topic: str | None,
        message: str,
        message_id: str | None,
    ) -> None:
        """Queue a message in the caller's transaction; a used ``message_id`` is a no-op; a
        missing destination raises DBOSNonExistentWorkflowError."""

    def send_now(
        self, destination_id: str, topic: str | None, message: str, idempotency_key: str | None
    ) -> bool:
        """Queue a message in its own transaction; False (nothing sent) when the idempotency key
        was used before, even after the message was consumed."""

    def take_message(self, conn: Transaction, destination_id: str, topic: str | None) -> str | None:
        """Remove and return the oldest message of the topic in the caller's transaction, or
        None; a message is taken at most once."""

    def has_message(self, destination_id: str, topic: str | None) -> bool:
        """Whether a message waits on the topic (a read; takes nothing)."""

    def set_event(self, conn: Transaction, workflow_id: str, key: str, value: str) -> None:
        """Set the event's value in the caller's transaction; the latest value wins."""

    def set_event_now(self, workflow_id: str, key: str, value: str) -> None:
        """``set_event`` in a transaction of its own."""

    def event_in(self, conn: Transaction, workflow_id: str, key: str) -> str | None:
        """The event's value as the caller's transaction sees it, or None when unset."""

    def get_event(self, workflow_id: str, key: str) -> str | None:
        """The event's latest value, or None when unset."""

    def all_events(self, workflow_id: str) -> dict[str, str]:
        """Every event of the workflow with its latest value."""

    def append_stream(
        self, conn: Transaction, workflow_id: str, key: str, value: str | None, closed: bool
    ) -> None:
        """Append a value (or the close marker) in the caller's transaction; closing again is a
        no-op, writing after the close raises DBOSInvalidArgumentError."""

    def append_stream_now(
        self, workflow_id: str, key: str, value: str | None, closed: bool
    ) -> None:
        """``append_stream`` in a transaction of its own."""

    def read_stream(
        self, workflow_id: str, key: str, from_offset: int
    ) -> list[tuple[int, str | None, bool]]:
        """(offset, value, is_close_marker) from ``from_offset`` on, in write order; offsets
        count up from 0 without gaps."""


class SchedulePort(Protocol):
    """Schedule definitions, pause flags, catch-up watermarks, and ticks held for their turn."""

    def register(self, regs: Sequence[Registration], replace_source: str | None = None) -> None:
        """Upsert these schedules atomically (a new one's watermark is now; existing ones keep
        pause flag and watermark); with ``replace_source``, drop that source's others."""

    def delete(self, name: str) -> bool:
        """Remove the schedule; False when there was none."""

    def set_paused(self, name: str, paused: bool) -> bool:
        """Pause or resume (resuming moves the watermark up to now: no catch-up of the pause);
        False when there is no such schedule."""

    def list_all(self, source: str | None = None) -> list[ScheduleRow]:
        """Every schedule (of ``source`` when given), by name, with its last run's status."""

    def get(self, name: str) -> ScheduleRow | None:
        """The schedule, or None."""

    def tick_states(self, names: Iterable[str], previous_runs: bool = True) -> dict[str, TickState]:
        """Pause flag, watermark and (with ``previous_runs``) the previous run and its executor,
        of each named schedule that exists, in one read."""

    def held_count(self, name: str) -> int:
        """How many ticks of the schedule wait on its hold queue."""

    def record_fired(self, fired: Sequence[FiredTick]) -> None:
        """Advance each schedule's watermark to its latest tick (never backwards) and its last
        run to the latest one that ran, atomically."""

    def release_held(
        self,
        name: str,
        target_queue: str | None,
        executor_id: str,
        app_version: str,
        still_running: Callable[[str, TickState], bool],
    ) -> WorkflowRow | None:
        """Unless ``still_running`` says the previous run goes on, release the first held tick
        by ID (tick IDs sort by time) to ``target_queue``, or PENDING on ``executor_id``, as the
        last run; one release of a schedule at a time."""

    def insert_enqueued(self, rows: Sequence[WorkflowRow]) -> list[str]:
        """Insert rows in one transaction; returns the IDs that were new (a tick's ID once)."""


class DebouncePort(Protocol):
    """Debounce windows: one open window, and one held workflow, per (namespace, key)."""

    def debounce(self, call: DebounceCall) -> Window:
        """Join the key's open window (its inputs replaced, its deadline moved a period on but
        never past the first call's max wait) or open one with ``new_workflow_id``, atomically."""

    def fire(self, namespace: str, key: str, executor_id: str, app_version: str) -> FireOutcome:
        """If the window is due, close it and release its workflow (to its queue, or PENDING
        here) exactly once; if not, say when it is due."""

    def due_windows(self, until_ms: int, limit: int = 500) -> list[Window]:
        """Open windows due at or before ``until_ms``, earliest first, at most ``limit``."""


class ExecutorPort(Protocol):
    """Who holds each executor ID, their heartbeats, and taking over the work of dead ones."""

    def read(self, executor_id: str) -> ExecutorRecord | None:
        """The executor's row, or None."""

    def others(self, me: str) -> list[ExecutorRecord]:
        """Every executor row but ``me``'s."""

    def claim(self, holder: Holder, seen: ExecutorRecord | None) -> bool:
        """Take the ID if its row is still as ``seen`` (absent, or unchanged): of concurrent
        claims exactly one wins."""

    def heartbeat(self, holder: Holder) -> Beat:
        """Beat if the row is still ours; write it anew if it is gone (REINSTATED); change
        nothing if another incarnation holds it (SUPPLANTED)."""

    def take_over(self, dead: ExecutorRecord, me: str, app_version: str) -> list[WorkflowRow]:
        """If the dead executor's row is still as judged, move its PENDING work of
        ``app_version`` to ``me`` (once: a second take-over gets nothing); the rows moved."""


if TYPE_CHECKING:
    # Conformance: mypy rejects these returns if an implementation drifts from its port.

    def _workflows(store: SystemStore) -> WorkflowPort:
        return store

    def _queues(store: QueueStore) -> QueuePort:
        return store

    def _messages(store: MessageStore) -> MessagePort:
        return store

    def _schedules(store: ScheduleStore) -> SchedulePort:
        return store

    def _debounces(store: DebounceStore) -> DebouncePort:
        return store

    def _executors(store: ExecutorStore) -> ExecutorPort:
        return store
