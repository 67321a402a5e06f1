"""send/recv, events and streams on top of the message store.

Every wait registers with the runtime's wake-up hub and also polls with backoff (see
``engine.runtime.wakeups``). Async waits hold no thread while waiting; only their short database
calls run in worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Generator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Connection

from engine.error import (
    DBOSInvalidArgumentError,
    DBOSNonExistentWorkflowError,
    DBOSNotInWorkflowError,
    DBOSWorkflowCancelledError,
)
from engine.runtime.context import WorkflowContext, consume_workflow_id, current_workflow
from engine.runtime.steps import Replayed, replay_or_check
from engine.runtime.wakeups import Backoff, PgListener, Waiter, WakeupHub
from engine.storage.database import OUTAGE_ERRORS, waiting_out_outages
from engine.storage.messages import MessageStore, WaitTry
from engine.storage.store import TERMINAL_STATUSES, StepRecord

if TYPE_CHECKING:
    from engine.runtime.executor import Runtime

T = TypeVar("T")
P = ParamSpec("P")
MAX_TIMEOUT_SECONDS = 10 * 365 * 24 * 3600  # keeps durable deadlines in range


class Messaging:
    """The message store, wake-up hub and (on PostgreSQL) listener of one runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.store = MessageStore(runtime.store)
        self.hub = _hub_for(runtime.db.db_url.masked, runtime.db.schema)
        self.listener: PgListener | None = None
        self._lock = threading.Lock()

    def ensure_listening(self) -> None:
        """Start the LISTEN thread on first wait (PostgreSQL only)."""
        if self.listener is not None or self.runtime.db.is_sqlite:
            return
        with self._lock:
            if self.listener is None and not self.runtime.stopping.is_set():
                self.listener = PgListener(self.runtime.db, self.hub, self.runtime.stopping)
                self._spawn(self.listener.run)

    def _spawn(self, target: Callable[[], None]) -> None:
        # DBOSClient stands in for a runtime here; it has a stop flag but no thread registry.
        spawn = getattr(self.runtime, "spawn", None)
        if spawn is not None:
            spawn("keeptime-listen", target)
        else:
            threading.Thread(target=target, name="keeptime-listen", daemon=True).start()

    def wake(self, key: str) -> None:
        self.hub.wake(key)

    def _check_interrupted(self, ctx: WorkflowContext | None) -> bool:
        """True when an outside wait must end; raises when a workflow's wait must end."""
        if ctx is not None:
            self.runtime.check_may_continue(ctx)
            if self.runtime.stopping.is_set():
                raise DBOSWorkflowCancelledError(
                    f"keeptime is shutting down; workflow {ctx.workflow_id!r} resumes at recovery"
                )
        return self.runtime.stopping.is_set()

    def watching(
        self, key: str, loop: asyncio.AbstractEventLoop | None = None
    ) -> contextlib.AbstractContextManager[Waiter]:
        """Register a waiter for ``key``; register before probing, so no write is missed."""
        self.ensure_listening()
        return self.hub.watching(key, Waiter(loop))

    def wait_for(
        self, key: str, probe: Callable[[], T | None], timeout: float, ctx: WorkflowContext | None
    ) -> T | None:
        """Call ``probe`` until it returns a value (returned) or ``timeout`` passes (None)."""
        with self.watching(key) as waiter, self._riding_out_outages(timeout, ctx):
            try:
                return self.keep_probing(waiter, probe, timeout, ctx)
            except OUTAGE_ERRORS:
                if ctx is not None:
                    raise  # shutting down: the workflow stays PENDING
                return None  # the caller's own timeout passed while the database was away

    @contextlib.contextmanager
    def _riding_out_outages(self, timeout: float, ctx: WorkflowContext | None) -> Iterator[None]:
        """A wait's probes wait out a database outage: in a workflow until shutdown, elsewhere
        until the wait's own timeout, so an outage never ends a wait early with an error."""
        deadline = None
        if ctx is None and math.isfinite(timeout):
            deadline = time.monotonic() + timeout
        with waiting_out_outages(self.runtime.stopping, deadline):
            yield

    def keep_probing(
        self,
        waiter: Waiter,
        probe: Callable[[], T | None],
        timeout: float,
        ctx: WorkflowContext | None,
        *,
        probed: bool = False,
    ) -> T | None:
        """``wait_for`` with a registered ``waiter``; ``probed``: the caller has probed since."""
        backoff = Backoff(timeout)
        while True:
            if probed:
                pause = backoff.next_pause()
                if pause is None:
                    return None
                waiter.wait(pause)
            probed = True
            if self._check_interrupted(ctx):
                return None
            waiter.clear()
            found = probe()
            if found is not None:
                return found

    async def wait_for_async(
        self, key: str, probe: Callable[[], T | None], timeout: float, ctx: WorkflowContext | None
    ) -> T | None:
        """``wait_for`` for coroutines: probes in a thread, waits on the event loop."""
        with (
            self.watching(key, asyncio.get_running_loop()) as waiter,
            self._riding_out_outages(timeout, ctx),
        ):
            try:
                return await self.keep_probing_async(waiter, probe, timeout, ctx)
            except OUTAGE_ERRORS:
                if ctx is not None:
                    raise
                return None

    async def keep_probing_async(
        self,
        waiter: Waiter,
        probe: Callable[[], T | None],
        timeout: float,
        ctx: WorkflowContext | None,
        *,
        probed: bool = False,
    ) -> T | None:
        backoff = Backoff(timeout)
        while True:
            if probed:
                pause = backoff.next_pause()
                if pause is None:
                    return None
                await waiter.wait_async(pause)
            probed = True
            if self._check_interrupted(ctx):
                return None
            waiter.clear()
            found = await asyncio.to_thread(probe)
            if found is not None:
                return found


