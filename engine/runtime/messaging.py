"""send/recv, events and streams on top of the message store.

Waiting uses a local condition (woken by this process's own writes) backed by polling with
backoff, so writes from other processes are seen within ``MAX_POLL_SECONDS``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator
from typing import TYPE_CHECKING, Any, TypeVar

from engine.error import DBOSInvalidArgumentError, DBOSNotInWorkflowError
from engine.runtime.context import WorkflowContext, consume_workflow_id, current_workflow
from engine.runtime.steps import Replayed, replay_or_check
from engine.storage.messages import MessageStore
from engine.storage.store import TERMINAL_STATUSES

if TYPE_CHECKING:
    from engine.runtime.executor import Runtime

T = TypeVar("T")
MAX_POLL_SECONDS = 0.5
_wakeup = threading.Condition()


def _notify() -> None:
    with _wakeup:
        _wakeup.notify_all()


def _messages(runtime: Runtime) -> MessageStore:
    store = getattr(runtime, "_message_store", None)
    if store is None:
        store = MessageStore(runtime.store)
        runtime._message_store = store  # type: ignore[attr-defined]
    return store


def wait_for(
    runtime: Runtime, probe: Callable[[], T | None], timeout: float, ctx: WorkflowContext | None
) -> T | None:
    """Call ``probe`` until it returns a value or ``timeout`` seconds pass."""
    deadline = time.monotonic() + max(0.0, timeout)
    delay = 0.01
    while True:
        found = probe()
        if found is not None:
            return found
        remaining = deadline - time.monotonic()
        if remaining <= 0 or runtime.stopping.is_set():
            return None
        if ctx is not None and ctx.cancel_event.is_set():
            runtime.check_may_continue(ctx)
        with _wakeup:
            _wakeup.wait(min(delay, remaining))
        delay = min(delay * 2, MAX_POLL_SECONDS)


def _check_topic(topic: Any) -> None:
    if topic is not None and not isinstance(topic, str):
        raise DBOSInvalidArgumentError(f"topic must be a string or None, got {topic!r}")


def _check_timeout(timeout_seconds: Any) -> None:
    if (
        isinstance(timeout_seconds, bool)
        or not isinstance(timeout_seconds, int | float)
        or timeout_seconds < 0
    ):
        raise DBOSInvalidArgumentError(
            f"timeout_seconds must be a non-negative number, got {timeout_seconds!r}"
        )


def _step_in(ctx: WorkflowContext | None) -> WorkflowContext | None:
    """The workflow to checkpoint in, or None when called from a step or outside workflows."""
    return ctx if ctx is not None and not ctx.in_step else None


def _durable_deadline(runtime: Runtime, timeout: float) -> float:
    """A wait's deadline, checkpointed so a recovered workflow does not wait again from zero."""
    deadline_ms: int = runtime.run_internal_step(
        "DBOS.deadline", lambda: runtime.now_ms() + int(timeout * 1000)
    )
    return max(0.0, (deadline_ms - runtime.now_ms()) / 1000)


def send(runtime: Runtime, destination_id: str, message: Any, topic: str | None) -> None:
    _check_topic(topic)
    if not isinstance(destination_id, str) or not destination_id:
        raise DBOSInvalidArgumentError(
            f"destination_id must be a workflow ID, got {destination_id!r}"
        )
    store = _messages(runtime)
    encoded = runtime.codec.encode(message, f"the message to workflow {destination_id!r}")
    ctx = _step_in(current_workflow())
    if ctx is None:
        store.send_now(destination_id, topic, encoded, consume_workflow_id())
    else:
        fid = ctx.take_function_id()
        if replay_or_check(runtime, ctx, fid, "DBOS.send") is not None:
            return
        store.record_with(
            ctx.workflow_id,
            fid,
            "DBOS.send",
            lambda conn: store.send(
                conn, destination_id, topic, encoded, f"{ctx.workflow_id}-{fid}"
            ),
            lambda _: None,
        )
    _notify()


def recv(runtime: Runtime, ctx: WorkflowContext, topic: str | None, timeout_seconds: float) -> Any:
    _check_topic(topic)
    _check_timeout(timeout_seconds)
    if ctx.in_step:
        raise DBOSNotInWorkflowError(
            "DBOS.recv cannot be called from a step; call it from the workflow"
        )
    store = _messages(runtime)
    remaining = _durable_deadline(runtime, timeout_seconds)
    fid = ctx.take_function_id()
    replayed = replay_or_check(runtime, ctx, fid, "DBOS.recv")
    if replayed is not None:
        return replayed.value()

    def probe() -> tuple[Any] | None:
        _, value, earlier = store.record_with(
            ctx.workflow_id,
            fid,
            "DBOS.recv",
            lambda conn: store.take_message(conn, ctx.workflow_id, topic),
            lambda v: v,
        )
        if earlier is not None:
            return (Replayed(runtime, earlier).value(),)
        if value is None:
            return None
        return (runtime.codec.decode(value, "a received message"),)

    def has_one() -> bool | None:
        return True if store.has_message(ctx.workflow_id, topic) else None

    wait_for(runtime, has_one, remaining, ctx)
    # Take the message (or record the timeout as None) in one checkpointed transaction.
    found = probe()
    if found is not None:
        return found[0]
    return None


