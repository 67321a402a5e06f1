"""``DBOS``'s durable sleep, messages, events and streams (a part of the ``DBOS`` facade)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator
from typing import Any

from engine.error import DBOSInvalidArgumentError, DBOSNotInWorkflowError
from engine.runtime import messaging
from engine.runtime.context import WorkflowContext, current_workflow
from engine.runtime.current import current_runtime as _runtime

#: How often an async durable sleep looks at its workflow's cancel flag.
_ASYNC_SLEEP_CANCEL_CHECK_SECONDS = 0.1


class MessagingMethods:
    """``DBOS.sleep``, ``send``/``recv``, events and streams; ``DBOS`` inherits them."""

    # -- durable sleep ----------------------------------------------------------------------------

    @classmethod
    def sleep(cls, seconds: float) -> None:
        """Durable sleep: in a workflow the wake-up time is recorded as a step, so a recovered
        workflow sleeps only what is left.

        Cancelling the workflow ends the sleep with DBOSWorkflowCancelledError. Outside a workflow,
        or in a step, it is ``time.sleep``. A negative or non-numeric ``seconds`` raises
        DBOSInvalidArgumentError.
        """
        _check_seconds(seconds, "DBOS.sleep")
        ctx = current_workflow()
        if ctx is None or ctx.in_step:
            time.sleep(seconds)
            return
        runtime = _runtime()
        wake_ms = runtime.run_internal_step(
            "DBOS.sleep", lambda: runtime.now_ms() + int(seconds * 1000)
        )
        remaining = (wake_ms - runtime.now_ms()) / 1000
        if remaining > 0 and ctx.cancel_event.wait(remaining):
            runtime.check_may_continue(ctx)

    @classmethod
    async def sleep_async(cls, seconds: float) -> None:
        """Async ``sleep``, with the same durability."""
        _check_seconds(seconds, "DBOS.sleep_async")
        ctx = current_workflow()
        if ctx is None or ctx.in_step:
            await asyncio.sleep(seconds)
            return
        runtime = _runtime()
        wake_ms = await asyncio.to_thread(
            runtime.run_internal_step, "DBOS.sleep", lambda: runtime.now_ms() + int(seconds * 1000)
        )
        # Slept on the event loop, not on a thread: asyncio's default executor has only a
        # few threads, and a thread held per sleeping workflow would starve it. The cancel
        # flag is a threading.Event, looked at every CANCEL_CHECK_SECONDS.
        while (remaining := (wake_ms - runtime.now_ms()) / 1000) > 0:
            if ctx.cancel_event.is_set():
                runtime.check_may_continue(ctx)
                return
            await asyncio.sleep(min(remaining, _ASYNC_SLEEP_CANCEL_CHECK_SECONDS))

    # -- messaging, events, streams ---------------------------------------------------------------

    @classmethod
    def send(cls, destination_id: str, message: Any, topic: str | None = None) -> None:
        """Send ``message`` to the workflow ``destination_id``, queued for it under ``topic``.

        Exactly once from a workflow, or from plain code inside ``SetWorkflowID(key)`` (the key is
        the idempotency key). Raises DBOSNonExistentWorkflowError if the destination does not exist.
        """
        messaging.send(_runtime(), destination_id, message, topic)

    @classmethod
    async def send_async(cls, destination_id: str, message: Any, topic: str | None = None) -> None:
        """Async ``send``."""
        await asyncio.to_thread(messaging.send, _runtime(), destination_id, message, topic)

    @classmethod
    def recv(cls, topic: str | None = None, timeout_seconds: float = 60) -> Any:
        """Take the next message sent to this workflow on ``topic`` (None: messages sent without
        one), waiting up to ``timeout_seconds``; returns None on timeout.

        The wait's deadline is durable: a recovered workflow waits only what is left. Raises
        DBOSNotInWorkflowError outside a workflow or in a step.
        """
        return messaging.recv(_runtime(), _require_workflow("DBOS.recv"), topic, timeout_seconds)

    @classmethod
    async def recv_async(cls, topic: str | None = None, timeout_seconds: float = 60) -> Any:
        """Async ``recv``; it holds no thread while it waits."""
        ctx = _require_workflow("DBOS.recv_async")
        return await messaging.recv_async(_runtime(), ctx, topic, timeout_seconds)

    @classmethod
    def set_event(cls, key: str, value: Any) -> None:
        """Publish ``key`` = ``value`` for the calling workflow; a later call replaces the value.

        Checkpointed from a workflow, written directly from a step. Raises DBOSNotInWorkflowError
        outside a workflow.
        """
        messaging.set_event(_runtime(), _require_workflow("DBOS.set_event"), key, value)

    @classmethod
    async def set_event_async(cls, key: str, value: Any) -> None:
        """Async ``set_event``."""
        ctx = _require_workflow("DBOS.set_event_async")
        await asyncio.to_thread(messaging.set_event, _runtime(), ctx, key, value)

    @classmethod
    def get_event(cls, workflow_id: str, key: str, timeout_seconds: float = 60) -> Any:
        """The latest value of event ``key`` of workflow ``workflow_id``, waiting up to
        ``timeout_seconds`` for it to be published; None on timeout.

        Called from a workflow, the value read is checkpointed, so recovery sees the same value.
        """
        return messaging.get_event(_runtime(), workflow_id, key, timeout_seconds)

    @classmethod
    async def get_event_async(cls, workflow_id: str, key: str, timeout_seconds: float = 60) -> Any:
        """Async ``get_event``; it holds no thread while it waits."""
        return await messaging.get_event_async(_runtime(), workflow_id, key, timeout_seconds)

    @classmethod
    def get_all_events(cls, workflow_id: str) -> dict[str, Any]:
        """The latest value of every event the workflow ``workflow_id`` published, by key."""
        return messaging.get_all_events(_runtime(), workflow_id)

    @classmethod
    async def get_all_events_async(cls, workflow_id: str) -> dict[str, Any]:
        """Async ``get_all_events``."""
        return await asyncio.to_thread(messaging.get_all_events, _runtime(), workflow_id)

    @classmethod
    def write_stream(cls, key: str, value: Any) -> None:
        """Append ``value`` to the calling workflow's stream ``key``.

        Exactly once from a workflow; at least once from a step (a retried step may write again).
        Raises DBOSNotInWorkflowError outside a workflow.
        """
        messaging.write_stream(_runtime(), _require_workflow("DBOS.write_stream"), key, value)

    @classmethod
    async def write_stream_async(cls, key: str, value: Any) -> None:
        """Async ``write_stream``."""
        ctx = _require_workflow("DBOS.write_stream_async")
        await asyncio.to_thread(messaging.write_stream, _runtime(), ctx, key, value)

    @classmethod
    def close_stream(cls, key: str) -> None:
        """Close the calling workflow's stream ``key``: readers stop after its last value. Streams
        also close when their workflow ends."""
        messaging.close_stream(_runtime(), _require_workflow("DBOS.close_stream"), key)

    @classmethod
    async def close_stream_async(cls, key: str) -> None:
        """Async ``close_stream``."""
        ctx = _require_workflow("DBOS.close_stream_async")
        await asyncio.to_thread(messaging.close_stream, _runtime(), ctx, key)

    @classmethod
    def read_stream(cls, workflow_id: str, key: str) -> Generator[Any, Any, None]:
        """Yield the values of stream ``key`` of workflow ``workflow_id`` in order, until the stream
        is closed or the workflow ends (at once if no such workflow exists).

        Keeptime: the arguments are checked when called, not at the first ``next()``.
        """
        return messaging.read_stream(_runtime(), workflow_id, key)

    @classmethod
    async def read_stream_async(cls, workflow_id: str, key: str) -> Any:
        """Async ``read_stream``: an async generator of the stream's values."""
        async for value in messaging.read_stream_async(_runtime(), workflow_id, key):
            yield value


def _require_workflow(what: str) -> WorkflowContext:
    ctx = current_workflow()
    if ctx is None:
        raise DBOSNotInWorkflowError(f"{what} can only be called inside a workflow")
    return ctx


def _check_seconds(seconds: float, what: str) -> None:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        raise DBOSInvalidArgumentError(
            f"{what} needs a non-negative number of seconds, got {seconds!r}"
        )
