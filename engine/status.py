"""Public value types: WorkflowStatus, StepInfo, and the workflow status names."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypedDict


class WorkflowStatusString(StrEnum):
    """The six workflow statuses. A ``StrEnum``: each member equals its name, so it compares with
    ``WorkflowStatus.status``."""

    ENQUEUED = "ENQUEUED"
    PENDING = "PENDING"
    SUCCESS = "SUCCESS"
    ERROR = "ERROR"
    CANCELLED = "CANCELLED"
    MAX_RECOVERY_ATTEMPTS_EXCEEDED = "MAX_RECOVERY_ATTEMPTS_EXCEEDED"


#: Every status name, for validating filters.
ALL_STATUSES = tuple(s.value for s in WorkflowStatusString)


class WorkflowInputs(TypedDict):
    """A workflow's decoded inputs: positional ``args`` and keyword ``kwargs``."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclass
class WorkflowStatus:
    """One workflow as the management calls report it: the spec's fields, then the options it was
    started with and its parent's ID.

    Times are epoch milliseconds. ``input``, ``output`` and ``error`` are None when not loaded
    (``load_input`` or ``load_output`` False).
    """

    workflow_id: str
    status: str
    name: str
    recovery_attempts: int
    class_name: str | None
    config_name: str | None
    authenticated_user: str | None
    assumed_role: str | None
    authenticated_roles: list[str] | None
    input: WorkflowInputs | None
    output: Any | None
    error: BaseException | None
    created_at: int | None
    updated_at: int | None
    queue_name: str | None
    executor_id: str | None
    app_version: str | None
    app_id: str | None = None
    workflow_timeout_ms: int | None = None
    workflow_deadline_epoch_ms: int | None = None
    deduplication_id: str | None = None
    priority: int | None = None
    queue_partition_key: str | None = None
    parent_workflow_id: str | None = None


class StepInfo(TypedDict):
    """One recorded step of a workflow, from ``list_workflow_steps``. ``function_id`` counts from 1;
    ``child_workflow_id`` is set when the step started or awaited a workflow."""

    function_id: int
    function_name: str
    output: Any | None
    error: BaseException | None
    child_workflow_id: str | None
