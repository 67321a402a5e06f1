"""Rendering engine values as JSON: anything JSON cannot represent becomes its ``repr``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from engine.status import StepInfo, WorkflowStatus

_MAX_DEPTH = 64


def jsonable(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON types; values JSON has no form for are rendered as ``repr`` strings."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if depth >= _MAX_DEPTH:
        return repr(value)
    if isinstance(value, list | tuple):
        return [jsonable(v, depth + 1) for v in value]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {k: jsonable(v, depth + 1) for k, v in value.items()}
    return _safe_repr(value)


def error_json(error: BaseException | None) -> dict[str, str] | None:
    if error is None:
        return None
    kind = type(error)
    return {"type": f"{kind.__module__}.{kind.__qualname__}", "message": str(error)}


def status_json(status: WorkflowStatus) -> dict[str, Any]:
    inputs = status.input
    return {
        "workflow_id": status.workflow_id,
        "status": status.status,
        "name": status.name,
        "class_name": status.class_name,
        "config_name": status.config_name,
        "authenticated_user": status.authenticated_user,
        "assumed_role": status.assumed_role,
        "authenticated_roles": status.authenticated_roles,
        "input": None
        if inputs is None
        else {"args": jsonable(list(inputs["args"])), "kwargs": jsonable(inputs["kwargs"])},
        "output": jsonable(status.output),
        "error": error_json(status.error),
        "created_at": status.created_at,
        "updated_at": status.updated_at,
        "queue_name": status.queue_name,
        "executor_id": status.executor_id,
        "app_version": status.app_version,
        "recovery_attempts": status.recovery_attempts,
        "workflow_timeout_ms": status.workflow_timeout_ms,
        "workflow_deadline_epoch_ms": status.workflow_deadline_epoch_ms,
        "deduplication_id": status.deduplication_id,
        "priority": status.priority,
        "parent_workflow_id": status.parent_workflow_id,
    }


def step_json(step: StepInfo) -> dict[str, Any]:
    return {
        "function_id": step["function_id"],
        "function_name": step["function_name"],
        "output": jsonable(step["output"]),
        "error": error_json(step["error"]),
        "child_workflow_id": step["child_workflow_id"],
    }


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception:
        return f"<unrepresentable {type(value).__name__}>"
