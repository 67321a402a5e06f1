"""Running one step inside a workflow: replay, cancellation checks, retries, checkpoint.

The decisions (replay or run, retry or stop, record or not) are pure, in ``engine.core.steps``.
``StepCall`` applies them to one call; the sync and async drivers in ``executor.py`` only differ
in how they call the function and wait, so no logic is kept twice.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import TYPE_CHECKING, Any

from engine.core import steps as decide
from engine.core.steps import Replay, RetryVerdict
from engine.error import DBOSWorkflowCancelledError
from engine.runtime.context import WorkflowContext
from engine.runtime.registry import StepOptions
from engine.storage.database import is_outage, waiting_out_outages
from engine.storage.store import StepRecord

if TYPE_CHECKING:
    from engine.runtime.executor import Runtime


class Replayed:
    """A step outcome recorded by an earlier execution."""

    def __init__(self, runtime: Runtime, record: StepRecord) -> None:
        self.runtime = runtime
        self.record = record

    def value(self) -> Any:
        if self.record.error is not None:
            err = self.runtime.codec.decode_error(self.record.error)
            assert err is not None
            if is_outage(err):
                raise decide.recorded_outage_error(self.record.function_name, err) from err
            raise err
        return self.runtime.codec.decode(
            self.record.output, f"the output of step {self.record.function_name!r}"
        )


def replay_or_check(
    runtime: Runtime, ctx: WorkflowContext, function_id: int, name: str
) -> Replayed | None:
    """The recorded outcome of this step, or None after checking the workflow may go on."""
    record = ctx.recorded.get(function_id)
    if record is not None:
        decision = decide.replay_decision(record.function_name, name)
        if decision is Replay.MISMATCH:
            raise decide.unexpected_step(ctx.workflow_id, function_id, record.function_name, name)
        return Replayed(runtime, record)
    runtime.check_may_continue(ctx)
    return None


class StepCall:
    def __init__(
        self, runtime: Runtime, ctx: WorkflowContext, name: str, options: StepOptions
    ) -> None:
        self.runtime = runtime
        self.ctx = ctx
        self.name = name
        self.options = options
        self.function_id = ctx.take_function_id()
        self.started_ms = runtime.now_ms()
        self.attempt = 0
        self.errors: list[BaseException] = []
        self.result: Any = None
        self.error: BaseException | None = None

    def begin(self) -> Replayed | None:
        replayed = replay_or_check(self.runtime, self.ctx, self.function_id, self.name)
        if replayed is None:
            self.attempt = 1
            self.ctx.in_step = True
            self.ctx.step_attempt = 1
        return replayed

    def succeeded(self, value: Any) -> None:
        self.result = value

    def failed(self, exc: BaseException) -> float | None:
        """Record a failed attempt; returns the delay before the next try, or None to stop."""
        outcome = decide.after_failure(
            self.options,
            self.attempt,
            outage=is_outage(exc),
            cancelled=self.ctx.cancel_event.is_set(),
            rand=random.random,
        )
        if outcome.verdict is RetryVerdict.OUTAGE:
            # No attempt of the step's own: it stops here, unrecorded, and the workflow pauses
            # (see ``finish``) and runs it again once the database is back.
            self.error = exc
            return None
        self.errors.append(exc)
        if outcome.verdict is RetryVerdict.RETRY:
            assert outcome.next_attempt is not None
            self.attempt = self.ctx.step_attempt = outcome.next_attempt
            return outcome.delay_seconds
        if outcome.verdict is RetryVerdict.CANCELLED:
            self.error = decide.cancelled_while_retrying(self.ctx.workflow_id, self.name)
        elif outcome.verdict is RetryVerdict.EXHAUSTED:
            self.error = decide.retries_exhausted(
                self.name, self.options.max_attempts, exc, self.errors
            )
        else:
            self.error = exc
        return None

    def finish(self) -> Any:
        """Checkpoint the outcome (one durable write) and return or raise it.

        The write waits out a database outage (until shutdown): the workflow pauses here.
        """
        self.ctx.in_step = False
        if self.error is not None and not decide.failure_recordable(
            outage=is_outage(self.error), stopping=self.runtime.stopping.is_set()
        ):
            raise self.error  # it runs again, after a restart or once the database is back
        codec = self.runtime.codec
        output = error = None
        if self.error is None:
            try:
                output = codec.encode(self.result, f"the output of step {self.name!r}")
            except Exception as exc:
                self.error = exc
        if self.error is not None:
            error = codec.encode_error(self.error)
        record = StepRecord(self.function_id, self.name, output, error, None)
        with waiting_out_outages(self.runtime.stopping):
            write = self.runtime.store.record_step(self.ctx.workflow_id, record, self.started_ms)
        if write.earlier is not None:
            return Replayed(self.runtime, write.earlier).value()
        if write.workflow_status == "CANCELLED":
            self.ctx.cancel_event.set()
            raise DBOSWorkflowCancelledError(
                f"workflow {self.ctx.workflow_id!r} was cancelled during step {self.name!r}"
            )
        if self.error is not None:
            raise self.error
        return self.result


def wait_or_cancel(ctx: WorkflowContext | None, seconds: float) -> None:
    """Sleep, but wake up at once when the workflow is cancelled."""
    if seconds <= 0:
        return
    if ctx is None:
        time.sleep(seconds)
    else:
        ctx.cancel_event.wait(seconds)


#: How often an async wait looks at its workflow's cancel flag (a threading.Event).
CANCEL_CHECK_SECONDS = 0.1


async def wait_or_cancel_async(ctx: WorkflowContext | None, seconds: float) -> None:
    """``wait_or_cancel`` on the event loop: no thread is held, and the cancel flag is looked at
    every ``CANCEL_CHECK_SECONDS``."""
    if seconds <= 0:
        return
    if ctx is None:
        await asyncio.sleep(seconds)
        return
    deadline = time.monotonic() + seconds
    while not ctx.cancel_event.is_set() and (left := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(left, CANCEL_CHECK_SECONDS))
