"""Deciding how a workflow start goes: its ID, timeout, row, and whether this caller runs it."""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.core.deadlines import start_timeout
from engine.error import DBOSWorkflowConflictIDError
from engine.runtime.context import (
    WorkflowContext,
    consume_workflow_id,
    current_workflow,
    start_options,
)
from engine.runtime.registry import RegisteredFunction
from engine.storage.queues import ENQUEUE_ORDER
from engine.storage.store import StepRecord, WorkflowRow

if TYPE_CHECKING:
    from engine.runtime.executor import Runtime


@dataclass
class StartPlan:
    """The outcome of inserting a workflow: run it here, or attach to an existing one."""

    workflow_id: str
    created: bool
    row: WorkflowRow
    deadline_ms: int | None


@dataclass(frozen=True)
class QueuePlacement:
    queue_name: str
    partition_key: str | None = None
    deduplication_id: str | None = None
    priority: int | None = None


def bound_instance(fn: RegisteredFunction, args: tuple[Any, ...]) -> tuple[Any, tuple[Any, ...]]:
    """Split ``self`` off a method call, so only real arguments are serialized."""
    if fn.class_name is not None and args:
        owner = type(args[0])
        if any(c.__qualname__ == fn.class_name for c in owner.__mro__):
            return args[0], args[1:]
    return None, args


def split_call(
    fn: RegisteredFunction, func: Callable[..., Any], args: tuple[Any, ...]
) -> tuple[Any, tuple[Any, ...]]:
    """The instance and the real arguments of ``start_workflow(func, *args)`` (or an enqueue).

    ``func`` may be a bound method, ``obj.method``: its ``self`` is ``func.__self__``, not
    ``args[0]``, and dropping it would call the method one argument short. A classmethod's class
    stays among the arguments, as on a direct call ``Class.method(x)``.
    """
    if fn.class_name is not None and inspect.ismethod(func):
        owner = func.__self__
        if isinstance(owner, type):
            return None, (owner, *args)
        return owner, args
    return bound_instance(fn, args)


def plan_start(
    runtime: Runtime,
    fn: RegisteredFunction,
    instance: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    queue: QueuePlacement | None = None,
) -> StartPlan:
    parent = current_workflow()
    if parent is not None and parent.in_step:
        parent = None  # a workflow started from a step is not that workflow's child
    explicit_id = consume_workflow_id()
    function_id = parent.take_function_id() if parent is not None else None
    if parent is not None and function_id is not None:
        recorded = parent.recorded.get(function_id)
        if recorded is not None and recorded.child_workflow_id is not None:
            row = runtime.store.get_workflow(recorded.child_workflow_id)
            if row is not None:
                return StartPlan(row.workflow_uuid, False, row, row.deadline_epoch_ms)
        runtime.check_may_continue(parent)
    if explicit_id is not None:
        workflow_id = explicit_id
    elif parent is not None:
        workflow_id = f"{parent.workflow_id}-{function_id}"
    else:
        workflow_id = str(uuid.uuid4())

    opts = start_options()
    now = runtime.now_ms()
    timeout = start_timeout(
        now,
        timeout_set=opts.timeout_set,
        timeout_seconds=opts.timeout_seconds,
        parent_deadline_ms=parent.deadline_ms if parent is not None else None,
        queued=queue is not None,
    )

    row = new_workflow_row(
        runtime,
        fn,
        instance,
        workflow_id,
        runtime.codec.encode_inputs(fn.name, args, kwargs),
        now,
        queue=queue,
        timeout_ms=timeout.timeout_ms,
        deadline_ms=timeout.deadline_ms,
        parent=parent,
        app_version=opts.app_version,
    )
    parent_step = (
        StepRecord(function_id, fn.name, None, None, workflow_id)
        if parent is not None and function_id is not None
        else None
    )
    created, stored = runtime.store.insert_workflow(
        row, parent_step, parent.workflow_id if parent is not None else None
    )
    if not created:
        _check_same_workflow(stored, row)
    return StartPlan(workflow_id, created, stored, timeout.deadline_ms)


