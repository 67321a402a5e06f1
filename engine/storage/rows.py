"""The rows the system store reads and writes: workflows, steps, outcomes, list filters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import Row

TERMINAL_STATUSES = ("SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED")


@dataclass(slots=True)  # slots: a burst of ticks holds thousands of these at once
class WorkflowRow:
    """One ``workflow_status`` row: a workflow's identity, inputs, state and outcome."""

    workflow_uuid: str
    status: str
    name: str
    class_name: str | None = None
    config_name: str | None = None
    authenticated_user: str | None = None
    assumed_role: str | None = None
    authenticated_roles: str | None = None
    inputs: str | None = None
    output: str | None = None
    error: str | None = None
    executor_id: str | None = None
    application_version: str | None = None
    application_id: str | None = None
    created_at: int = 0
    updated_at: int = 0
    recovery_attempts: int = 0
    queue_name: str | None = None
    queue_partition_key: str | None = None
    deduplication_id: str | None = None
    priority: int | None = None
    timeout_ms: int | None = None
    deadline_epoch_ms: int | None = None
    started_at_epoch_ms: int | None = None
    parent_workflow_id: str | None = None
    queue_order: int | None = None

    @classmethod
    def from_row(cls, row: Row[Any]) -> WorkflowRow:
        mapping = row._mapping
        return cls(**{name: mapping[name] for name in _WORKFLOW_FIELDS})

    def values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _WORKFLOW_FIELDS}


_WORKFLOW_FIELDS = tuple(f.name for f in fields(WorkflowRow))


@dataclass(frozen=True)
class StepRecord:
    """One recorded step (``operation_outputs``): its output or error, or the child it started."""

    function_id: int
    function_name: str
    output: str | None
    error: str | None
    child_workflow_id: str | None

    @classmethod
    def from_row(cls, row: Row[Any]) -> StepRecord:
        m = row._mapping
        return cls(
            m["function_id"], m["function_name"], m["output"], m["error"], m["child_workflow_id"]
        )


@dataclass(frozen=True)
class WorkflowOutcome:
    """A finished workflow's terminal status and its encoded result or error."""

    workflow_id: str
    status: str
    output: str | None
    error: str | None


@dataclass(frozen=True)
class StepWrite:
    """What recording a step found: the workflow's status, and an earlier record if one won."""

    workflow_status: str | None
    earlier: StepRecord | None


@dataclass(frozen=True)
class ListFilter:
    """What ``list_workflows`` selects: every field that is set must match."""

    workflow_ids: Sequence[str] | None = None
    workflow_id_prefix: str | None = None
    statuses: Sequence[str] | None = None
    start_ms: int | None = None
    end_ms: int | None = None
    name: str | None = None
    app_version: str | None = None
    user: str | None = None
    queue_name: str | None = None
    queued_only: bool = False
    limit: int | None = None
    offset: int | None = None
    sort_desc: bool = False
