"""The ``DBOS`` facade: decorators, lifecycle and the context methods of the spec."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Generator
from datetime import datetime
from typing import Any, ClassVar, ParamSpec, TypeVar

from engine import schedules_api as sa
from engine.config import DBOSConfig, ResolvedConfig, resolve_config
from engine.error import (
    DBOSConfigError,
    DBOSInvalidArgumentError,
    DBOSNotInWorkflowError,
    DBOSNotLaunchedError,
    DBOSWorkflowCancelledError,
)
from engine.handles import WorkflowHandle, WorkflowHandleAsync
from engine.runtime import management, messaging, transactions
from engine.runtime.context import current_workflow
from engine.runtime.executor import Runtime
from engine.runtime.registry import (
    REGISTRY,
    RegisteredFunction,
    StepOptions,
    is_coroutine_function,
    owning_class_name,
    qualified_name,
)
from engine.runtime.schedule_admin import ScheduleDefinition
from engine.runtime.starting import bound_instance, split_call
from engine.status import StepInfo, WorkflowStatus
from engine.storage.migrations import drop_system_tables, migrate_system_database
from engine.storage.store import ListFilter

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])

logger = logging.getLogger("keeptime.engine")
_instance_lock = threading.Lock()


#: How often an async durable sleep looks at its workflow's cancel flag.
_ASYNC_SLEEP_CANCEL_CHECK_SECONDS = 0.1


class _DBOSMeta(type):
    """Class-level properties: ``DBOS.workflow_id`` works on the class, as the spec shows."""

    @property
    def workflow_id(cls) -> str | None:
        """The ID of the workflow running in this context; None outside workflows."""
        ctx = current_workflow()
        return ctx.workflow_id if ctx is not None else None

    @property
    def step_id(cls) -> int | None:
        """The ``function_id`` of the step running in this context; None outside steps."""
        ctx = current_workflow()
        return ctx.next_function_id - 1 if ctx is not None and ctx.in_step else None

    @property
    def step_status(cls) -> Any:
        """Inside a step, ``{"step_id": ..., "current_attempt": ...}`` (attempts count from 1); None
        elsewhere. Keeptime returns a plain dict."""
        ctx = current_workflow()
        if ctx is None or not ctx.in_step:
            return None
        return {"step_id": ctx.next_function_id - 1, "current_attempt": ctx.step_attempt}

    @property
    def sql_session(cls) -> Any:
        """The connection of the running ``@DBOS.transaction``.

        Keeptime: a SQLAlchemy ``Connection`` (DBOS gives a ``Session``; ``execute()`` works the
        same). Raises DBOSNotInWorkflowError outside a transaction.
        """
        return transactions.current_session()

    @property
    def logger(cls) -> logging.Logger:
        """The ``keeptime.engine`` logger; its level is the config's ``log_level``."""
        return logger

    @property
    def config(cls) -> ResolvedConfig:
        """The launched DBOS's configuration, validated and with defaults filled in.

        Keeptime: a frozen ``ResolvedConfig``, not the ``DBOSConfig`` dict. Raises
        DBOSNotLaunchedError before launch.
        """
        return _runtime().config

    @property
    def authenticated_user(cls) -> str | None:
        """The authenticated user of the running workflow; None outside workflows or if unset."""
        ctx = current_workflow()
        return ctx.authenticated_user if ctx is not None else None

    @property
    def application_version(cls) -> str:
        """This process's application version: configured, or a hash of the workflow sources
        computed at launch. Recovery and queues only run workflows of this version."""
        return _runtime().app_version

    @property
    def executor_id(cls) -> str:
        """This process's executor ID: configured, or a free ``<hostname>-<n>`` slot claimed at
        launch."""
        return _runtime().executor_id