_STATE_LOCK = threading.Lock()
_HUBS: dict[tuple[str, str | None], WakeupHub] = {}
_HUBS_LOCK = threading.Lock()


def _hub_for(database: str, schema: str | None) -> WakeupHub:
    # One hub per database in the process: a DBOSClient and the runtime wake each other directly.
    with _HUBS_LOCK:
        return _HUBS.setdefault((database, schema), WakeupHub())


def state(runtime: Runtime) -> Messaging:
    """The runtime's messaging state, created on first use (kept on the runtime itself)."""
    found: Messaging | None = getattr(runtime, "_keeptime_messaging", None)
    if found is None:
        with _STATE_LOCK:
            found = getattr(runtime, "_keeptime_messaging", None)
            if found is None:
                found = Messaging(runtime)
                runtime._keeptime_messaging = found  # type: ignore[attr-defined]
    return found


# -- validation ------------------------------------------------------------------------------------


def _check_str(value: Any, what: str, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, str) or not value:
        expected = "a non-empty string or None" if allow_none else "a non-empty string"
        raise DBOSInvalidArgumentError(f"{what} must be {expected}, got {value!r}")


def _check_timeout(timeout_seconds: Any) -> float:
    if (
        isinstance(timeout_seconds, bool)
        or not isinstance(timeout_seconds, int | float)
        or math.isnan(timeout_seconds)
        or timeout_seconds < 0
    ):
        raise DBOSInvalidArgumentError(
            f"timeout_seconds must be a non-negative number, got {timeout_seconds!r}"
        )
    return float(min(timeout_seconds, MAX_TIMEOUT_SECONDS))


def _pausing_in_workflows(
    operation: Callable[Concatenate[Runtime, P], T],
) -> Callable[Concatenate[Runtime, P], T]:
    """Called from a workflow (or its step), the operation's storage calls wait out database
    outages until shutdown, so an outage pauses the workflow instead of failing it. Called from
    plain code, they keep their bounded retry."""

    @functools.wraps(operation)
    def pausing(runtime: Runtime, /, *args: P.args, **kwargs: P.kwargs) -> T:
        if current_workflow() is None:
            return operation(runtime, *args, **kwargs)
        with waiting_out_outages(runtime.stopping):
            return operation(runtime, *args, **kwargs)

    return pausing


def _pausing_in_workflows_async(
    operation: Callable[Concatenate[Runtime, P], Awaitable[T]],
) -> Callable[Concatenate[Runtime, P], Coroutine[Any, Any, T]]:
    """``_pausing_in_workflows`` for coroutines (``asyncio.to_thread`` carries the setting)."""

    @functools.wraps(operation)
    async def pausing(runtime: Runtime, /, *args: P.args, **kwargs: P.kwargs) -> T:
        if current_workflow() is None:
            return await operation(runtime, *args, **kwargs)
        with waiting_out_outages(runtime.stopping):
            return await operation(runtime, *args, **kwargs)

    return pausing


