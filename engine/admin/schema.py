"""A small JSON Schema subset: the route table's schemas both document and validate requests.

Supported keywords: ``type`` (a name or a list), ``properties``, ``required``,
``additionalProperties`` (boolean), ``items``, ``minimum``, ``maximum``, ``minLength``,
``maxLength``, ``pattern``, ``enum`` and ``format: date-time``. Anything else is documentation only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from engine.admin.problems import Problem

Schema = Mapping[str, Any]

_TYPE_CHECKS = {
    "null": lambda v: v is None,
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}
_INTEGER = re.compile(r"[+-]?[0-9]{1,18}")
_MAX_ERRORS = 5


def check(value: Any, schema: Schema, where: str, *, status: int = 422) -> None:
    """Raise a problem listing what in ``value`` does not match ``schema``."""
    errors = errors_of(value, schema, where)
    if errors:
        raise Problem(
            status,
            "invalid_request" if status == 400 else "invalid_body",
            "; ".join(errors[:_MAX_ERRORS]),
            extra={"errors": errors[:_MAX_ERRORS]},
        )


def errors_of(value: Any, schema: Schema, where: str) -> list[str]:
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else list(types)
        if not any(_TYPE_CHECKS[name](value) for name in names):
            return [f"{where} must be {' or '.join(names)}, got {_json_type(value)}"]
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(repr(v) for v in schema["enum"])
        return [f"{where} must be one of {allowed}, got {value!r}"]
    if isinstance(value, dict):
        return _object_errors(value, schema, where)
    if isinstance(value, list) and "items" in schema:
        errors: list[str] = []
        for index, item in enumerate(value):
            errors += errors_of(item, schema["items"], f"{where}[{index}]")
        return errors
    return _scalar_errors(value, schema, where)


def _object_errors(value: dict[str, Any], schema: Schema, where: str) -> list[str]:
    errors: list[str] = []
    properties: Mapping[str, Schema] = schema.get("properties", {})
    for key in schema.get("required", ()):
        if key not in value:
            errors.append(f"{where}.{key} is required")
    if schema.get("additionalProperties") is False:
        unknown = sorted(k for k in value if k not in properties)
        if unknown:
            known = ", ".join(properties) or "none"
            errors.append(f"{where} has unknown field(s) {', '.join(unknown)} (known: {known})")
    for key, sub in properties.items():
        if key in value:
            errors += errors_of(value[key], sub, f"{where}.{key}")
    return errors


def _scalar_errors(value: Any, schema: Schema, where: str) -> list[str]:
    if _TYPE_CHECKS["number"](value):
        if "minimum" in schema and value < schema["minimum"]:
            return [f"{where} must be >= {schema['minimum']}, got {value!r}"]
        if "maximum" in schema and value > schema["maximum"]:
            return [f"{where} must be <= {schema['maximum']}, got {value!r}"]
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            return [f"{where} must have at least {schema['minLength']} character(s)"]
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return [f"{where} must have at most {schema['maxLength']} characters"]
        if "pattern" in schema and not re.search(schema["pattern"], value):
            return [f"{where} must match {schema['pattern']}, got {value!r}"]
        if schema.get("format") == "date-time" and not is_rfc3339(value):
            return [f"{where} must be an RFC 3339 timestamp like 2026-01-31T12:00:00Z"]
    return []


def is_rfc3339(text: str) -> bool:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return False
    return moment.tzinfo is not None and "T" in text.upper()


def parse_query_value(raw: str, schema: Schema, where: str) -> Any:
    """Turn one query-string value into the type its schema names (400 when it cannot)."""
    kind = schema.get("type")
    if kind == "integer":
        if not _INTEGER.fullmatch(raw):
            raise Problem(400, "invalid_request", f"{where} must be an integer, got {raw!r}")
        return int(raw)
    if kind == "number":
        try:
            number = float(raw)
        except ValueError:
            number = float("nan")
        if number != number or number in (float("inf"), float("-inf")):
            raise Problem(400, "invalid_request", f"{where} must be a number, got {raw!r}")
        return number
    if kind == "boolean":
        if raw.lower() not in ("true", "false", "1", "0"):
            raise Problem(400, "invalid_request", f"{where} must be true or false, got {raw!r}")
        return raw.lower() in ("true", "1")
    return raw


def _json_type(value: Any) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _TYPE_CHECKS[name](value):
            return name
    return type(value).__name__
