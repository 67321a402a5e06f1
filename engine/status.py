"""Public value types: WorkflowStatus, StepInfo, and the workflow status names."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypedDict


class WorkflowStatusString(StrEnum):
    ENQUEUED = "ENQUEUED"
    PENDING = "PENDING"
    SUCCESS = "SUCCESS"
    ERROR = "ERROR"
    CANCELLED = "CANCELLED"
    MAX_RECOVERY_ATTEMPTS_EXCEEDED = "MAX_RECOVERY_ATTEMPTS_EXCEEDED"


ALL_STATUSES = tuple(s.value for s in WorkflowStatusString)


class WorkflowInputs(TypedDict):
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclass
class WorkflowStatus:
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
    function_id: int
    function_name: str
    output: Any | None
    error: BaseException | None
    child_workflow_id: str | None