def _workflow_step(ctx: WorkflowContext | None) -> WorkflowContext | None:
    """The workflow to checkpoint in, or None when called from a step or outside workflows."""
    return ctx if ctx is not None and not ctx.in_step else None


# -- send / recv -----------------------------------------------------------------------------------


@_pausing_in_workflows
def send(runtime: Runtime, destination_id: str, message: Any, topic: str | None) -> None:
    """Queue ``message`` for ``destination_id``: exactly once from a workflow or with an ID."""
    _check_str(destination_id, "destination_id")
    _check_str(topic, "topic", allow_none=True)
    m = state(runtime)
    encoded = runtime.codec.encode(message, f"the message to workflow {destination_id!r}")
    ctx = _workflow_step(current_workflow())
    if ctx is None:
        if not m.store.send_now(destination_id, topic, encoded, consume_workflow_id()):
            return  # this idempotency key was used before
    else:
        fid = ctx.take_function_id()
        replayed = replay_or_check(runtime, ctx, fid, "DBOS.send")
        if replayed is not None:
            replayed.value()  # a send that failed the first time fails again, deterministically
            return
        try:
            m.store.record_with(
                ctx.workflow_id,
                fid,
                "DBOS.send",
                lambda conn: m.store.send(
                    conn, destination_id, topic, encoded, f"{ctx.workflow_id}-{fid}"
                ),
                lambda _: None,
            )
        except DBOSNonExistentWorkflowError as exc:
            # Checkpoint the failure: if the destination appears later, a replay must not send.
            error = StepRecord(fid, "DBOS.send", None, runtime.codec.encode_error(exc), None)
            runtime.store.record_step(ctx.workflow_id, error, None)
            raise
    m.wake(m.store.message_key(destination_id, topic))


@dataclass
class _DurableWait:
    """A recv or get_event in a workflow: its step, and the step that checkpoints its deadline.

    Both step numbers are taken on every execution, but the deadline is only recorded when the
    call has to wait, so a call answered at once costs one write (and a wait, two).
    """

    ctx: WorkflowContext
    name: str
    function_id: int
    deadline_id: int
    timeout: float
    replayed: Replayed | None
    deadline_ms: int | None = None  # once recorded or replayed


def _begin_durable_wait(
    runtime: Runtime, ctx: WorkflowContext, name: str, timeout: float
) -> _DurableWait:
    fid = ctx.take_function_id()
    deadline_id = ctx.take_function_id()
    replayed = replay_or_check(runtime, ctx, fid, name)
    return _DurableWait(ctx, name, fid, deadline_id, timeout, replayed)


DEADLINE_STEP = "DBOS.deadline"


def _try_step(
    runtime: Runtime, wait: _DurableWait, find: Callable[[Connection], str | None], final: bool
) -> WaitTry | None:
    """Probe and, if found (or ``final``), record the step in one transaction; None: wait on.

    The first try that finds nothing records the wait's deadline in the same transaction.
    """
    deadline: StepRecord | None = None
    new_deadline_ms = 0
    if not final and wait.deadline_ms is None:
        replayed = replay_or_check(runtime, wait.ctx, wait.deadline_id, DEADLINE_STEP)
        if replayed is not None:
            wait.deadline_ms = int(replayed.value() or 0)
        else:
            new_deadline_ms = runtime.now_ms() + int(wait.timeout * 1000)
            encoded = runtime.codec.encode(new_deadline_ms, "a wait's deadline")
            deadline = StepRecord(wait.deadline_id, DEADLINE_STEP, encoded, None, None)
    store = state(runtime).store
    tried = store.try_wait_step(
        wait.ctx.workflow_id, wait.function_id, wait.name, find, final=final, deadline=deadline
    )
    if tried.done:
        return tried
    if tried.earlier_deadline is not None:  # another execution started this wait first
        wait.deadline_ms = int(Replayed(runtime, tried.earlier_deadline).value() or 0)
    elif deadline is not None:
        wait.deadline_ms = new_deadline_ms
    return None


