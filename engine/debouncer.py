"""Debouncing: run a workflow once, a quiet period after the last call for a key.

The window is durable (see engine/storage/debounce.py and docs/debouncing.md): the debounced
workflow is created, held, at the window's first call, so every handle of the window has its ID
from the start; each call replaces its inputs; the scheduler thread of whichever process reaches
the deadline first releases it. Calls from several processes, clients included, coalesce.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from engine.core.debounce import check_max_wait, check_period, seconds_to_ms
from engine.error import DBOSInvalidArgumentError
from engine.handles import WorkflowHandle, WorkflowHandleAsync
from engine.runtime.current import current_runtime
from engine.runtime.registry import RegisteredFunction
from engine.runtime.scheduler import get_scheduler
from engine.serialization import Codec
from engine.storage.debounce import DebounceCall, DebounceStore, Window
from engine.storage.store import SystemStore

if TYPE_CHECKING:
    from engine.client import DBOSClient
    from engine.queue import Queue
    from engine.runtime.executor import Runtime

P = ParamSpec("P")
R = TypeVar("R")

__all__ = ["Debouncer", "DebouncerClient", "debounce_with_store"]


def debounce_with_store(
    store: SystemStore,
    codec: Codec,
    *,
    workflow_name: str,
    key: str,
    period_sec: float,
    max_wait_sec: float | None = None,
    queue_name: str | None = None,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    namespace: str | None = None,
) -> Window:
    """One debounce call against the database; returns the window (its workflow ID, deadline).

    ``namespace`` groups keys (default: the workflow name), so two debouncers of one workflow
    share windows, and keys of different workflows never collide.
    """
    period = check_period(period_sec)
    max_wait = check_max_wait(max_wait_sec)
    if not isinstance(key, str) or not key:
        raise DBOSInvalidArgumentError(f"debounce_key must be a non-empty string, got {key!r}")
    if not isinstance(workflow_name, str) or not workflow_name:
        raise DBOSInvalidArgumentError(
            f"workflow_name must be a non-empty string, got {workflow_name!r}"
        )
    call = DebounceCall(
        namespace=namespace or workflow_name,
        key=key,
        period_ms=seconds_to_ms(period),
        max_wait_ms=None if max_wait is None else seconds_to_ms(max_wait),
        queue_name=queue_name,
        workflow_name=workflow_name,
        inputs=codec.encode_inputs(workflow_name, tuple(args), dict(kwargs or {})),
        new_workflow_id=str(uuid.uuid4()),
    )
    return DebounceStore(store).debounce(call)


def _debounce_here(runtime: Runtime, **call: Any) -> str:
    window = debounce_with_store(runtime.store, runtime.codec, **call)
    _arm_timer(runtime, window)
    return window.workflow_id


def _arm_timer(runtime: Runtime, window: Window) -> None:
    """Have the local scheduler fire ``window`` at its deadline (called after the commit)."""
    get_scheduler(runtime).debounce_timers.arm(
        window.namespace, window.key, window.workflow_id, window.fire_at_ms, runtime.now_ms()
    )


class Debouncer(Generic[P, R]):
    """Debounces one workflow. Build it with :meth:`create` or :meth:`create_async`."""

    def __init__(
        self,
        workflow_name: str,
        debounce_timeout_sec: float | None = None,
        queue: Queue | None = None,
        *,
        queue_name: str | None = None,
        namespace: str | None = None,
    ) -> None:
        self.workflow_name = workflow_name
        self.debounce_timeout_sec = check_max_wait(debounce_timeout_sec)
        self.queue_name = queue.name if queue is not None else queue_name
        self.namespace = namespace

    @classmethod
    def by_name(
        cls,
        workflow_name: str,
        *,
        debounce_timeout_sec: float | None = None,
        queue_name: str | None = None,
        namespace: str | None = None,
    ) -> Debouncer[..., Any]:
        """Keeptime: a debouncer for the workflow registered as ``workflow_name`` (a workflow
        registered by name, as the daemon's targets are, rather than a function in hand).

        ``namespace`` keeps this debouncer's keys apart from other debouncers of the same
        workflow (default: the workflow name, shared); ``queue_name`` enqueues each final run on
        that queue.
        """
        if not isinstance(workflow_name, str) or not workflow_name:
            raise DBOSInvalidArgumentError(
                f"workflow_name must be a non-empty string, got {workflow_name!r}"
            )
        return cls(workflow_name, debounce_timeout_sec, queue_name=queue_name, namespace=namespace)

    @classmethod
    def create(
        cls,
        workflow: Callable[P, R],
        *,
        debounce_timeout_sec: float | None = None,
        queue: Queue | None = None,
    ) -> Debouncer[P, R]:
        """A debouncer for ``workflow``; with ``queue``, each final run is enqueued there.

        ``debounce_timeout_sec`` caps a window: the workflow runs at the latest that long after the
        window's first call. Raises DBOSInvalidArgumentError unless ``workflow`` is a plain function
        decorated with ``@DBOS.workflow()`` (not a method).
        """
        return cls(_workflow_name(workflow), debounce_timeout_sec, queue)

    @classmethod
    def create_async(
        cls,
        workflow: Callable[P, Coroutine[Any, Any, R]],
        *,
        debounce_timeout_sec: float | None = None,
        queue: Queue | None = None,
    ) -> Debouncer[P, R]:
        """``create`` for a coroutine workflow."""
        return cls(_workflow_name(workflow), debounce_timeout_sec, queue)

    def debounce(
        self, debounce_key: str, debounce_period_sec: float, *args: P.args, **kwargs: P.kwargs
    ) -> WorkflowHandle[R]:
        """Run the workflow ``debounce_period_sec`` after the last call for this key, with the
        last call's arguments. Every handle of one window resolves to that one run."""
        runtime = current_runtime()
        workflow_id = self._call(runtime, debounce_key, debounce_period_sec, args, kwargs)
        return WorkflowHandle(runtime, workflow_id)

    async def debounce_async(
        self, debounce_key: str, debounce_period_sec: float, *args: P.args, **kwargs: P.kwargs
    ) -> WorkflowHandleAsync[R]:
        """Async ``debounce``; returns a ``WorkflowHandleAsync``."""
        runtime = current_runtime()
        workflow_id = await asyncio.to_thread(
            self._call, runtime, debounce_key, debounce_period_sec, args, kwargs
        )
        return WorkflowHandleAsync(runtime, workflow_id)

    def _call(
        self,
        runtime: Runtime,
        key: str,
        period_sec: float,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> str:
        return _debounce_here(
            runtime,
            workflow_name=self.workflow_name,
            key=key,
            period_sec=period_sec,
            max_wait_sec=self.debounce_timeout_sec,
            queue_name=self.queue_name,
            args=args,
            kwargs=kwargs,
            namespace=self.namespace,
        )


class DebouncerClient:
    """Debounce from a process that runs no workflows (the daemon's HTTP API, scripts).

    The window is stored in the system database; a running executor fires it (within about
    ``DEBOUNCE_POLL_SECONDS`` of its deadline) and runs the workflow.
    """

    def __init__(self, client: DBOSClient) -> None:
        self.client = client

    def debounce(
        self,
        workflow_name: str,
        debounce_key: str,
        debounce_period_sec: float,
        *,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        debounce_timeout_sec: float | None = None,
        queue_name: str | None = None,
        namespace: str | None = None,
    ) -> WorkflowHandle[Any]:
        """Debounce the workflow registered as ``workflow_name``: it runs ``debounce_period_sec``
        after the last call for ``debounce_key``, with that call's ``args`` and ``kwargs``, or
        ``debounce_timeout_sec`` after the window's first call at the latest.

        Keeptime: ``namespace`` keeps the keys of one debouncer apart from others of the same
        workflow (see ``Debouncer.by_name``). Returns a handle to the window's one workflow.
        Raises DBOSInvalidArgumentError for a bad key, name, period or timeout.
        """
        window = debounce_with_store(
            self.client.store,
            self.client.codec,
            workflow_name=workflow_name,
            key=debounce_key,
            period_sec=debounce_period_sec,
            max_wait_sec=debounce_timeout_sec,
            queue_name=queue_name,
            args=args,
            kwargs=kwargs,
            namespace=namespace,
        )
        return WorkflowHandle(self.client, window.workflow_id)

    async def debounce_async(
        self,
        workflow_name: str,
        debounce_key: str,
        debounce_period_sec: float,
        *,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        debounce_timeout_sec: float | None = None,
        queue_name: str | None = None,
        namespace: str | None = None,
    ) -> WorkflowHandleAsync[Any]:
        """Async ``debounce``; returns a ``WorkflowHandleAsync``."""
        handle = await asyncio.to_thread(
            lambda: self.debounce(
                workflow_name,
                debounce_key,
                debounce_period_sec,
                args=args,
                kwargs=kwargs,
                debounce_timeout_sec=debounce_timeout_sec,
                queue_name=queue_name,
                namespace=namespace,
            )
        )
        return WorkflowHandleAsync(self.client, handle.workflow_id)


def _workflow_name(workflow: Callable[..., Any]) -> str:
    fn = getattr(workflow, "__keeptime_function__", None)
    if not isinstance(fn, RegisteredFunction) or fn.kind != "workflow":
        raise DBOSInvalidArgumentError(
            f"Debouncer.create needs a function decorated with @DBOS.workflow(), got {workflow!r}"
        )
    if fn.class_name is not None:
        raise DBOSInvalidArgumentError(
            f"Debouncer.create cannot debounce the method {fn.name!r}; debounce a plain "
            "workflow function"
        )
    return fn.name
