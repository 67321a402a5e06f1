"""How management commands print: aligned tables for people, ``-o json`` for scripts."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TextIO

__all__ = [
    "OutputFormat",
    "format_left",
    "format_time_ms",
    "jsonable",
    "print_records",
    "print_table",
]

OutputFormat = Literal["table", "json"]


def print_records(
    records: Sequence[Mapping[str, Any]],
    columns: Sequence[tuple[str, str]],
    output: OutputFormat,
    stream: TextIO | None = None,
) -> None:
    """Print ``records`` as a table (``columns`` = (key, HEADER) pairs) or as a JSON array."""
    out = stream if stream is not None else sys.stdout
    if output == "json":
        out.write(json.dumps(jsonable(list(records)), indent=2) + "\n")
        return
    rows = [[_cell(record.get(key)) for key, _ in columns] for record in records]
    print_table([header for _, header in columns], rows, out)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]], stream: TextIO) -> None:
    """Left-aligned columns separated by two spaces, like ``systemctl list-timers``."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    for line in [list(headers), *rows]:
        text = "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        stream.write(text.rstrip() + "\n")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    return str(value)


def jsonable(value: Any) -> Any:
    """Make engine values (dataclasses, datetimes, exceptions, tuples) printable as JSON."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, BaseException):
        return {"type": type(value).__name__, "message": str(value)}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def format_time_ms(epoch_ms: int | None) -> str | None:
    """An epoch-milliseconds timestamp as ISO 8601 UTC, seconds precision."""
    if epoch_ms is None:
        return None
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).isoformat(timespec="seconds")


def format_left(delta: timedelta) -> str:
    """A time span the way people read it: ``45s``, ``12min 5s``, ``3h 12min``, ``2 days 4h``."""
    seconds = int(delta.total_seconds())
    if seconds < 0:
        return "overdue " + format_left(-delta)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} day{'s' if days != 1 else ''} {hours}h"
    if hours:
        return f"{hours}h {minutes}min"
    if minutes:
        return f"{minutes}min {secs}s"
    return f"{secs}s"