def _remaining_seconds(runtime: Runtime, wait: _DurableWait) -> float:
    return max(0.0, ((wait.deadline_ms or 0) - runtime.now_ms()) / 1000)


def _finished_value(runtime: Runtime, wait: _DurableWait, tried: WaitTry) -> Any:
    if tried.earlier is not None:
        return Replayed(runtime, tried.earlier).value()
    where = f"the value of {wait.name} in workflow {wait.ctx.workflow_id!r}"
    return runtime.codec.decode(tried.value, where)


def _poll_try(
    runtime: Runtime,
    wait: _DurableWait,
    find: Callable[[Connection], str | None],
    ready: Callable[[], bool],
) -> Callable[[], WaitTry | None]:
    """The probe of a waiting step after its first try."""
    if runtime.db.is_sqlite:
        # SQLite serializes writers (a try is a write): look with a read first, which never
        # blocks them. On PostgreSQL a failed try costs the same round trips as a read.
        return lambda: _try_step(runtime, wait, find, False) if ready() else None
    return lambda: _try_step(runtime, wait, find, False)


def _wait_durably(
    runtime: Runtime,
    wait: _DurableWait,
    key: str,
    find: Callable[[Connection], str | None],
    ready: Callable[[], bool],
) -> Any:
    """Take what ``find`` finds as the wait's step, waiting up to its durable deadline."""
    m = state(runtime)
    with m.watching(key) as waiter:
        tried = _try_step(runtime, wait, find, final=wait.timeout <= 0)
        if tried is None:
            probe = _poll_try(runtime, wait, find, ready)
            remaining = _remaining_seconds(runtime, wait)
            tried = m.keep_probing(waiter, probe, remaining, wait.ctx, probed=True)
    if tried is None:  # timed out: record whatever is there now, or None
        tried = _try_step(runtime, wait, find, final=True)
    assert tried is not None
    return _finished_value(runtime, wait, tried)


async def _wait_durably_async(
    runtime: Runtime,
    wait: _DurableWait,
    key: str,
    find: Callable[[Connection], str | None],
    ready: Callable[[], bool],
) -> Any:
    m = state(runtime)
    with m.watching(key, asyncio.get_running_loop()) as waiter:
        first = wait.timeout <= 0
        tried = await asyncio.to_thread(_try_step, runtime, wait, find, first)
        if tried is None:
            probe = _poll_try(runtime, wait, find, ready)
            remaining = _remaining_seconds(runtime, wait)
            tried = await m.keep_probing_async(waiter, probe, remaining, wait.ctx, probed=True)
    if tried is None:
        tried = await asyncio.to_thread(_try_step, runtime, wait, find, True)
    assert tried is not None
    return _finished_value(runtime, wait, tried)


def _begin_recv(
    runtime: Runtime, ctx: WorkflowContext, topic: str | None, timeout_seconds: Any
) -> _DurableWait:
    _check_str(topic, "topic", allow_none=True)
    timeout = _check_timeout(timeout_seconds)
    if ctx.in_step:
        raise DBOSNotInWorkflowError(
            "DBOS.recv cannot be called from a step (steps may run more than once); "
            "call it from the workflow itself"
        )
    return _begin_durable_wait(runtime, ctx, "DBOS.recv", timeout)


def _recv_parts(
    runtime: Runtime, wait: _DurableWait, topic: str | None
) -> tuple[str, Callable[[Connection], str | None], Callable[[], bool]]:
    """The wake-up key, the take and the read-only check of a recv."""
    store = state(runtime).store
    workflow_id = wait.ctx.workflow_id
    return (
        store.message_key(workflow_id, topic),
        lambda conn: store.take_message(conn, workflow_id, topic),
        lambda: store.has_message(workflow_id, topic),
    )


@_pausing_in_workflows
def recv(runtime: Runtime, ctx: WorkflowContext, topic: str | None, timeout_seconds: float) -> Any:
    """Take the next message of ``topic``, waiting up to ``timeout_seconds``; None on timeout."""
    wait = _begin_recv(runtime, ctx, topic, timeout_seconds)
    if wait.replayed is not None:
        return wait.replayed.value()
    return _wait_durably(runtime, wait, *_recv_parts(runtime, wait, topic))