def new_workflow_row(
    runtime: Runtime,
    fn: RegisteredFunction,
    instance: Any,
    workflow_id: str,
    inputs: str,
    now: int,
    *,
    queue: QueuePlacement | None,
    timeout_ms: int | None,
    deadline_ms: int | None,
    parent: WorkflowContext | None = None,
    app_version: str | None = None,
) -> WorkflowRow:
    """The row of a workflow about to start here (PENDING) or be enqueued (ENQUEUED)."""
    config_name = getattr(instance, "config_name", None) if instance is not None else None
    return WorkflowRow(
        workflow_uuid=workflow_id,
        status="ENQUEUED" if queue is not None else "PENDING",
        name=fn.name,
        class_name=fn.class_name if instance is not None else None,
        config_name=config_name,
        authenticated_user=parent.authenticated_user if parent is not None else None,
        inputs=inputs,
        executor_id=runtime.executor_id if queue is None else None,
        application_version=app_version or runtime.app_version,
        application_id=runtime.app_name,
        created_at=now,
        updated_at=now,
        recovery_attempts=0 if queue is not None else 1,
        queue_name=queue.queue_name if queue else None,
        queue_partition_key=queue.partition_key if queue else None,
        deduplication_id=queue.deduplication_id if queue else None,
        priority=queue.priority if queue else None,
        timeout_ms=timeout_ms,
        deadline_epoch_ms=deadline_ms,
        started_at_epoch_ms=now if queue is None else None,
        parent_workflow_id=parent.workflow_id if parent is not None else None,
        queue_order=ENQUEUE_ORDER.next(runtime.clock) if queue is not None else None,
    )


@dataclass(frozen=True, slots=True)
class StartRequest:
    """One top-level workflow start in a batch (the scheduler's ticks), with explicit options."""

    fn: RegisteredFunction
    workflow_id: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    timeout_seconds: float | None = None
    queue: QueuePlacement | None = None


@dataclass(slots=True)
class PreparedStart:
    """A start whose inputs are encoded ahead of time, so the scheduler can do most of the work
    of a thousand ticks before the second they are due; the row is built at insert."""

    request: StartRequest
    inputs: str


def prepare_start(runtime: Runtime, request: StartRequest) -> PreparedStart:
    inputs = runtime.codec.encode_inputs(request.fn.name, request.args, request.kwargs)
    return PreparedStart(request, inputs)


def insert_many(
    runtime: Runtime, starts: list[PreparedStart]
) -> list[tuple[StartRequest, WorkflowRow]]:
    """Insert the rows of many starts in one commit; returns the starts created now, with their
    rows (an ID that exists already, say a tick another process started, is skipped)."""
    now = runtime.now_ms()
    built = []
    for start in starts:
        request = start.request
        timeout = start_timeout(
            now,
            timeout_set=True,
            timeout_seconds=request.timeout_seconds,
            parent_deadline_ms=None,
            queued=request.queue is not None,
        )
        row = new_workflow_row(
            runtime,
            request.fn,
            None,
            request.workflow_id,
            start.inputs,
            now,
            queue=request.queue,
            timeout_ms=timeout.timeout_ms,
            deadline_ms=timeout.deadline_ms,
        )
        built.append((request, row))
    created = runtime.store.insert_workflows([row for _, row in built])
    return [(request, row) for request, row in built if row.workflow_uuid in created]


def _check_same_workflow(stored: WorkflowRow, wanted: WorkflowRow) -> None:
    if stored.name != wanted.name:
        raise DBOSWorkflowConflictIDError(
            f"workflow ID {wanted.workflow_uuid!r} is already used by a run of {stored.name!r}; "
            f"it cannot also run {wanted.name!r} (workflow IDs are idempotency keys; pick a new "
            "ID for a different workflow)"
        )
