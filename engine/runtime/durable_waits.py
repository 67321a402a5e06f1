"""Waits checkpointed in a workflow (``DBOS.recv``, ``DBOS.get_event``): a replay returns what
the first execution got, and the wait's deadline is durable, so a recovered workflow waits only
for what remained of its timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from engine.runtime.context import WorkflowContext
from engine.runtime.steps import Replayed, replay_or_check
from engine.storage.messages import WaitTry
from engine.storage.store import StepRecord

if TYPE_CHECKING:
    from engine.runtime.executor import Runtime

DEADLINE_STEP = "DBOS.deadline"


@dataclass
class DurableWait:
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


def begin_durable_wait(
    runtime: Runtime, ctx: WorkflowContext, name: str, timeout: float
) -> DurableWait:
    """Take the wait's two step numbers; ``replayed`` is set when its step was recorded."""
    fid = ctx.take_function_id()
    deadline_id = ctx.take_function_id()
    replayed = replay_or_check(runtime, ctx, fid, name)
    return DurableWait(ctx, name, fid, deadline_id, timeout, replayed)


def _try_step(
    runtime: Runtime, wait: DurableWait, find: Callable[[Connection], str | None], final: bool
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
    store = runtime.messaging.store
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


def _remaining_seconds(runtime: Runtime, wait: DurableWait) -> float:
    return max(0.0, ((wait.deadline_ms or 0) - runtime.now_ms()) / 1000)


def _finished_value(runtime: Runtime, wait: DurableWait, tried: WaitTry) -> Any:
    if tried.earlier is not None:
        return Replayed(runtime, tried.earlier).value()
    where = f"the value of {wait.name} in workflow {wait.ctx.workflow_id!r}"
    return runtime.codec.decode(tried.value, where)


def _poll_try(
    runtime: Runtime,
    wait: DurableWait,
    find: Callable[[Connection], str | None],
    ready: Callable[[], bool],
) -> Callable[[], WaitTry | None]:
    """The probe of a waiting step after its first try."""
    if runtime.db.dialect.serializes_writers:
        # SQLite serializes writers (a try is a write): look with a read first, which never
        # blocks them. On PostgreSQL a failed try costs the same round trips as a read.
        return lambda: _try_step(runtime, wait, find, False) if ready() else None
    return lambda: _try_step(runtime, wait, find, False)


def wait_durably(
    runtime: Runtime,
    wait: DurableWait,
    key: str,
    find: Callable[[Connection], str | None],
    ready: Callable[[], bool],
) -> Any:
    """Take what ``find`` finds as the wait's step, waiting up to its durable deadline.

    ``key`` is the wake-up key; ``ready`` a read-only check that ``find`` would find something.
    """
    m = runtime.messaging
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


async def wait_durably_async(
    runtime: Runtime,
    wait: DurableWait,
    key: str,
    find: Callable[[Connection], str | None],
    ready: Callable[[], bool],
) -> Any:
    """``wait_durably`` for coroutines: database calls in threads, waits on the event loop."""
    m = runtime.messaging
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
