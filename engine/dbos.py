"""The ``DBOS`` facade: decorators, lifecycle and the context methods of the spec."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar, ParamSpec, TypeVar

from engine.config import DBOSConfig, ResolvedConfig, resolve_config
from engine.dbos_management import ManagementMethods
from engine.dbos_messaging import MessagingMethods
from engine.error import (
    DBOSConfigError,
    DBOSInvalidArgumentError,
    DBOSNotLaunchedError,
)
from engine.handles import WorkflowHandle, WorkflowHandleAsync
from engine.runtime import hooks, management, transactions
from engine.runtime.context import current_workflow
from engine.runtime.current import LAUNCHED, current_runtime
from engine.runtime.executor import Runtime
from engine.runtime.registry import (
    REGISTRY,
    RegisteredFunction,
    StepOptions,
    is_coroutine_function,
    owning_class_name,
    qualified_name,
    startable_function,
)
from engine.runtime.scheduler import clear_scheduled
from engine.runtime.starting import bound_instance, split_call
from engine.storage.migrations import drop_system_tables, migrate_system_database

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])

logger = logging.getLogger("keeptime.engine")
_instance_lock = threading.Lock()


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


class DBOS(MessagingMethods, ManagementMethods, metaclass=_DBOSMeta):
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
            LAUNCHED.install(runtime)
        # Recovered workflows call back into DBOS, so recovery runs once DBOS is launched, but
        # before the queue worker starts: its first claims are PENDING on this executor too, and
        # recovery must not start them a second time.
        runtime.recover_pending()
        hooks.after_launch(runtime)
        if runtime.config.run_admin_server:
            # Imported only when asked for: the HTTP stack is the heaviest import of the engine.
            from engine.admin import start_embedded

            start_embedded(runtime)
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
            LAUNCHED.clear(inst._runtime)
            inst._runtime.shutdown()
            inst._runtime = None
            gc.unfreeze()
        if destroy_registry:
            # Decorated functions stay registered (they are imported once); schedules go, so
            # a scheduled workflow of one test does not fire in the next.
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
        fn = startable_function(func)
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
        fn = startable_function(func)
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


# Kept under its old name: every facade method below calls it.
_runtime = current_runtime


def _register(fn: RegisteredFunction, wrapper: Callable[..., Any]) -> Any:  # returns the F given
    fn.wrapper = wrapper
    wrapper.__keeptime_function__ = fn  # type: ignore[attr-defined]
    REGISTRY.register(fn)
    return wrapper


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
