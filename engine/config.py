"""DBOSConfig: the spec's configuration dictionary, validated into ResolvedConfig."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, TypedDict

from sqlalchemy import Engine

from engine.error import DBOSConfigError
from engine.serialization import PickleSerializer, Serializer


class DBOSConfig(TypedDict, total=False):
    """The spec's configuration dict for ``DBOS(config=...)``; only ``name`` is required.

    Unknown keys are refused. Keeptime extensions: ``executor_timeout_sec`` (default 30: an executor
    silent this long is presumed dead and its work taken over) and ``max_executor_threads`` (default
    256). ``conductor_key`` and the OTLP keys are accepted and have no effect. The admin server is
    off unless ``run_admin_server`` is set. See docs/configuration.md.
    """

    name: str
    system_database_url: str | None
    application_database_url: str | None
    database_url: str | None
    sys_db_pool_size: int | None
    db_engine_kwargs: dict[str, Any] | None
    dbos_system_schema: str | None
    system_database_engine: Engine | None
    conductor_key: str | None
    enable_otlp: bool | None
    otlp_traces_endpoints: list[str] | None
    otlp_logs_endpoints: list[str] | None
    otlp_attributes: dict[str, str] | None
    log_level: str | None
    run_admin_server: bool | None
    admin_port: int | None
    application_version: str | None
    executor_id: str | None
    serializer: Serializer | None
    max_executor_threads: int | None
    executor_timeout_sec: float | None


_KNOWN_KEYS = frozenset(DBOSConfig.__annotations__)
# Accepted for compatibility; keeptime has no such subsystem, so launch logs that they are ignored.
IGNORED_KEYS = (
    "conductor_key",
    "enable_otlp",
    "otlp_traces_endpoints",
    "otlp_logs_endpoints",
    "otlp_attributes",
)
# Unlike DBOS (on by default, port 3001), keeptime's admin server is off unless asked for, and
# listens on 127.0.0.1 only.
DEFAULT_ADMIN_PORT = 3001
# An executor silent for this long is presumed dead and its PENDING work is taken over.
DEFAULT_EXECUTOR_TIMEOUT_SEC = 30.0
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True)
class ResolvedConfig:
    """A validated ``DBOSConfig`` with its defaults filled in; what ``DBOS.config`` returns."""

    name: str
    system_database_url: str
    application_database_url: str | None
    sys_db_pool_size: int
    db_engine_kwargs: dict[str, Any]
    system_schema: str
    system_database_engine: Engine | None
    log_level: str
    application_version: str | None
    # None: claim a slot of this host at launch (engine.runtime.identity).
    executor_id: str | None
    serializer: Serializer
    max_executor_threads: int
    executor_timeout_sec: float
    ignored: tuple[str, ...]
    run_admin_server: bool = False
    admin_port: int = DEFAULT_ADMIN_PORT


def resolve_config(config: DBOSConfig | dict[str, Any]) -> ResolvedConfig:
    """Validate ``config`` and fill in its defaults, reading ``DBOS_SYSTEM_DATABASE_URL``,
    ``DBOS__VMID`` and ``DBOS__APPVERSION`` for unset keys. Raises DBOSConfigError naming the bad
    key."""
    if not isinstance(config, dict):
        raise DBOSConfigError(
            f"DBOS(config=...) needs a dict (DBOSConfig), got {type(config).__name__}"
        )
    unknown = sorted(set(config) - _KNOWN_KEYS)
    if unknown:
        raise DBOSConfigError(
            f"unknown DBOSConfig key(s) {', '.join(map(repr, unknown))} "
            f"(known keys: {', '.join(sorted(_KNOWN_KEYS))})"
        )
    name = config.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", name):
        raise DBOSConfigError(
            f"DBOSConfig 'name' must be set to letters, digits, '.', '_' or '-', got {name!r}"
        )
    system_url = config.get("system_database_url") or config.get("database_url")
    if system_url is None:
        system_url = os.environ.get("DBOS_SYSTEM_DATABASE_URL") or f"sqlite:///{name}.sqlite"
    app_url = config.get("application_database_url") or config.get("database_url")
    serializer = config.get("serializer") or PickleSerializer()
    if not isinstance(serializer, Serializer):
        raise DBOSConfigError(
            "DBOSConfig 'serializer' must be a Serializer instance, "
            f"got {type(serializer).__name__}"
        )
    log_level = str(config.get("log_level") or "INFO").upper()
    if log_level not in _LOG_LEVELS:
        raise DBOSConfigError(f"log_level {log_level!r} is not one of {', '.join(_LOG_LEVELS)}")
    pool = _or_default(config.get("sys_db_pool_size"), 20)
    threads = _or_default(config.get("max_executor_threads"), 256)
    for label, value in (("sys_db_pool_size", pool), ("max_executor_threads", threads)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DBOSConfigError(f"{label} must be a positive integer, got {value!r}")
    executor_timeout = _or_default(config.get("executor_timeout_sec"), DEFAULT_EXECUTOR_TIMEOUT_SEC)
    if (
        isinstance(executor_timeout, bool)
        or not isinstance(executor_timeout, int | float)
        or executor_timeout <= 0
    ):
        raise DBOSConfigError(
            f"executor_timeout_sec must be a positive number, got {executor_timeout!r}"
        )
    executor_id = config.get("executor_id") or os.environ.get("DBOS__VMID") or None
    version = config.get("application_version") or os.environ.get("DBOS__APPVERSION") or None
    return ResolvedConfig(
        name=name,
        system_database_url=str(system_url),
        application_database_url=str(app_url) if app_url else None,
        sys_db_pool_size=pool,
        db_engine_kwargs=dict(config.get("db_engine_kwargs") or {}),
        system_schema=config.get("dbos_system_schema") or "dbos",
        system_database_engine=config.get("system_database_engine"),
        log_level=log_level,
        application_version=version,
        executor_id=str(executor_id) if executor_id is not None else None,
        serializer=serializer,
        max_executor_threads=threads,
        executor_timeout_sec=float(executor_timeout),
        ignored=tuple(k for k in IGNORED_KEYS if config.get(k) not in (None, False)),
        run_admin_server=_flag(config, "run_admin_server"),
        admin_port=_admin_port(config.get("admin_port")),
    )


def _flag(config: DBOSConfig | dict[str, Any], key: str) -> bool:
    value = config.get(key)
    if value is not None and not isinstance(value, bool):
        raise DBOSConfigError(f"{key} must be true or false, got {value!r}")
    return bool(value)


def _admin_port(value: Any) -> int:
    if value is None:
        return DEFAULT_ADMIN_PORT
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise DBOSConfigError(
            f"admin_port must be an integer 0..65535 (0: any free port), got {value!r}"
        )
    return value


def _or_default(value: Any, default: Any) -> Any:
    """The spec's optional keys: None means "use the default"; 0 is a value to validate."""
    return default if value is None else value
