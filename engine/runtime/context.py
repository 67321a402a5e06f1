"""Per-call context carried in contextvars: the running workflow, and options for the next start.

contextvars follow both threads (copied into ``asyncio.to_thread``) and tasks, so the same code
serves sync and async workflows.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from engine.error import DBOSInvalidArgumentError
from engine.storage.store import StepRecord


@dataclass
class WorkflowContext:
    """State of one workflow execution in this process."""

    workflow_id: str
    name: str
    deadline_ms: int | None
    recorded: dict[int, StepRecord]
    cancel_event: threading.Event
    authenticated_user: str | None = None
    next_function_id: int = 1
    in_step: bool = False
    step_attempt: int = 0
    # The Runtime executing this workflow (typed loosely to keep this module import-light).
    runtime: Any = None

    def take_function_id(self) -> int:
        fid = self.next_function_id
        self.next_function_id += 1
        return fid


@dataclass
class StartOptions:
    """What ``SetWorkflowID``, ``SetWorkflowTimeout`` and ``SetEnqueueOptions`` ask for."""

    workflow_id: str | None = None
    timeout_seconds: float | None = None
    timeout_set: bool = False
    deduplication_id: str | None = None
    priority: int | None = None
    queue_partition_key: str | None = None
    app_version: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


_current_workflow: contextvars.ContextVar[WorkflowContext | None] = contextvars.ContextVar(
    "keeptime_workflow", default=None
)
_start_options: contextvars.ContextVar[StartOptions] = contextvars.ContextVar(
    "keeptime_start_options",
    default=StartOptions(),  # noqa: B039 - never mutated
)


def current_workflow() -> WorkflowContext | None:
    return _current_workflow.get()


@contextmanager
def running_workflow(ctx: WorkflowContext) -> Iterator[WorkflowContext]:
    token = _current_workflow.set(ctx)
    # Options like SetWorkflowID apply to the call they wrap, not to children of that call.
    options_token = _start_options.set(StartOptions())
    try:
        yield ctx
    finally:
        _start_options.reset(options_token)
        _current_workflow.reset(token)


@contextmanager
def outside_workflow() -> Iterator[None]:
    token = _current_workflow.set(None)
    try:
        yield
    finally:
        _current_workflow.reset(token)


def start_options() -> StartOptions:
    return _start_options.get()


def consume_workflow_id() -> str | None:
    """The ID set by ``SetWorkflowID`` applies to exactly one start."""
    opts = _start_options.get()
    if opts.workflow_id is None:
        return None
    wf_id = opts.workflow_id
    _start_options.set(_replace(opts, workflow_id=None))
    return wf_id


def _replace(opts: StartOptions, **changes: Any) -> StartOptions:
    values = {**opts.__dict__, **changes}
    return StartOptions(**values)


@contextmanager
def _options(**changes: Any) -> Iterator[None]:
    token = _start_options.set(_replace(_start_options.get(), **changes))
    try:
        yield
    finally:
        _start_options.reset(token)


class SetWorkflowID:
    """Run or start the next workflow with this ID (the ID is its idempotency key)."""

    def __init__(self, workflow_id: str) -> None:
        if not isinstance(workflow_id, str) or not workflow_id:
            raise DBOSInvalidArgumentError(
                f"SetWorkflowID needs a non-empty string, got {workflow_id!r}"
            )
        self.workflow_id = workflow_id
        self._cm: Any = None

    def __enter__(self) -> SetWorkflowID:
        self._cm = _options(workflow_id=self.workflow_id)
        self._cm.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._cm.__exit__(*exc)


class SetWorkflowTimeout:
    """Cancel workflows started inside this block if they run longer than ``timeout_seconds``.

    ``None`` removes a timeout that an enclosing block or parent workflow set.
    """

    def __init__(self, workflow_timeout_sec: float | None) -> None:
        if workflow_timeout_sec is not None and (
            isinstance(workflow_timeout_sec, bool)
            or not isinstance(workflow_timeout_sec, int | float)
            or workflow_timeout_sec <= 0
        ):
            raise DBOSInvalidArgumentError(
                f"SetWorkflowTimeout needs a positive number of seconds or None, "
                f"got {workflow_timeout_sec!r}"
            )
        self.timeout = workflow_timeout_sec
        self._cm: Any = None

    def __enter__(self) -> SetWorkflowTimeout:
        self._cm = _options(timeout_seconds=self.timeout, timeout_set=True)
        self._cm.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._cm.__exit__(*exc)


MAX_PRIORITY = 2_147_483_647


class SetEnqueueOptions:
    """Deduplication ID, priority and partition key for workflows enqueued inside this block."""

    def __init__(
        self,
        *,
        deduplication_id: str | None = None,
        priority: int | None = None,
        queue_partition_key: str | None = None,
        app_version: str | None = None,
    ) -> None:
        if priority is not None and (
            isinstance(priority, bool)
            or not isinstance(priority, int)
            or not 1 <= priority <= MAX_PRIORITY
        ):
            raise DBOSInvalidArgumentError(
                f"priority must be an integer from 1 to {MAX_PRIORITY} (lower runs first), "
                f"got {priority!r}"
            )
        for label, value in (
            ("deduplication_id", deduplication_id),
            ("queue_partition_key", queue_partition_key),
        ):
            if value is not None and (not isinstance(value, str) or not value):
                raise DBOSInvalidArgumentError(f"{label} must be a non-empty string, got {value!r}")
        self.changes = {
            "deduplication_id": deduplication_id,
            "priority": priority,
            "queue_partition_key": queue_partition_key,
            "app_version": app_version,
        }
        self._cm: Any = None

    def __enter__(self) -> SetEnqueueOptions:
        self._cm = _options(**self.changes)
        self._cm.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._cm.__exit__(*exc)
