"""Structured logs: one JSON object per line on stdout (journald adds time and unit), or console.

Every record has a stable ``event`` name (``daemon.ready``, ``schedule.fired``, ...), a ``level``
and a ``timestamp``; the rest are key/value fields. Records from the standard :mod:`logging`
module (the engine logs there) go through the same renderer, so stdout carries one format, and
their ``extra=`` fields become keys of the JSON object.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

from daemon.config_model import LogFormat, LogLevel

__all__ = ["configure_logging", "get_logger"]

_SHARED_PROCESSORS: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def configure_logging(
    log_format: LogFormat = "json", level: LogLevel = "info", stream: TextIO | None = None
) -> None:
    """Send structlog and standard logging records to ``stream`` (stdout) in ``log_format``."""
    out = stream if stream is not None else sys.stdout
    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    numeric_level = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[
            *_SHARED_PROCESSORS,
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            # ExtraAdder first: a record's ``extra=`` fields become keys (the engine passes the
            # facts of a decision there), and the standard keys added after it win a clash.
            foreign_pre_chain=[
                structlog.stdlib.ExtraAdder(),
                *_SHARED_PROCESSORS,
                structlog.stdlib.add_logger_name,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _exception_as_text(log_format),
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric_level)


def _exception_as_text(log_format: LogFormat) -> Any:
    # JSON lines keep tracebacks in one "exception" string; the console renderer prints its own.
    if log_format == "json":
        return structlog.processors.format_exc_info
    return _identity


def _identity(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    return event


def get_logger(name: str = "keeptime") -> Any:
    """A structlog logger; call it as ``log.info("schedule.fired", schedule=name, ...)``."""
    return structlog.get_logger(name)