@_pausing_in_workflows_async
async def recv_async(
    runtime: Runtime, ctx: WorkflowContext, topic: str | None, timeout_seconds: float
) -> Any:
    wait = await asyncio.to_thread(_begin_recv, runtime, ctx, topic, timeout_seconds)
    if wait.replayed is not None:
        return wait.replayed.value()
    return await _wait_durably_async(runtime, wait, *_recv_parts(runtime, wait, topic))


# -- events ----------------------------------------------------------------------------------------


@_pausing_in_workflows
def set_event(runtime: Runtime, ctx: WorkflowContext, key: str, value: Any) -> None:
    """Publish ``key`` = ``value`` for this workflow; the latest value wins."""
    _check_str(key, "event key")
    m = state(runtime)
    encoded = runtime.codec.encode(value, f"the value of event {key!r}")
    if ctx.in_step:
        m.store.set_event_now(ctx.workflow_id, key, encoded)
    else:
        fid = ctx.take_function_id()
        if replay_or_check(runtime, ctx, fid, "DBOS.setEvent") is not None:
            return
        m.store.record_with(
            ctx.workflow_id,
            fid,
            "DBOS.setEvent",
            lambda conn: m.store.set_event(conn, ctx.workflow_id, key, encoded),
            lambda _: None,
        )
    m.wake(m.store.event_key(ctx.workflow_id, key))


@dataclass
class _EventRead:
    workflow_id: str
    key: str
    timeout: float
    durable: _DurableWait | None  # set inside a workflow, whose step records the value


def _begin_get_event(
    runtime: Runtime, workflow_id: str, key: str, timeout_seconds: Any
) -> _EventRead:
    _check_str(workflow_id, "workflow_id")
    _check_str(key, "event key")
    timeout = _check_timeout(timeout_seconds)
    ctx = _workflow_step(current_workflow())
    durable = None
    if ctx is not None:
        durable = _begin_durable_wait(runtime, ctx, "DBOS.getEvent", timeout)
    return _EventRead(workflow_id, key, timeout, durable)


def _event_probe(runtime: Runtime, read: _EventRead) -> Callable[[], str | None]:
    store = state(runtime).store
    return lambda: store.get_event(read.workflow_id, read.key)


def _decode_event(runtime: Runtime, read: _EventRead, found: str | None) -> Any:
    return runtime.codec.decode(found, f"event {read.key!r} of workflow {read.workflow_id!r}")


def _event_parts(
    runtime: Runtime, read: _EventRead
) -> tuple[str, Callable[[Connection], str | None], Callable[[], bool]]:
    """The wake-up key, the in-transaction read and the read-only check of a get_event."""
    store = state(runtime).store
    return (
        store.event_key(read.workflow_id, read.key),
        lambda conn: store.event_in(conn, read.workflow_id, read.key),
        lambda: store.get_event(read.workflow_id, read.key) is not None,
    )


@_pausing_in_workflows
def get_event(runtime: Runtime, workflow_id: str, key: str, timeout_seconds: float) -> Any:
    """The latest value of an event, waiting up to ``timeout_seconds`` for it; None on timeout."""
    read = _begin_get_event(runtime, workflow_id, key, timeout_seconds)
    wait = read.durable
    if wait is None:
        m = state(runtime)
        wake_key = m.store.event_key(workflow_id, key)
        found = m.wait_for(wake_key, _event_probe(runtime, read), read.timeout, current_workflow())
        return _decode_event(runtime, read, found)
    if wait.replayed is not None:
        return wait.replayed.value()
    return _wait_durably(runtime, wait, *_event_parts(runtime, read))


@_pausing_in_workflows_async
async def get_event_async(
    runtime: Runtime, workflow_id: str, key: str, timeout_seconds: float
) -> Any:
    read = await asyncio.to_thread(_begin_get_event, runtime, workflow_id, key, timeout_seconds)
    wait = read.durable
    if wait is None:
        m = state(runtime)
        wake_key = m.store.event_key(workflow_id, key)
        probe = _event_probe(runtime, read)
        found = await m.wait_for_async(wake_key, probe, read.timeout, current_workflow())
        return _decode_event(runtime, read, found)
    if wait.replayed is not None:
        return wait.replayed.value()
    return await _wait_durably_async(runtime, wait, *_event_parts(runtime, read))


