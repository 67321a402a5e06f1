"""JSON Schemas of request and response bodies (they validate requests and feed OpenAPI)."""

from __future__ import annotations

from typing import Any

from engine.admin.routing import Reply
from engine.status import ALL_STATUSES

STATUSES = ALL_STATUSES
Schema = dict[str, Any]

#: Names and IDs: any text without NUL (PostgreSQL cannot store NUL in text).
NAME: Schema = {"type": "string", "minLength": 1, "maxLength": 1000, "pattern": "^[^\\u0000]+$"}
OPTIONAL_NAME: Schema = {**NAME, "type": ["string", "null"]}
ANY: Schema = {"description": "Any JSON value."}
TIMESTAMP_MS: Schema = {"type": ["integer", "null"], "description": "Epoch milliseconds."}

PROBLEM: Schema = {
    "type": "object",
    "description": "RFC 9457 problem details.",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "code": {"type": "string", "description": "Stable machine-readable error name."},
    },
    "required": ["type", "title", "status", "detail", "code"],
}
NOT_FOUND = Reply("Not found", PROBLEM, "application/problem+json")

ERROR: Schema = {
    "type": ["object", "null", "string"],
    "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
}
WORKFLOW: Schema = {
    "type": "object",
    "properties": {
        "workflow_id": {"type": "string"},
        "status": {"type": "string", "enum": list(STATUSES)},
        "name": {"type": "string"},
        "input": {
            "description": "Arguments; values JSON cannot represent appear as repr strings.",
            "type": ["object", "null", "string"],
        },
        "output": ANY,
        "error": ERROR,
        "created_at": TIMESTAMP_MS,
        "updated_at": TIMESTAMP_MS,
        "queue_name": {"type": ["string", "null"]},
        "executor_id": {"type": ["string", "null"]},
        "app_version": {"type": ["string", "null"]},
        "recovery_attempts": {"type": "integer"},
    },
    "required": ["workflow_id", "status", "name"],
}
WORKFLOW_LIST: Schema = {
    "type": "object",
    "properties": {
        "workflows": {"type": "array", "items": WORKFLOW},
        "limit": {"type": "integer"},
        "offset": {"type": "integer"},
    },
    "required": ["workflows"],
}
STEP_LIST: Schema = {
    "type": "object",
    "properties": {
        "workflow_id": {"type": "string"},
        "steps": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "function_id": {"type": "integer"},
                    "function_name": {"type": "string"},
                    "output": ANY,
                    "error": ERROR,
                    "child_workflow_id": {"type": ["string", "null"]},
                },
            },
        },
    },
}
WORKFLOW_REF: Schema = {
    "type": "object",
    "properties": {"workflow_id": {"type": "string"}},
    "required": ["workflow_id"],
}
WORKFLOW_STATE: Schema = {
    "type": "object",
    "properties": {"workflow_id": {"type": "string"}, "status": {"type": ["string", "null"]}},
    "required": ["workflow_id"],
}
EVENT: Schema = {
    "type": "object",
    "properties": {"workflow_id": {"type": "string"}, "key": {"type": "string"}, "value": ANY},
}
MESSAGE_REPLY: Schema = {
    "type": "object",
    "properties": {"workflow_id": {"type": "string"}, "topic": {"type": ["string", "null"]}},
}

EMPTY_BODY: Schema = {"type": "object", "properties": {}, "additionalProperties": False}
FORK_BODY: Schema = {
    "type": "object",
    "properties": {
        "start_step": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
        "application_version": OPTIONAL_NAME,
        "workflow_id": {**NAME, "description": "ID of the new workflow (default: a UUID)."},
    },
    "required": ["start_step"],
    "additionalProperties": False,
}
START_BODY: Schema = {
    "type": "object",
    "properties": {
        "args": {"type": "array", "description": "Positional arguments (JSON values)."},
        "kwargs": {"type": "object", "description": "Keyword arguments (JSON values)."},
        "workflow_id": {**NAME, "description": "Idempotency key: starting twice runs once."},
        "queue": {**NAME, "description": "Enqueue on this queue instead of starting now."},
    },
    "additionalProperties": False,
}
MESSAGE_BODY: Schema = {
    "type": "object",
    "properties": {"topic": OPTIONAL_NAME, "message": ANY},
    "required": ["message"],
    "additionalProperties": False,
}