class DBOS(metaclass=_DBOSMeta):
    """The engine's entry point. ``DBOS(config=...)`` configures; ``DBOS.launch()`` starts."""

    _instance: ClassVar[DBOS | None] = None

    def __new__(cls, *, config: DBOSConfig | dict[str, Any] | None = None, **_: Any) -> DBOS:
        with _instance_lock:
            if cls._instance is not None:
                if config is not None and cls._instance._config.name != (config or {}).get("name"):
                    raise DBOSConfigError(
                        "DBOS is already configured in this process; call DBOS.destroy() before "
                        "configuring it again"
                    )
                return cls._instance
            if config is None:
                raise DBOSConfigError("DBOS(config=...) needs a config with at least a 'name'")
            obj = super().__new__(cls)
            obj._config = resolve_config(config)
            obj._runtime = None
            cls._instance = obj
            return obj

    def __init__(self, *, config: DBOSConfig | dict[str, Any] | None = None, **_: Any) -> None:
        pass

    _config: ResolvedConfig
    _runtime: Runtime | None

    # -- lifecycle --------------------------------------------------------------------------------

    @classmethod
    def launch(cls) -> None:
        """Start the configured DBOS; a second call does nothing.

        Migrates the system database, claims the executor ID, recovers this executor's PENDING
        workflows, then starts the queue worker, the scheduler and (if configured) the admin server.
        Raises DBOSNotLaunchedError without ``DBOS(config=...)`` first, and DBOSExecutorIdInUseError
        if a live process holds the configured executor ID.
        """
        inst = cls._instance
        if inst is None:
            raise DBOSNotLaunchedError("configure DBOS first: DBOS(config={'name': ...})")
        with _instance_lock:
            if inst._runtime is not None:
                return
            runtime = Runtime(inst._config)
            runtime.launch()
            inst._runtime = runtime
        from engine.runtime import hooks

        # Recovered workflows call back into DBOS, so recovery runs once DBOS is launched, but
        # before the queue worker starts: its first claims are PENDING on this executor too, and
        # recovery must not start them a second time.
        runtime.recover_pending()
        hooks.after_launch(runtime)
        # Everything alive now (modules, registrations, schedules) lives as long as the process.
        # Frozen, the cyclic GC stops rescanning it: a full collection of a process with a
        # thousand schedules otherwise pauses every thread for ~30 ms every few seconds, which
        # is most of a burst of ticks' lateness. destroy() unfreezes.
        gc.freeze()

    @classmethod
    def destroy(
        cls, *, destroy_registry: bool = False, workflow_completion_timeout_sec: float = 0
    ) -> None:
        """Shut down the launched DBOS and drop its configuration, so ``DBOS(config=...)`` can run
        again (tests do this between cases).

        ``destroy_registry=True`` also clears the ``@DBOS.scheduled`` schedules; decorated functions
        stay registered, as they are imported once. Keeptime: ``workflow_completion_timeout_sec`` is
        accepted and not used.
        """
        with _instance_lock:
            inst = cls._instance
            cls._instance = None
        if inst is not None and inst._runtime is not None:
            inst._runtime.shutdown()
            inst._runtime = None
            gc.unfreeze()
        if destroy_registry:
            # Decorated functions stay registered (they are imported once); schedules go, so
            # a scheduled workflow of one test does not fire in the next.
            from engine.runtime.scheduler import clear_scheduled

            clear_scheduled()

    @classmethod
    def add_outcome_listener(
        cls, listener: Callable[[str, str, str, BaseException | None], None]
    ) -> None:
        """keeptime extension: call ``listener(workflow_id, name, status, error)`` whenever this
        process finishes a workflow (SUCCESS or ERROR). Listeners must be quick and not raise."""
        _runtime().outcome_listeners.append(listener)

    @classmethod
    def reset_system_database(cls) -> None:
        """Drop and recreate the system tables. For tests; refuses after launch."""
        inst = cls._instance
        if inst is None:
            raise DBOSNotLaunchedError("configure DBOS before reset_system_database()")
        if inst._runtime is not None:
            raise DBOSInvalidArgumentError("reset_system_database() must run before DBOS.launch()")
        runtime = Runtime(inst._config)
        try:
            drop_system_tables(runtime.db)
            migrate_system_database(runtime.db)
            transactions.reset_application_database(runtime)
        finally:
            runtime.shutdown()

    # -- decorators -------------------------------------------------------------------------------

    @classmethod
    def workflow(
        cls, *, name: str | None = None, max_recovery_attempts: int | None = 100
    ) -> Callable[[F], F]:
        """Decorator: make the function a durable workflow, registered under ``name`` (default: its
        ``__qualname__``).

        A workflow started more than ``max_recovery_attempts`` times without finishing ends
        MAX_RECOVERY_ATTEMPTS_EXCEEDED (None: no limit).
        """

        def decorate(func: F) -> F:
            fn = RegisteredFunction(
                name=name or qualified_name(func),
                kind="workflow",
                func=func,
                is_async=is_coroutine_function(func),
                max_recovery_attempts=max_recovery_attempts,
                class_name=owning_class_name(func),
            )
            registered: F = _register(fn, _workflow_wrapper(fn))
            return registered

        return decorate

    @classmethod
    def step(
        cls,
        *,
        name: str | None = None,
        retries_allowed: bool = False,
        interval_seconds: float = 1.0,
        max_attempts: int = 3,
        backoff_rate: float = 2.0,
    ) -> Callable[[F], F]:
        """Decorator: make the function a step, checkpointed when called from a workflow (outside
        one it runs as a plain function).

        With ``retries_allowed``, a failing step is tried up to ``max_attempts`` times, sleeping
        ``interval_seconds * backoff_rate ** (n - 1)`` (with jitter) between tries, then raises
        DBOSMaxStepRetriesExceeded carrying every error. Bad options raise DBOSInvalidArgumentError
        at decoration.
        """
        options = _check_step_options(retries_allowed, interval_seconds, max_attempts, backoff_rate)

        def decorate(func: F) -> F:
            fn = RegisteredFunction(
                name=name or qualified_name(func),
                kind="step",
                func=func,
                is_async=is_coroutine_function(func),
                step_options=options,
                class_name=owning_class_name(func),
            )
            registered: F = _register(fn, _step_wrapper(fn))
            return registered

        return decorate

    @classmethod
    def transaction(
        cls, *, isolation_level: str = "SERIALIZABLE", name: str | None = None
    ) -> Callable[[F], F]:
        """Decorator: run the function as a step inside one transaction on the application database,
        reached through ``DBOS.sql_session``.

        The checkpoint commits in the same transaction, so the function runs exactly once.
        Coroutines are refused (DBOSInvalidArgumentError): call a plain one with
        ``asyncio.to_thread``.
        """

        def decorate(func: F) -> F:
            if is_coroutine_function(func):
                raise DBOSInvalidArgumentError(
                    f"@DBOS.transaction cannot decorate the coroutine {qualified_name(func)!r} "
                    "(make it a plain def and call it with asyncio.to_thread)"
                )
            fn = RegisteredFunction(
                name=name or qualified_name(func),
                kind="transaction",
                func=func,
                is_async=False,
                isolation_level=isolation_level,
                class_name=owning_class_name(func),
            )

            @functools.wraps(func)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                return transactions.call_transaction(_runtime(), fn, args, kwargs)

            registered: F = _register(fn, wrapper)
            return registered

        return decorate

    @classmethod
    def dbos_class(cls, class_name: str | None = None) -> Callable[[type[Any]], type[Any]]:
        """Decorator: register a class whose methods are workflows, so recovery finds its
        ``DBOSConfiguredInstance`` instances by ``(class, config_name)``.

        Keeptime: ``class_name`` is accepted and not used; the class's ``__qualname__`` names it.
        """

        def decorate(klass: type[Any]) -> type[Any]:
            REGISTRY.register_class(klass)
            return klass

        return decorate

    @classmethod
    def scheduled(cls, cron: str) -> Callable[[F], F]:
        """Decorator, placed above ``@DBOS.workflow()``: run the workflow on the crontab ``cron``,
        with the arguments ``(scheduled_time, actual_time)`` (datetimes).

        A bad crontab raises DBOSInvalidCrontabError at decoration; see docs/scheduling.md for when
        ticks fire.
        """
        from engine.runtime import hooks

        return hooks.scheduled_decorator(cron)

    # -- starting and retrieving ------------------------------------------------------------------

    @classmethod
    def start_workflow(
        cls, func: Callable[P, R], *args: P.args, **kwargs: P.kwargs
    ) -> WorkflowHandle[R]:
        """Start ``func(*args, **kwargs)`` in the background and return its handle at once.

        ``func`` is a workflow, or a step (run as a one-step workflow). ``SetWorkflowID`` and
        ``SetWorkflowTimeout`` apply. Raises DBOSInvalidArgumentError if ``func`` is neither.
        """
        runtime = _runtime()
        fn = _workflow_of(func)
        instance, rest = split_call(fn, func, args)
        wf_id = runtime.start_background(fn, instance, rest, kwargs)
        return WorkflowHandle(runtime, wf_id)

    @classmethod
    async def start_workflow_async(
        cls, func: Callable[P, Coroutine[Any, Any, R]], *args: P.args, **kwargs: P.kwargs
    ) -> WorkflowHandleAsync[R]:
        """Async ``start_workflow``: a coroutine workflow runs as a task on the caller's event loop,
        as the spec says; a plain one runs on a worker thread."""
        runtime = _runtime()
        fn = _workflow_of(func)
        instance, rest = split_call(fn, func, args)
        if not fn.is_async:
            wf_id = await asyncio.to_thread(runtime.start_background, fn, instance, rest, kwargs)
            return WorkflowHandleAsync(runtime, wf_id)
        plan = await asyncio.to_thread(runtime.plan, fn, instance, rest, kwargs)
        if plan.created:
            # Same event loop as the caller, as the spec says.
            ctx = runtime._begin(
                plan.workflow_id, fn, plan.deadline_ms, {}, plan.row.authenticated_user
            )

            async def run() -> None:
                value, error = await runtime._async_body(ctx, fn, instance, rest, kwargs)
                try:
                    await asyncio.to_thread(runtime._finish, ctx, value, error)
                except Exception as exc:
                    logger.debug("workflow %s ended: %r", plan.workflow_id, exc)

            task = asyncio.get_running_loop().create_task(run())
            _BACKGROUND_TASKS.add(task)
            task.add_done_callback(_BACKGROUND_TASKS.discard)
        return WorkflowHandleAsync(runtime, plan.workflow_id)

    @classmethod
    def retrieve_workflow(
        cls, workflow_id: str, existing_workflow: bool = True
    ) -> WorkflowHandle[Any]:
        """A handle to the workflow ``workflow_id``.

        Raises DBOSNonExistentWorkflowError if it does not exist, unless
        ``existing_workflow=False``.
        """
        runtime = _runtime()
        if existing_workflow:
            management.require_row(runtime, workflow_id)
        return WorkflowHandle(runtime, workflow_id)

    @classmethod
    async def retrieve_workflow_async(
        cls, workflow_id: str, existing_workflow: bool = True
    ) -> WorkflowHandleAsync[Any]:
        """Async ``retrieve_workflow``; returns a ``WorkflowHandleAsync``."""
        runtime = _runtime()
        if existing_workflow:
            await asyncio.to_thread(management.require_row, runtime, workflow_id)
        return WorkflowHandleAsync(runtime, workflow_id)

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

    # -- management -------------------------------------------------------------------------------

    @classmethod
    def list_workflows(
        cls,
        *,
        workflow_ids: list[str] | None = None,
        status: str | list[str] | None = None,
        start_time: str | None = None,
        end_time: str | None = None,
        name: str | None = None,
        app_version: str | None = None,
        user: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
        sort_desc: bool = False,
        workflow_id_prefix: str | None = None,
        load_input: bool = True,
        load_output: bool = True,
    ) -> list[WorkflowStatus]:
        """The ``WorkflowStatus`` of every workflow matching all the given filters, oldest first
        (``sort_desc``: newest first).

        ``status`` is one status name or a list; ``start_time`` and ``end_time`` are RFC 3339
        timestamps with an offset, compared with the creation time. ``load_input`` and
        ``load_output`` set to False skip decoding inputs, and outputs and errors. Bad filters raise
        DBOSInvalidArgumentError.
        """
        flt = ListFilter(
            workflow_ids=workflow_ids,
            workflow_id_prefix=workflow_id_prefix,
            statuses=management.parse_statuses(status),
            start_ms=management.parse_time_ms(start_time, "start_time"),
            end_ms=management.parse_time_ms(end_time, "end_time"),
            name=name,
            app_version=app_version,
            user=user,
            limit=limit,
            offset=offset,
            sort_desc=sort_desc,
        )
        return management.list_workflows(_runtime(), flt, load_input, load_output)

    @classmethod
    def list_queued_workflows(
        cls,
        *,
        queue_name: str | None = None,
        status: str | list[str] | None = None,
        start_time: str | None = None,
        end_time: str | None = None,
        name: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
        sort_desc: bool = False,
        load_input: bool = True,
    ) -> list[WorkflowStatus]:
        """Like ``list_workflows``, for the workflows currently on a queue (by default ENQUEUED or
        PENDING), optionally on ``queue_name`` only."""
        flt = ListFilter(
            statuses=management.parse_statuses(status, ("ENQUEUED", "PENDING")),
            start_ms=management.parse_time_ms(start_time, "start_time"),
            end_ms=management.parse_time_ms(end_time, "end_time"),
            name=name,
            queue_name=queue_name,
            queued_only=True,
            limit=limit,
            offset=offset,
            sort_desc=sort_desc,
        )
        return management.list_workflows(_runtime(), flt, load_input)

    @classmethod
    def list_workflow_steps(cls, workflow_id: str) -> list[StepInfo]:
        """The recorded steps of the workflow, in ``function_id`` order; empty for an unknown ID."""
        runtime = _runtime()
        return [
            management.to_step_info(s, runtime.codec) for s in runtime.store.list_steps(workflow_id)
        ]

    @classmethod
    def get_workflow_status(cls, workflow_id: str) -> WorkflowStatus | None:
        """The workflow's ``WorkflowStatus``, or None if no workflow has this ID."""
        runtime = _runtime()
        row = runtime.store.get_workflow(workflow_id)
        return management.to_status(row, runtime.codec) if row is not None else None

    @classmethod
    def cancel_workflow(cls, workflow_id: str) -> None:
        """Cancel the workflow and all its children: CANCELLED and off its queue.

        A running one stops at its next step (in another process, within about a second); a finished
        one is left as it is. Raises DBOSNonExistentWorkflowError for an unknown ID.
        """
        runtime = _runtime()
        management.require_row(runtime, workflow_id)
        runtime.cancel(workflow_id)

    @classmethod
    def resume_workflow(cls, workflow_id: str) -> WorkflowHandle[Any]:
        """Run a CANCELLED, MAX_RECOVERY_ATTEMPTS_EXCEEDED or ENQUEUED workflow now, in this
        process, from its last recorded step (an ENQUEUED one skips its queue); returns its
        handle.

        A PENDING or finished workflow is left as it is. Raises DBOSNonExistentWorkflowError for an
        unknown ID.
        """
        runtime = _runtime()
        return WorkflowHandle(runtime, management.resume(runtime, workflow_id))

    @classmethod
    def fork_workflow(
        cls, workflow_id: str, start_step: int, *, application_version: str | None = None
    ) -> WorkflowHandle[Any]:
        """Start a new workflow that copies the steps of ``workflow_id`` before ``start_step`` (a
        ``function_id`` from ``list_workflow_steps``) and runs the rest; returns its handle.

        The new ID comes from ``SetWorkflowID``, else a UUID. With ``application_version`` the fork
        is tagged with that version and waits for an executor of it, unless it is this process's.
        """
        runtime = _runtime()
        return WorkflowHandle(
            runtime, management.fork(runtime, workflow_id, start_step, application_version)
        )

    @classmethod
    def list_unrecoverable_workflows(cls) -> list[management.UnrecoverableWorkflow]:
        """Keeptime extension: the PENDING workflows of this executor and application version
        that this process cannot run, each with the reason (``.status``, ``.reason``).

        Recovery at launch (and a takeover) skips such a workflow with a warning and leaves it
        PENDING: its function is not registered in this process (code or config that defined
        it was removed), or its ``DBOSConfiguredInstance`` does not exist. Nothing resumes it
        until a process that has the code does; cancel it (``cancel_workflow``) to resolve it
        for good. Only this executor's work of this version: other executors recover their own,
        and work of other versions waits for an executor of its version.
        """
        return management.unrecoverable_workflows(_runtime())

    @classmethod
    def count_other_version_workflows(cls) -> dict[str, int]:
        """Keeptime extension: ``{application_version: count}`` of PENDING and ENQUEUED
        workflows tagged with another application version than this process's.

        This process neither recovers nor dequeues them (see "Workflow Versioning and
        Recovery"); an executor of their version does, or an operator cancels or forks them
        (``fork_workflow(..., application_version=DBOS.application_version)``). Ticks and
        debounce windows still held by the scheduler are not counted: releasing them gives them
        the releasing process's version. Reads every unfinished workflow: call it rarely (once
        after launch).
        """
        return management.other_version_counts(_runtime())

    @classmethod
    async def cancel_workflow_async(cls, workflow_id: str) -> None:
        """Async ``cancel_workflow``."""
        await asyncio.to_thread(cls.cancel_workflow, workflow_id)

    @classmethod
    async def resume_workflow_async(cls, workflow_id: str) -> WorkflowHandleAsync[Any]:
        """Async ``resume_workflow``; returns a ``WorkflowHandleAsync``."""
        runtime = _runtime()
        wf_id = await asyncio.to_thread(management.resume, runtime, workflow_id)
        return WorkflowHandleAsync(runtime, wf_id)

    @classmethod
    async def fork_workflow_async(
        cls, workflow_id: str, start_step: int, *, application_version: str | None = None
    ) -> WorkflowHandleAsync[Any]:
        """Async ``fork_workflow``; returns a ``WorkflowHandleAsync``."""
        runtime = _runtime()
        wf_id = await asyncio.to_thread(
            management.fork, runtime, workflow_id, start_step, application_version
        )
        return WorkflowHandleAsync(runtime, wf_id)

    # -- the schedule registry (engine/schedules_api.py; docs/scheduling.md) -----------------------

    @classmethod
    def create_schedule(
        cls,
        *,
        schedule_name: str,
        workflow_fn: Callable[..., Any],
        schedule: str,
        context: Any = None,
        automatic_backfill: bool = False,
        cron_timezone: str | None = None,
        queue_name: str | None = None,
        **options: Any,
    ) -> None:
        """Create a durable cron schedule running ``workflow_fn(scheduled_time, context)`` at
        each tick; every launched process installs it, also after a restart. Keeptime options:
        ``catchup``, ``catchup_window_seconds``, ``max_catchup``, ``overlap``,
        ``jitter_seconds``, ``timeout_seconds``. Raises
        DBOSInvalidArgumentError if the name exists, the function is no workflow or an option is
        invalid (DBOSInvalidCrontabError for a bad cron)."""
        options.update(context=context, automatic_backfill=automatic_backfill)
        options.update(cron_timezone=cron_timezone, queue_name=queue_name)
        sa.create(_schedule(schedule_name, workflow_fn, schedule, options))

    @classmethod
    async def create_schedule_async(cls, **kwargs: Any) -> None:
        """Async ``create_schedule`` (same keyword arguments)."""
        await asyncio.to_thread(lambda: cls.create_schedule(**kwargs))

    @classmethod
    def list_schedules(
        cls,
        *,
        status: str | list[str] | None = None,
        workflow_name: str | list[str] | None = None,
        schedule_name_prefix: str | list[str] | None = None,
    ) -> list[sa.WorkflowSchedule]:
        """Every stored schedule (``@DBOS.scheduled`` ones included) as ``WorkflowSchedule``
        dicts, filtered by status (``ACTIVE``/``PAUSED``), workflow name or name prefix."""
        return sa.list_schedules(sa.running_admin(), status, workflow_name, schedule_name_prefix)

    @classmethod
    async def list_schedules_async(cls, **kwargs: Any) -> list[sa.WorkflowSchedule]:
        """Async ``list_schedules``."""
        return await asyncio.to_thread(lambda: cls.list_schedules(**kwargs))

    @classmethod
    def get_schedule(cls, name: str) -> sa.WorkflowSchedule | None:
        """The schedule named ``name`` as a ``WorkflowSchedule``, or None if there is none."""
        return sa.get_schedule(sa.running_admin(), name)

    @classmethod
    async def get_schedule_async(cls, name: str) -> sa.WorkflowSchedule | None:
        """Async ``get_schedule``."""
        return await asyncio.to_thread(cls.get_schedule, name)

    @classmethod
    def delete_schedule(cls, name: str) -> None:
        """Delete a schedule: it stops firing. No-op if it does not exist; raises
        DBOSInvalidArgumentError for a ``@DBOS.scheduled`` one."""
        sa.delete(name)

    @classmethod
    async def delete_schedule_async(cls, name: str) -> None:
        """Async ``delete_schedule``."""
        await asyncio.to_thread(cls.delete_schedule, name)

    @classmethod
    def pause_schedule(cls, name: str) -> None:
        """Durably pause a schedule: it does not fire until resumed. Raises
        DBOSInvalidArgumentError for an unknown name."""
        sa.pause(name)

    @classmethod
    async def pause_schedule_async(cls, name: str) -> None:
        """Async ``pause_schedule``."""
        await asyncio.to_thread(cls.pause_schedule, name)

    @classmethod
    def resume_schedule(cls, name: str) -> None:
        """Resume a paused schedule; ticks that came due while paused do not run."""
        sa.resume(name)

    @classmethod
    async def resume_schedule_async(cls, name: str) -> None:
        """Async ``resume_schedule``."""
        await asyncio.to_thread(cls.resume_schedule, name)

    @classmethod
    def apply_schedules(cls, schedules: list[sa.ScheduleInput], **keeptime: Any) -> None:
        """Create or replace these schedules in one write (others are kept). Every entry is
        validated first: if one is invalid, nothing changes. Keeptime's keyword options are
        described in docs/scheduling.md."""
        sa.apply_entries(schedules, _schedule_from_entry, **keeptime)

    @classmethod
    async def apply_schedules_async(
        cls, schedules: list[sa.ScheduleInput], **keeptime: Any
    ) -> None:
        """Async ``apply_schedules``."""
        await asyncio.to_thread(lambda: cls.apply_schedules(schedules, **keeptime))

    @classmethod
    def backfill_schedule(
        cls, schedule_name: str, start: datetime, end: datetime
    ) -> list[WorkflowHandle[None]]:
        """Enqueue each tick strictly between ``start`` and ``end`` under its tick ID (ticks that
        already ran run nothing new); returns their handles."""
        ids = sa.backfill(schedule_name, start, end)
        return [WorkflowHandle(_runtime(), i) for i in ids]

    @classmethod
    async def backfill_schedule_async(
        cls, schedule_name: str, start: datetime, end: datetime
    ) -> list[WorkflowHandleAsync[None]]:
        """Async ``backfill_schedule``."""
        ids = await asyncio.to_thread(sa.backfill, schedule_name, start, end)
        return [WorkflowHandleAsync(_runtime(), i) for i in ids]

    @classmethod
    def trigger_schedule(cls, schedule_name: str) -> WorkflowHandle[None]:
        """Run the schedule's workflow once now, outside its ticks; returns its handle."""
        return WorkflowHandle(_runtime(), sa.trigger(schedule_name))

    @classmethod
    async def trigger_schedule_async(cls, schedule_name: str) -> WorkflowHandleAsync[None]:
        """Async ``trigger_schedule``."""
        return WorkflowHandleAsync(_runtime(), await asyncio.to_thread(sa.trigger, schedule_name))