@_pausing_in_workflows
def get_all_events(runtime: Runtime, workflow_id: str) -> dict[str, Any]:
    """The latest value of every event the workflow published."""
    _check_str(workflow_id, "workflow_id")
    raw = state(runtime).store.all_events(workflow_id)
    return {
        k: runtime.codec.decode(v, f"event {k!r} of workflow {workflow_id!r}")
        for k, v in raw.items()
    }


# -- streams ---------------------------------------------------------------------------------------


@_pausing_in_workflows
def write_stream(runtime: Runtime, ctx: WorkflowContext, key: str, value: Any) -> None:
    """Append to a stream: exactly once from a workflow, at least once from a step."""
    _append(runtime, ctx, key, value, closed=False)


@_pausing_in_workflows
def close_stream(runtime: Runtime, ctx: WorkflowContext, key: str) -> None:
    _append(runtime, ctx, key, None, closed=True)


def _append(runtime: Runtime, ctx: WorkflowContext, key: str, value: Any, closed: bool) -> None:
    _check_str(key, "stream key")
    m = state(runtime)
    encoded = None if closed else runtime.codec.encode(value, f"a value for stream {key!r}")
    name = "DBOS.closeStream" if closed else "DBOS.writeStream"
    if ctx.in_step:
        m.store.append_stream_now(ctx.workflow_id, key, encoded, closed)
    else:
        fid = ctx.take_function_id()
        if replay_or_check(runtime, ctx, fid, name) is not None:
            return
        m.store.record_with(
            ctx.workflow_id,
            fid,
            name,
            lambda conn: m.store.append_stream(conn, ctx.workflow_id, key, encoded, closed),
            lambda _: None,
        )
    m.wake(m.store.stream_key(ctx.workflow_id, key))


@dataclass
class _Batch:
    values: list[str | None]
    ended: bool


class _StreamCursor:
    """Where a reader is in a stream; ``poll`` returns what is new, or None when nothing is."""

    def __init__(self, runtime: Runtime, workflow_id: str, key: str) -> None:
        _check_str(workflow_id, "workflow_id")
        _check_str(key, "stream key")
        self.runtime = runtime
        self.store = state(runtime).store
        self.workflow_id = workflow_id
        self.key = key
        self.wake_key = self.store.stream_key(workflow_id, key)
        self.offset = 0

    def poll(self) -> _Batch | None:
        batch = self._read()
        if batch.values or batch.ended:
            return batch
        outcome = self.runtime.store.get_outcome(self.workflow_id)
        if outcome is not None and outcome[0] not in TERMINAL_STATUSES:
            return None
        # The workflow ended (or never existed): the stream is closed after what it wrote.
        last = self._read()
        return _Batch(last.values, True)

    def _read(self) -> _Batch:
        values: list[str | None] = []
        for offset, value, closed in self.store.read_stream(
            self.workflow_id, self.key, self.offset
        ):
            if closed:
                return _Batch(values, True)
            values.append(value)
            self.offset = offset + 1
        return _Batch(values, False)

    def decode(self, value: str | None) -> Any:
        return self.runtime.codec.decode(
            value, f"a value of stream {self.key!r} of workflow {self.workflow_id!r}"
        )


def read_stream(runtime: Runtime, workflow_id: str, key: str) -> Generator[Any, Any, None]:
    """Yield the stream's values in order until it is closed or its workflow has ended."""
    cursor = _StreamCursor(runtime, workflow_id, key)  # validates now, not at the first next()
    return _read_stream(cursor)


def _read_stream(cursor: _StreamCursor) -> Generator[Any, Any, None]:
    m = state(cursor.runtime)
    while True:
        batch = m.wait_for(cursor.wake_key, cursor.poll, math.inf, None)
        if batch is None:  # shutting down
            return
        for value in batch.values:
            yield cursor.decode(value)
        if batch.ended:
            return


async def read_stream_async(
    runtime: Runtime, workflow_id: str, key: str
) -> AsyncGenerator[Any, None]:
    cursor = _StreamCursor(runtime, workflow_id, key)
    m = state(runtime)
    while True:
        batch = await m.wait_for_async(cursor.wake_key, cursor.poll, math.inf, None)
        if batch is None:
            return
        for value in batch.values:
            yield cursor.decode(value)
        if batch.ended:
            return
