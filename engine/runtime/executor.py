"""The runtime: one per launched DBOS instance. Runs workflows and steps.

Recovery lives in ``engine.runtime.recovery``, the heartbeat and takeover loop in
``engine.runtime.watcher``; the runtime owns both.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from engine.config import ResolvedConfig
from engine.core.deadlines import deadline_passed
from engine.error import (
    DBOSAwaitedWorkflowCancelledError,
    DBOSWorkflowCancelledError,
)
from engine.runtime import recovery, results
from engine.runtime.completions import CompletionGroup, PendingCompletion, rerun_after_outage
from engine.runtime.context import (
    WorkflowContext,
    current_workflow,
    outside_workflow,
    running_workflow,
)
from engine.runtime.dispatch import RunDispatcher
from engine.runtime.identity import claim_executor_id
from engine.runtime.message_waits import Messaging
from engine.runtime.recovery import compute_app_version
from engine.runtime.registry import REGISTRY, RegisteredFunction, StepOptions
from engine.runtime.starting import (
    PreparedStart,
    QueuePlacement,
    StartPlan,
    insert_many,
    plan_start,
)
from engine.runtime.steps import StepCall, wait_or_cancel, wait_or_cancel_async
from engine.runtime.watcher import WATCH_INTERVAL_SECONDS, Watcher
from engine.serialization import Codec
from engine.storage.database import Database, is_outage, parse_database_url, waiting_out_outages
from engine.storage.executors import ExecutorStore, Holder
from engine.storage.migrations import migrate_system_database
from engine.storage.store import StepRecord, SystemStore, WorkflowOutcome, WorkflowRow

if TYPE_CHECKING:
    from engine.runtime.queue_worker import QueueWorker
    from engine.runtime.scheduler import Scheduler

logger = logging.getLogger("keeptime.engine")

# Batched starts commit this many rows at a time, so the first runs begin before the last insert.
START_CHUNK = 200
FIRST_START_CHUNK = 50
EXCLUSIVE_ROWS = 1000


class Runtime:
    """The engine object of one launched DBOS: runs workflows and steps, and owns every service
    of the process, passed explicitly to whatever needs it: the clock (``clock``, ``now_ms``),
    the store (``db``, ``store``, ``executors``), the completion group (``completions``), the
    message hub (``messaging``), the watcher (``watcher``), and once started the queue worker
    (``queue_worker``) and the scheduler (``scheduler``, with its debounce timers). ``DBOS`` is a
    facade over the launched one (``engine.runtime.current``); ``DBOSClient`` is the offline
    subset (store, codec, clock, messaging) and runs nothing."""

    def __init__(self, config: ResolvedConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.app_name = config.name
        self.clock = clock
        # Known once launch() claimed it (a configured ID, or a free slot of this host).
        self.executor_id = config.executor_id or ""
        self.holder: Holder | None = None
        self.codec = Codec(config.serializer)
        self.db = Database(
            parse_database_url(config.system_database_url),
            schema=config.system_schema,
            pool_size=config.sys_db_pool_size,
            engine_kwargs=config.db_engine_kwargs,
            engine=config.system_database_engine,
        )
        self.store = SystemStore(self.db, self.now_ms)
        self.executors = ExecutorStore(self.store)
        self.completions = CompletionGroup(self.store)
        self.app_version = config.application_version or ""
        self._pool = ThreadPoolExecutor(
            config.max_executor_threads, thread_name_prefix="keeptime-wf"
        )
        # One pool thread stays free for the dispatcher's standby task.
        self._dispatcher = RunDispatcher(self._pool, config.max_executor_threads - 1)
        self._active: dict[str, WorkflowContext] = {}
        self._done: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._background_started: list[Callable[[], None]] = []
        # send/recv, events and streams; the LISTEN thread starts with the first wait.
        self.messaging = Messaging(self.store, self._stop, self.check_may_continue, self.spawn)
        # Heartbeats, takeovers, cancellations made elsewhere, deadlines; started by launch().
        self.watcher = Watcher(self)
        # Told the workflow ID whenever a run in this process ends (committed or abandoned).
        self.finish_listeners: list[Callable[[str], None]] = []
        # Told (workflow_id, name, status, error) when this process completes a workflow.
        self.outcome_listeners: list[Callable[[str, str, str, BaseException | None], None]] = []
        # Called at shutdown to wake background threads that wait on their own events.
        self.stop_listeners: list[Callable[[], None]] = []
        self.app_db: Any = None  # engine.runtime.transactions.AppDatabase, created on first use
        # The background services, set when they start (engine.runtime.hooks.after_launch).
        self.scheduler: Scheduler | None = None
        self.queue_worker: QueueWorker | None = None
        self.launched = False

    # -- lifecycle --------------------------------------------------------------------------------

    def launch(self) -> None:
        """Migrate the system database, claim an executor ID and start the watcher."""
        migrate_system_database(self.db)
        if not self.app_version:
            self.app_version = compute_app_version(REGISTRY.workflows())
        for key in self.config.ignored:
            logger.warning("DBOSConfig %r is accepted but has no effect in keeptime", key)
        self.holder = claim_executor_id(
            self.executors,
            self.config.executor_id,
            self.app_version,
            self.config.executor_timeout_sec,
            WATCH_INTERVAL_SECONDS,
            self._stop,
            self.now_ms,
        )
        self.executor_id = self.holder.executor_id
        self.launched = True
        self.watcher.start()

    def spawn(self, name: str, target: Callable[[], None]) -> threading.Thread:
        """Start a daemon thread that shutdown joins."""
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)
        return thread

    @property
    def stopping(self) -> threading.Event:
        """Set once shutdown began."""
        return self._stop

    def shutdown(self, wait_seconds: float = 5.0) -> None:
        """Stop the threads, wait up to ``wait_seconds`` for them and the pending completions, and
        close the databases."""
        self._stop.set()
        for listener in self.stop_listeners:
            listener()
        with self._lock:
            for ctx in self._active.values():
                ctx.cancel_event.set()  # wakes sleepers; they exit without completing the row
        for thread in self._threads:
            thread.join(timeout=wait_seconds)
        self._dispatcher.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        if not self.completions.drain(wait_seconds):
            logger.warning(
                "shutting down with workflow completions unwritten; recovery redoes them"
            )
        if self.app_db is not None:
            self.app_db.dispose()
        self.db.dispose()

    def now_ms(self) -> int:
        """The runtime's clock in epoch milliseconds."""
        return int(self.clock() * 1000)

    # -- starting workflows -----------------------------------------------------------------------

    def plan(
        self,
        fn: RegisteredFunction,
        instance: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        queue: QueuePlacement | None = None,
    ) -> StartPlan:
        """Insert the workflow's row (or find the one with its ID) for a start."""
        return plan_start(self, fn, instance, args, kwargs, queue)

    def run_sync(
        self, fn: RegisteredFunction, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Call a workflow directly: run it in this thread and return its result."""
        plan = self.plan(fn, instance, args, kwargs)
        if not plan.created:
            return self.wait_result(plan.workflow_id)
        ctx = self._begin(plan.workflow_id, fn, plan.deadline_ms, {}, plan.row.authenticated_user)
        return self._finish(ctx, *self._call_body(ctx, fn, instance, args, kwargs))

    async def run_async(
        self, fn: RegisteredFunction, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """``run_sync`` for coroutine workflows, on the caller's event loop."""
        plan = await asyncio.to_thread(self.plan, fn, instance, args, kwargs)
        if not plan.created:
            return await asyncio.to_thread(self.wait_result, plan.workflow_id)
        ctx = self._begin(plan.workflow_id, fn, plan.deadline_ms, {}, plan.row.authenticated_user)
        with running_workflow(ctx):
            try:
                value, error = await self._bind(fn, instance)(*args, **kwargs), None
            except Exception as exc:
                value, error = None, exc
        return await asyncio.to_thread(self._finish, ctx, value, error)

    def start_background(
        self, fn: RegisteredFunction, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> str:
        """Start a workflow on a pool thread; returns its ID."""
        plan = self.plan(fn, instance, args, kwargs)
        if plan.created:
            self.submit(
                plan.workflow_id,
                fn,
                instance,
                args,
                kwargs,
                plan.deadline_ms,
                {},
                plan.row.authenticated_user,
            )
        return plan.workflow_id

    def start_many(self, starts: list[PreparedStart]) -> list[str]:
        """Start many top-level workflows (the scheduler's ticks) with one commit per chunk;
        returns the IDs created now. Queued ones wait for the queue worker.

        The process's other writers wait while the first ``EXCLUSIVE_ROWS`` rows go in (the
        completions of the first runs would otherwise delay the last ones); in a bigger burst
        they take turns after that, so its completions do not pile up in memory.
        """
        started: list[str] = []
        with self.db.exclusive_writes():
            done = self._start_chunks(starts, 0, EXCLUSIVE_ROWS, started)
        self._start_chunks(starts, done, len(starts), started)
        return started

    def _start_chunks(
        self, starts: list[PreparedStart], first: int, until: int, started: list[str]
    ) -> int:
        """Insert and start ``starts[first:]`` by chunks until ``until`` is passed; returns
        where it stopped."""
        while first < min(until, len(starts)):
            # A small first chunk gets the first runs going while the rest are written.
            size = START_CHUNK if first else FIRST_START_CHUNK
            chunk, first = starts[first : first + size], first + size
            started.extend(self._insert_and_submit(chunk))
        return first

    def _insert_and_submit(self, chunk: list[PreparedStart]) -> list[str]:
        created = insert_many(self, chunk)
        for request, row in created:
            if row.status == "PENDING":
                self.submit(
                    row.workflow_uuid,
                    request.fn,
                    None,
                    request.args,
                    request.kwargs,
                    row.deadline_epoch_ms,
                    {},
                )
        return [row.workflow_uuid for _, row in created]

    def submit(
        self,
        workflow_id: str,
        fn: RegisteredFunction,
        instance: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        deadline_ms: int | None,
        recorded: dict[int, Any],
        user: str | None = None,
    ) -> None:
        """Run a workflow whose row is PENDING on a pool thread (once: if it already runs in
        this process, say after a recovery and a queue claim raced, nothing new starts)."""
        ctx = self._context(workflow_id, fn, deadline_ms, recorded, user)
        if not self._track(ctx, only_if_idle=True):
            logger.debug("workflow %s already runs in this process", workflow_id)
            return

        def run() -> None:
            with outside_workflow():
                try:
                    if fn.is_async:
                        value, error = asyncio.run(
                            self._async_body(ctx, fn, instance, args, kwargs)
                        )
                    else:
                        value, error = self._call_body(ctx, fn, instance, args, kwargs)
                    self._finish_in_background(ctx, value, error)
                except Exception as exc:  # the outcome is in the database already
                    logger.debug("background workflow %s ended: %r", workflow_id, exc)

        self._dispatcher.run(run)

    async def _async_body(
        self,
        ctx: WorkflowContext,
        fn: RegisteredFunction,
        instance: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> tuple[Any, BaseException | None]:
        with running_workflow(ctx):
            try:
                return await self._bind(fn, instance)(*args, **kwargs), None
            except Exception as exc:
                return None, exc

    def _call_body(
        self,
        ctx: WorkflowContext,
        fn: RegisteredFunction,
        instance: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> tuple[Any, BaseException | None]:
        with running_workflow(ctx):
            try:
                self.check_may_continue(ctx)
                return self._bind(fn, instance)(*args, **kwargs), None
            except Exception as exc:
                return None, exc

    @staticmethod
    def _bind(fn: RegisteredFunction, instance: Any) -> Callable[..., Any]:
        if instance is None:
            return fn.func
        return fn.func.__get__(instance, type(instance))  # type: ignore[no-any-return]

    def _begin(
        self,
        workflow_id: str,
        fn: RegisteredFunction,
        deadline_ms: int | None,
        recorded: dict[int, Any],
        user: str | None,
    ) -> WorkflowContext:
        ctx = self._context(workflow_id, fn, deadline_ms, recorded, user)
        self._track(ctx)
        return ctx

    def _context(
        self,
        workflow_id: str,
        fn: RegisteredFunction,
        deadline_ms: int | None,
        recorded: dict[int, Any],
        user: str | None,
    ) -> WorkflowContext:
        ctx = WorkflowContext(workflow_id, fn.name, deadline_ms, recorded, threading.Event(), user)
        ctx.runtime = self
        return ctx

    def _track(self, ctx: WorkflowContext, only_if_idle: bool = False) -> bool:
        """Mark the workflow as running here; with only_if_idle, refuse if it already is."""
        with self._lock:
            if only_if_idle and ctx.workflow_id in self._active:
                return False
            self._active[ctx.workflow_id] = ctx
        return True

    def _finish(self, ctx: WorkflowContext, value: Any, error: BaseException | None) -> Any:
        """Record the outcome and hand it to the direct caller.

        A body stopped by a database outage has no outcome yet: the workflow runs again from
        its last recorded step once the database is back, and the caller gets that run's result.
        """
        try:
            outcome, error = self._outcome_to_record(ctx, value, error)
        except Exception as exc:
            self._release(ctx)
            if not rerun_after_outage(self, ctx.workflow_id, exc):
                raise
            return self.wait_result(ctx.workflow_id)
        try:
            with waiting_out_outages(self._stop):
                if not self.completions.complete_and_wait(PendingCompletion(outcome)):
                    return self.outcome(ctx.workflow_id)
            self._report_outcome(ctx, outcome.status, error)
            if error is not None:
                raise error
            return value
        finally:
            self._release(ctx)

    def _finish_in_background(
        self, ctx: WorkflowContext, value: Any, error: BaseException | None
    ) -> None:
        """Record the outcome of a run nobody waits on in this thread: the pool thread goes back
        to work while the completion joins the next group commit."""
        try:
            outcome, error = self._outcome_to_record(ctx, value, error)
        except BaseException as exc:
            self._release(ctx)
            if isinstance(exc, Exception) and rerun_after_outage(self, ctx.workflow_id, exc):
                return
            raise

        def settled(applied: bool | None) -> None:
            try:
                if applied:
                    self._report_outcome(ctx, outcome.status, error)
            finally:
                self._release(ctx)

        with waiting_out_outages(self._stop):  # this thread may write others' completions too
            self.completions.complete(PendingCompletion(outcome, settled))

    def _outcome_to_record(
        self, ctx: WorkflowContext, value: Any, error: BaseException | None
    ) -> tuple[WorkflowOutcome, BaseException | None]:
        """The terminal row to write (and the error to raise); raises if nothing is written."""
        if error is not None and (self._stop.is_set() or is_outage(error)):
            # Failures while shutting down are usually the shutdown itself, and a database
            # outage is no outcome of the workflow: leave it PENDING (recovery, or a rerun once
            # the database is back, finishes it) rather than record a false error.
            raise error
        if isinstance(error, DBOSWorkflowCancelledError):
            raise DBOSAwaitedWorkflowCancelledError(f"workflow {ctx.workflow_id!r} was cancelled")
        output = err_text = None
        if error is None:
            try:
                output = self.codec.encode(value, f"the result of workflow {ctx.name!r}")
            except Exception as exc:
                error = exc
        if error is not None:
            err_text = self.codec.encode_error(error)
        status = "SUCCESS" if error is None else "ERROR"
        return WorkflowOutcome(ctx.workflow_id, status, output, err_text), error

    def _release(self, ctx: WorkflowContext) -> None:
        """The run is over in this process: wake local waiters and listeners."""
        with self._lock:
            self._active.pop(ctx.workflow_id, None)
            done = self._done.pop(ctx.workflow_id, None)
        if done is not None:
            done.set()
        for listener in self.finish_listeners:
            listener(ctx.workflow_id)

    def _report_outcome(
        self, ctx: WorkflowContext, status: str, error: BaseException | None
    ) -> None:
        for listener in self.outcome_listeners:
            try:
                listener(ctx.workflow_id, ctx.name, status, error)
            except Exception:
                logger.exception("workflow outcome listener failed")

    # -- inside workflows -------------------------------------------------------------------------

    def check_may_continue(self, ctx: WorkflowContext) -> None:
        """Raise if the workflow was cancelled or its deadline passed (checked before each step)."""
        if ctx.cancel_event.is_set():
            raise DBOSWorkflowCancelledError(f"workflow {ctx.workflow_id!r} was cancelled")
        if deadline_passed(self.now_ms(), ctx.deadline_ms):
            self.cancel(ctx.workflow_id)
            raise DBOSWorkflowCancelledError(f"workflow {ctx.workflow_id!r} timed out")

    def call_step(
        self, fn: RegisteredFunction, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Run a step in the current workflow: replayed if recorded, else run with its retries and
        recorded."""
        ctx = current_workflow()
        if ctx is None or ctx.in_step:
            return fn.func(*args, **kwargs)
        with waiting_out_outages(self._stop):  # an outage pauses the workflow here
            call = StepCall(self, ctx, fn.name, fn.step_options)
            replayed = call.begin()
            if replayed is not None:
                return replayed.value()
            while True:
                try:
                    call.succeeded(fn.func(*args, **kwargs))
                    break
                except Exception as exc:
                    delay = call.failed(exc)
                    if delay is None:
                        break
                    wait_or_cancel(ctx, delay)
            return call.finish()

    async def call_step_async(
        self, fn: RegisteredFunction, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """``call_step`` for coroutine steps."""
        ctx = current_workflow()
        if ctx is None or ctx.in_step:
            return await fn.func(*args, **kwargs)
        with waiting_out_outages(self._stop):  # asyncio.to_thread carries it to call.finish
            call = StepCall(self, ctx, fn.name, fn.step_options)
            replayed = call.begin()
            if replayed is not None:
                return replayed.value()
            while True:
                try:
                    call.succeeded(await fn.func(*args, **kwargs))
                    break
                except Exception as exc:
                    delay = call.failed(exc)
                    if delay is None:
                        break
                    await wait_or_cancel_async(ctx, delay)
            return await asyncio.to_thread(call.finish)

    def run_internal_step(self, name: str, action: Callable[[], Any]) -> Any:
        """Checkpoint an engine operation (sleep, send, get_event...) as a step of the workflow."""
        ctx = current_workflow()
        if ctx is None or ctx.in_step:
            return action()
        with waiting_out_outages(self._stop):
            call = StepCall(self, ctx, name, StepOptions())
            replayed = call.begin()
            if replayed is not None:
                return replayed.value()
            try:
                call.succeeded(action())
            except Exception as exc:
                call.failed(exc)
            return call.finish()

    # -- results ----------------------------------------------------------------------------------

    def wait_result(self, workflow_id: str, timeout: float | None = None) -> Any:
        """Wait for the workflow's result (through database outages) and return or raise it."""
        self.wait_done(workflow_id, timeout)
        return results.stored_outcome(self.store, self.codec, workflow_id, self._stop)

    def wait_done(self, workflow_id: str, timeout: float | None = None) -> str:
        """Block until the workflow is terminal; returns its status."""
        return results.wait_done(self.store, workflow_id, self._stop, self._local_done, timeout)

    def _local_done(self, workflow_id: str) -> threading.Event | None:
        with self._lock:
            if workflow_id not in self._active:
                return None  # finished (its outcome is committed) or not running here
            return self._done.setdefault(workflow_id, threading.Event())

    def outcome(self, workflow_id: str) -> Any:
        """The stored result of a finished workflow (returned or raised)."""
        return results.stored_outcome(self.store, self.codec, workflow_id)

    # -- management -------------------------------------------------------------------------------

    def cancel(self, workflow_id: str) -> list[str]:
        """Cancel the workflow and its children; returns the IDs cancelled."""
        cancelled = self.store.cancel_workflow_tree(workflow_id)
        with self._lock:
            for wf_id in cancelled:
                ctx = self._active.get(wf_id)
                if ctx is not None:
                    ctx.cancel_event.set()
        return cancelled

    def execute_existing(
        self, row: WorkflowRow, recorded: dict[int, StepRecord] | None = None
    ) -> bool:
        """Run a PENDING workflow from its row, replaying recorded steps (``recorded``, when the
        caller loaded them already). False if its function or instance is unknown here."""
        return recovery.execute_existing(self, row, recorded)

    def recover_pending(self, executor_ids: list[str] | None = None) -> list[str]:
        """Resume this executor's PENDING workflows of the current application version."""
        return recovery.recover_pending(self, executor_ids)

    def runs_here(self, workflow_id: str) -> bool:
        """Whether the workflow runs in this process now."""
        with self._lock:
            return workflow_id in self._active

    def running_contexts(self) -> dict[str, WorkflowContext]:
        """The workflows running in this process now, by ID (a snapshot)."""
        with self._lock:
            return dict(self._active)