class DBOSConfiguredInstance:
    """Base for classes whose workflow methods must be recoverable: names the instance."""

    def __init__(self, config_name: str) -> None:
        if not isinstance(config_name, str) or not config_name:
            raise DBOSInvalidArgumentError(
                f"DBOSConfiguredInstance needs a non-empty config_name, got {config_name!r}"
            )
        self.config_name = config_name
        for klass in type(self).__mro__:
            if klass is not DBOSConfiguredInstance and klass is not object:
                REGISTRY.register_instance(klass.__qualname__, config_name, self)


_BACKGROUND_TASKS: set[asyncio.Task[None]] = set()


def _runtime() -> Runtime:
    """The runtime of the calling workflow, or else the launched one."""
    ctx = current_workflow()
    if ctx is not None and isinstance(ctx.runtime, Runtime):
        if ctx.runtime.stopping.is_set():
            raise DBOSWorkflowCancelledError(
                f"workflow {ctx.workflow_id!r} stopped: its DBOS instance was destroyed"
            )
        return ctx.runtime
    inst = DBOS._instance
    if inst is None or inst._runtime is None:
        raise DBOSNotLaunchedError(
            "DBOS is not launched (configure it with DBOS(config=...) and call DBOS.launch() first)"
        )
    return inst._runtime


