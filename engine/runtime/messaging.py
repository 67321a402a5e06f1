"""The messaging operations: send/recv, events and streams, on top of the message store.

The waits they do live in ``engine.runtime.message_waits`` (the runtime's messaging service,
which also wakes waiters) and, inside workflows, ``engine.runtime.durable_waits``.
"""

from __future__ import annotations

import asyncio
import functools
import math
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol, TypeVar

from sqlalchemy import Connection

from engine.error import (
    DBOSInvalidArgumentError,
    DBOSNonExistentWorkflowError,
    DBOSNotInWorkflowError,
)
from engine.runtime.context import WorkflowContext, consume_workflow_id, current_workflow
from engine.runtime.durable_waits import (
    DurableWait,
    begin_durable_wait,
    wait_durably,
    wait_durably_async,
)
from engine.runtime.message_waits import Messaging
from engine.runtime.steps import replay_or_check
from engine.serialization import Codec
from engine.storage.database import waiting_out_outages
from engine.storage.store import TERMINAL_STATUSES, StepRecord, SystemStore

if TYPE_CHECKING:
    from engine.runtime.executor import Runtime


class MessagingHost(Protocol):
    """What sending, reading events and reading streams need outside a workflow: a launched
    runtime, or a ``DBOSClient``. Inside a workflow, the workflow's own runtime checkpoints."""

    @property
    def store(self) -> SystemStore: ...

    @property
    def codec(self) -> Codec: ...

    @property
    def messaging(self) -> Messaging: ...

    @property
    def stopping(self) -> threading.Event: ...


T = TypeVar("T")
P = ParamSpec("P")
H = TypeVar("H", bound=MessagingHost)
MAX_TIMEOUT_SECONDS = 10 * 365 * 24 * 3600  # keeps durable deadlines in range

__all__ = [
    "Messaging",
    "close_stream",
    "get_all_events",
    "get_event",
    "get_event_async",
    "read_stream",
    "read_stream_async",
    "recv",
    "recv_async",
    "send",
    "set_event",
    "write_stream",
]


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
    operation: Callable[Concatenate[H, P], T],
) -> Callable[Concatenate[H, P], T]:
    """Called from a workflow (or its step), the operation's storage calls wait out database
    outages until shutdown, so an outage pauses the workflow instead of failing it. Called from
    plain code, they keep their bounded retry."""

    @functools.wraps(operation)
    def pausing(runtime: H, /, *args: P.args, **kwargs: P.kwargs) -> T:
        if current_workflow() is None:
            return operation(runtime, *args, **kwargs)
        with waiting_out_outages(runtime.stopping):
            return operation(runtime, *args, **kwargs)

    return pausing


def _pausing_in_workflows_async(
    operation: Callable[Concatenate[H, P], Awaitable[T]],
) -> Callable[Concatenate[H, P], Coroutine[Any, Any, T]]:
    """``_pausing_in_workflows`` for coroutines (``asyncio.to_thread`` carries the setting)."""

    @functools.wraps(operation)
    async def pausing(runtime: H, /, *args: P.args, **kwargs: P.kwargs) -> T:
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
def send(host: MessagingHost, destination_id: str, message: Any, topic: str | None) -> None:
    """Queue ``message`` for ``destination_id``: exactly once from a workflow or with an ID."""
    _check_str(destination_id, "destination_id")
    _check_str(topic, "topic", allow_none=True)
    m = host.messaging
    encoded = host.codec.encode(message, f"the message to workflow {destination_id!r}")
    ctx = _workflow_step(current_workflow())
    if ctx is None:
        if not m.store.send_now(destination_id, topic, encoded, consume_workflow_id()):
            return  # this idempotency key was used before
    else:
        runtime: Runtime = ctx.runtime  # the workflow's own runtime checkpoints
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


def _begin_recv(
    runtime: Runtime, ctx: WorkflowContext, topic: str | None, timeout_seconds: Any
) -> DurableWait:
    _check_str(topic, "topic", allow_none=True)
    timeout = _check_timeout(timeout_seconds)
    if ctx.in_step:
        raise DBOSNotInWorkflowError(
            "DBOS.recv cannot be called from a step (steps may run more than once); "
            "call it from the workflow itself"
        )
    return begin_durable_wait(runtime, ctx, "DBOS.recv", timeout)


def _recv_parts(
    runtime: Runtime, wait: DurableWait, topic: str | None
) -> tuple[str, Callable[[Connection], str | None], Callable[[], bool]]:
    """The wake-up key, the take and the read-only check of a recv."""
    store = runtime.messaging.store
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
    return wait_durably(runtime, wait, *_recv_parts(runtime, wait, topic))


@_pausing_in_workflows_async
async def recv_async(
    runtime: Runtime, ctx: WorkflowContext, topic: str | None, timeout_seconds: float
) -> Any:
    """``recv`` for coroutines."""
    wait = await asyncio.to_thread(_begin_recv, runtime, ctx, topic, timeout_seconds)
    if wait.replayed is not None:
        return wait.replayed.value()
    return await wait_durably_async(runtime, wait, *_recv_parts(runtime, wait, topic))


# -- events ----------------------------------------------------------------------------------------


@_pausing_in_workflows
def set_event(runtime: Runtime, ctx: WorkflowContext, key: str, value: Any) -> None:
    """Publish ``key`` = ``value`` for this workflow; the latest value wins."""
    _check_str(key, "event key")
    m = runtime.messaging
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
    durable: DurableWait | None  # set inside a workflow, whose step records the value


