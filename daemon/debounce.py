"""Send an input to a configured debouncer by name (the CLI and the HTTP API share this)."""

from __future__ import annotations

from daemon.config_check import suggest
from daemon.config_model import Config, DebouncerConfig
from daemon.engine_setup import workflow_name_of
from engine import DBOSClient, Debouncer, DebouncerClient
from engine.error import DBOSInvalidArgumentError

__all__ = ["UnknownDebouncer", "debounce_by_config", "debounce_namespace"]


class UnknownDebouncer(DBOSInvalidArgumentError):
    """The config has no ``[debouncers.NAME]`` of that name."""


def debounce_namespace(name: str) -> str:
    """Keys of each configured debouncer are separate, even when two run the same workflow."""
    return f"keeptime.debouncer.{name}"


def debounce_by_config(
    client: DBOSClient | None, config: Config, name: str, key: str, value: object
) -> str:
    """Debounce ``key`` of debouncer ``name`` with ``value``; returns the run's workflow ID.

    With a ``client`` (the CLI), the window is only stored: a running daemon fires it. Without
    one (inside the launched daemon), the local scheduler also arms its timer.
    """
    configured = _debouncer_named(config, name)
    workflow_name = workflow_name_of(configured)
    period = configured.period.total_seconds()
    max_wait = configured.max_wait.total_seconds() if configured.max_wait is not None else None
    namespace = debounce_namespace(name)
    if client is None:
        local = Debouncer.by_name(
            workflow_name,
            debounce_timeout_sec=max_wait,
            queue_name=configured.queue,
            namespace=namespace,
        )
        return local.debounce(key, period, value).workflow_id
    handle = DebouncerClient(client).debounce(
        workflow_name,
        key,
        period,
        args=(value,),
        debounce_timeout_sec=max_wait,
        queue_name=configured.queue,
        namespace=namespace,
    )
    return handle.workflow_id


def _debouncer_named(config: Config, name: str) -> DebouncerConfig:
    debouncer = config.debouncers.get(name)
    if debouncer is None:
        hint = suggest(name, sorted(config.debouncers), "configured debouncers:") or "none"
        raise UnknownDebouncer(f"no debouncer named {name!r} in {config.source_path} ({hint})")
    return debouncer
