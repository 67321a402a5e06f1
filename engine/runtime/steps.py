"""Running one step inside a workflow: replay, cancellation checks, retries, checkpoint.

``StepCall`` holds the decisions; the sync and async drivers in ``executor.py`` only differ in how
they call the function and wait, so no logic is kept twice.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Any

from engine.error import (
    DBOSMaxStepRetriesExceeded,
    DBOSStorageError,
    DBOSUnexpectedStepError,
    DBOSWorkflowCancelledError,
)
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
                # Recorded by an older version (or by code that records whatever it catches).
                # Raised as it is, it would pause the workflow again at every replay, forever.
                raise DBOSStorageError(
                    f"step {self.record.function_name!r} recorded a database outage as its "
                    f"error: {err}"
                ) from err
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
        if record.function_name != name:
            raise DBOSUnexpectedStepError(
                f"workflow {ctx.workflow_id!r} recorded step {function_id} as "
                f"{record.function_name!r}, but this execution called {name!r} there (the "
                "workflow is not deterministic, or its code changed since it started; fork it "
                "onto the new code with DBOS.fork_workflow)"
            )
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
        if is_outage(exc):
            # No attempt of the step's own: it stops here, unrecorded, and the workflow pauses
            # (see ``finish``) and runs it again once the database is back.
            self.error = exc
            return None
        self.errors.append(exc)
        opts = self.options
        if opts.retries_allowed and self.attempt < opts.max_attempts:
            if self.ctx.cancel_event.is_set():
                self.error = DBOSWorkflowCancelledError(
                    f"workflow {self.ctx.workflow_id!r} was cancelled while step {self.name!r} "
                    "was retrying"
                )
                return None
            delay = opts.interval_seconds * (opts.backoff_rate ** (self.attempt - 1))
            self.attempt += 1
            self.ctx.step_attempt = self.attempt
            return delay * (0.9 + 0.2 * random.random())
        if opts.retries_allowed:
            self.error = DBOSMaxStepRetriesExceeded(
                f"step {self.name!r} failed {opts.max_attempts} times; last error: "
                f"{type(exc).__name__}: {exc}",
                list(self.errors),
            )
        else:
            self.error = exc
        return None

    def finish(self) -> Any:
        """Checkpoint the outcome (one durable write) and return or raise it.

        The write waits out a database outage (until shutdown): the workflow pauses here.
        """
        self.ctx.in_step = False
        if self.error is not None and (self.runtime.stopping.is_set() or is_outage(self.error)):
            # A failure during shutdown is likely the shutdown itself, and a database outage is
            # no outcome of the step; recording either would make a replay raise a false error.
            # The step runs again (after a restart, or once the database is back) instead.
            raise self.error
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