def _require_workflow(what: str) -> Any:
    ctx = current_workflow()
    if ctx is None:
        raise DBOSNotInWorkflowError(f"{what} can only be called inside a workflow")
    return ctx


def _register(fn: RegisteredFunction, wrapper: Callable[..., Any]) -> Any:  # returns the F given
    fn.wrapper = wrapper
    wrapper.__keeptime_function__ = fn  # type: ignore[attr-defined]
    REGISTRY.register(fn)
    return wrapper


def _workflow_of(func: Callable[..., Any]) -> RegisteredFunction:
    fn = getattr(func, "__keeptime_function__", None)
    if fn is None:
        fn = getattr(getattr(func, "__func__", None), "__keeptime_function__", None)
    if not isinstance(fn, RegisteredFunction) or fn.kind == "transaction":
        raise DBOSInvalidArgumentError(
            f"{qualified_name(func)!r} is not a workflow or step (decorate it with "
            "@DBOS.workflow() or @DBOS.step())"
        )
    if fn.kind == "step":
        from engine.runtime.hooks import step_as_workflow

        return step_as_workflow(fn)
    return fn


def _workflow_wrapper(fn: RegisteredFunction) -> Callable[..., Any]:
    if fn.is_async:

        @functools.wraps(fn.func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            instance, rest = bound_instance(fn, args)
            return await _runtime().run_async(fn, instance, rest, kwargs)

        return async_wrapper

    @functools.wraps(fn.func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        instance, rest = bound_instance(fn, args)
        return _runtime().run_sync(fn, instance, rest, kwargs)

    return wrapper


def _step_wrapper(fn: RegisteredFunction) -> Callable[..., Any]:
    if fn.is_async:

        @functools.wraps(fn.func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            if current_workflow() is None:
                return await fn.func(*args, **kwargs)
            return await _runtime().call_step_async(fn, args, kwargs)

        return async_wrapper

    @functools.wraps(fn.func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if current_workflow() is None:
            return fn.func(*args, **kwargs)
        return _runtime().call_step(fn, args, kwargs)

    return wrapper


def _check_step_options(
    retries_allowed: bool, interval_seconds: float, max_attempts: int, backoff_rate: float
) -> StepOptions:
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise DBOSInvalidArgumentError(
            f"max_attempts must be an integer >= 1, got {max_attempts!r}"
        )
    if not isinstance(interval_seconds, int | float) or interval_seconds < 0:
        raise DBOSInvalidArgumentError(f"interval_seconds must be >= 0, got {interval_seconds!r}")
    if not isinstance(backoff_rate, int | float) or backoff_rate < 1:
        raise DBOSInvalidArgumentError(f"backoff_rate must be >= 1, got {backoff_rate!r}")
    return StepOptions(
        bool(retries_allowed), float(interval_seconds), max_attempts, float(backoff_rate)
    )


def _check_seconds(seconds: float, what: str) -> None:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        raise DBOSInvalidArgumentError(
            f"{what} needs a non-negative number of seconds, got {seconds!r}"
        )


def _scheduled_workflow_name(func: Callable[..., Any]) -> str:
    fn = getattr(func, "__keeptime_function__", None)
    if not isinstance(fn, RegisteredFunction) or fn.kind != "workflow":
        raise DBOSInvalidArgumentError(
            f"{qualified_name(func)!r} cannot be scheduled: pass a function decorated with "
            "@DBOS.workflow()"
        )
    return fn.name


def _schedule(
    name: str, func: Callable[..., Any], cron: str, options: dict[str, Any]
) -> ScheduleDefinition:
    return sa.build_from_fn(
        _scheduled_workflow_name, schedule_name=name, workflow_fn=func, schedule=cron, **options
    )


def _schedule_from_entry(
    *, schedule_name: str, workflow_fn: Callable[..., Any], schedule: str, **options: Any
) -> ScheduleDefinition:
    return _schedule(schedule_name, workflow_fn, schedule, options)