def set_event(runtime: Runtime, ctx: WorkflowContext, key: str, value: Any) -> None:
    if not isinstance(key, str):
        raise DBOSInvalidArgumentError(f"event key must be a string, got {key!r}")
    store = _messages(runtime)
    encoded = runtime.codec.encode(value, f"the value of event {key!r}")
    if ctx.in_step:
        store.set_event_now(ctx.workflow_id, key, encoded)
    else:
        fid = ctx.take_function_id()
        if replay_or_check(runtime, ctx, fid, "DBOS.setEvent") is not None:
            return
        store.record_with(
            ctx.workflow_id,
            fid,
            "DBOS.setEvent",
            lambda conn: store.set_event(conn, ctx.workflow_id, key, encoded),
            lambda _: None,
        )
    _notify()


def get_event(runtime: Runtime, workflow_id: str, key: str, timeout_seconds: float) -> Any:
    _check_timeout(timeout_seconds)
    store = _messages(runtime)
    ctx = _step_in(current_workflow())

    def fetch(timeout: float) -> Any:
        found = wait_for(runtime, lambda: store.get_event(workflow_id, key), timeout, ctx)
        return None if found is None else runtime.codec.decode(found, f"event {key!r}")

    if ctx is None:
        return fetch(timeout_seconds)
    remaining = _durable_deadline(runtime, timeout_seconds)
    return runtime.run_internal_step("DBOS.getEvent", lambda: fetch(remaining))


def get_all_events(runtime: Runtime, workflow_id: str) -> dict[str, Any]:
    raw = _messages(runtime).all_events(workflow_id)
    return {k: runtime.codec.decode(v, f"event {k!r}") for k, v in raw.items()}


def write_stream(runtime: Runtime, ctx: WorkflowContext, key: str, value: Any) -> None:
    _append(runtime, ctx, key, value, closed=False)


def close_stream(runtime: Runtime, ctx: WorkflowContext, key: str) -> None:
    _append(runtime, ctx, key, None, closed=True)


def _append(runtime: Runtime, ctx: WorkflowContext, key: str, value: Any, closed: bool) -> None:
    if not isinstance(key, str):
        raise DBOSInvalidArgumentError(f"stream key must be a string, got {key!r}")
    store = _messages(runtime)
    encoded = None if closed else runtime.codec.encode(value, f"a value for stream {key!r}")
    name = "DBOS.closeStream" if closed else "DBOS.writeStream"
    if ctx.in_step:
        store.append_stream_now(ctx.workflow_id, key, encoded, closed)
    else:
        fid = ctx.take_function_id()
        if replay_or_check(runtime, ctx, fid, name) is not None:
            return
        store.record_with(
            ctx.workflow_id,
            fid,
            name,
            lambda conn: store.append_stream(conn, ctx.workflow_id, key, encoded, closed),
            lambda _: None,
        )
    _notify()


def read_stream(runtime: Runtime, workflow_id: str, key: str) -> Generator[Any, Any, None]:
    """Yield the stream's values in order until it is closed or its workflow has finished."""
    store = _messages(runtime)
    offset = 0
    delay = 0.01
    while True:
        rows = store.read_stream(workflow_id, key, offset)
        for row_offset, value, closed in rows:
            if closed:
                return
            yield runtime.codec.decode(value, f"a value of stream {key!r}")
            offset = row_offset + 1
        if rows:
            delay = 0.01
            continue
        outcome = runtime.store.get_outcome(workflow_id)
        if outcome is None or outcome[0] in TERMINAL_STATUSES:
            if not store.read_stream(workflow_id, key, offset):
                return
            continue
        if runtime.stopping.is_set():
            return
        with _wakeup:
            _wakeup.wait(delay)
        delay = min(delay * 2, MAX_POLL_SECONDS)


async def read_stream_async(
    runtime: Runtime, workflow_id: str, key: str
) -> AsyncGenerator[Any, None]:
    iterator = read_stream(runtime, workflow_id, key)
    sentinel = object()
    while True:
        value = await asyncio.to_thread(next, iterator, sentinel)
        if value is sentinel:
            return
        yield value