def _begin_get_event(workflow_id: str, key: str, timeout_seconds: Any) -> _EventRead:
    _check_str(workflow_id, "workflow_id")
    _check_str(key, "event key")
    timeout = _check_timeout(timeout_seconds)
    ctx = _workflow_step(current_workflow())
    durable = None
    if ctx is not None:
        durable = begin_durable_wait(ctx.runtime, ctx, "DBOS.getEvent", timeout)
    return _EventRead(workflow_id, key, timeout, durable)


def _event_probe(host: MessagingHost, read: _EventRead) -> Callable[[], str | None]:
    store = host.messaging.store
    return lambda: store.get_event(read.workflow_id, read.key)


def _decode_event(host: MessagingHost, read: _EventRead, found: str | None) -> Any:
    return host.codec.decode(found, f"event {read.key!r} of workflow {read.workflow_id!r}")


def _event_parts(
    runtime: Runtime, read: _EventRead
) -> tuple[str, Callable[[Connection], str | None], Callable[[], bool]]:
    """The wake-up key, the in-transaction read and the read-only check of a get_event."""
    store = runtime.messaging.store
    return (
        store.event_key(read.workflow_id, read.key),
        lambda conn: store.event_in(conn, read.workflow_id, read.key),
        lambda: store.get_event(read.workflow_id, read.key) is not None,
    )


@_pausing_in_workflows
def get_event(host: MessagingHost, workflow_id: str, key: str, timeout_seconds: float) -> Any:
    """The latest value of an event, waiting up to ``timeout_seconds`` for it; None on timeout."""
    read = _begin_get_event(workflow_id, key, timeout_seconds)
    wait = read.durable
    if wait is None:
        m = host.messaging
        wake_key = m.store.event_key(workflow_id, key)
        found = m.wait_for(wake_key, _event_probe(host, read), read.timeout, current_workflow())
        return _decode_event(host, read, found)
    if wait.replayed is not None:
        return wait.replayed.value()
    runtime: Runtime = wait.ctx.runtime
    return wait_durably(runtime, wait, *_event_parts(runtime, read))


@_pausing_in_workflows_async
async def get_event_async(
    host: MessagingHost, workflow_id: str, key: str, timeout_seconds: float
) -> Any:
    """``get_event`` for coroutines."""
    read = await asyncio.to_thread(_begin_get_event, workflow_id, key, timeout_seconds)
    wait = read.durable
    if wait is None:
        m = host.messaging
        wake_key = m.store.event_key(workflow_id, key)
        probe = _event_probe(host, read)
        found = await m.wait_for_async(wake_key, probe, read.timeout, current_workflow())
        return _decode_event(host, read, found)
    if wait.replayed is not None:
        return wait.replayed.value()
    runtime: Runtime = wait.ctx.runtime
    return await wait_durably_async(runtime, wait, *_event_parts(runtime, read))


@_pausing_in_workflows
def get_all_events(runtime: Runtime, workflow_id: str) -> dict[str, Any]:
    """The latest value of every event the workflow published."""
    _check_str(workflow_id, "workflow_id")
    raw = runtime.messaging.store.all_events(workflow_id)
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
    """Close a stream: readers get what was written before, then stop."""
    _append(runtime, ctx, key, None, closed=True)


def _append(runtime: Runtime, ctx: WorkflowContext, key: str, value: Any, closed: bool) -> None:
    _check_str(key, "stream key")
    m = runtime.messaging
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

    def __init__(self, host: MessagingHost, workflow_id: str, key: str) -> None:
        _check_str(workflow_id, "workflow_id")
        _check_str(key, "stream key")
        self.host = host
        self.store = host.messaging.store
        self.workflow_id = workflow_id
        self.key = key
        self.wake_key = self.store.stream_key(workflow_id, key)
        self.offset = 0

    def poll(self) -> _Batch | None:
        batch = self._read()
        if batch.values or batch.ended:
            return batch
        outcome = self.host.store.get_outcome(self.workflow_id)
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
        return self.host.codec.decode(
            value, f"a value of stream {self.key!r} of workflow {self.workflow_id!r}"
        )


def read_stream(host: MessagingHost, workflow_id: str, key: str) -> Generator[Any, Any, None]:
    """Yield the stream's values in order until it is closed or its workflow has ended."""
    cursor = _StreamCursor(host, workflow_id, key)  # validates now, not at the first next()
    return _read_stream(cursor)


def _read_stream(cursor: _StreamCursor) -> Generator[Any, Any, None]:
    m = cursor.host.messaging
    while True:
        batch = m.wait_for(cursor.wake_key, cursor.poll, math.inf, None)
        if batch is None:  # shutting down
            return
        for value in batch.values:
            yield cursor.decode(value)
        if batch.ended:
            return


async def read_stream_async(
    host: MessagingHost, workflow_id: str, key: str
) -> AsyncGenerator[Any, None]:
    """``read_stream`` for coroutines."""
    cursor = _StreamCursor(host, workflow_id, key)
    m = host.messaging
    while True:
        batch = await m.wait_for_async(cursor.wake_key, cursor.poll, math.inf, None)
        if batch is None:
            return
        for value in batch.values:
            yield cursor.decode(value)
        if batch.ended:
            return
