"""Turn a validated :class:`Config` into a configured engine: DBOS config, queues, targets.

Used by ``keeptime run`` (a full launch) and by the management commands (which only open the
database through :class:`engine.DBOSClient` and never run workflows).
"""

from __future__ import annotations

from daemon.config_check import database_url_with_password
from daemon.config_model import Config, DebouncerConfig, QueueConfig, ScheduleConfig
from daemon.targets import register_target, target_workflow_name
from engine import DBOSClient, DBOSConfig, JsonSerializer, Queue

__all__ = [
    "DEFAULT_APPLICATION_VERSION",
    "application_version",
    "create_queues",
    "dbos_config",
    "open_client",
    "register_debouncer_targets",
    "register_schedule_targets",
    "workflow_name_of",
]


#: The application version of a daemon whose config sets none. Fixed, so that a restart after
#: any edit of the config or of the job code resumes every run in flight: the engine's default
#: (a hash of every registered workflow's source) would change with each edit, since the config
#: generates workflows for its command and webhook targets, and recovery only resumes work of
#: the current version. ``[engine] application_version`` opts into versioned recovery.
DEFAULT_APPLICATION_VERSION = "keeptime"


def application_version(config: Config) -> str:
    """The application version the daemon runs (and tags its runs with) under ``config``."""
    return config.engine.application_version or DEFAULT_APPLICATION_VERSION


def dbos_config(config: Config) -> DBOSConfig:
    """The engine config for the daemon. JSON serialization: nothing stored is ever unpickled.

    The application version is always set (see :data:`DEFAULT_APPLICATION_VERSION`), so the
    engine's computed version and ``$DBOS__APPVERSION`` never apply to the daemon.
    """
    engine_config: DBOSConfig = {
        "name": config.engine.name,
        "system_database_url": database_url_with_password(config),
        "serializer": JsonSerializer(),
        "application_version": application_version(config),
    }
    if config.engine.executor_id:
        engine_config["executor_id"] = config.engine.executor_id
    return engine_config


def open_client(config: Config) -> DBOSClient:
    """A client on the configured system database (migrates it; starts no workers)."""
    return DBOSClient(
        system_database_url=database_url_with_password(config), serializer=JsonSerializer()
    )


def create_queues(config: Config) -> list[Queue]:
    """Create (or redefine) the engine queue of every ``[queues.NAME]`` table."""
    return [_queue(q) for q in config.queues.values()]


def _queue(q: QueueConfig) -> Queue:
    rate = q.limiter
    return Queue(
        q.name,
        q.concurrency,
        None if rate is None else {"limit": rate.limit, "period": rate.period.total_seconds()},
        worker_concurrency=q.worker_concurrency,
        priority_enabled=q.priority_enabled,
        partition_queue=q.partition_queue,
    )


def register_schedule_targets(schedules: dict[str, ScheduleConfig]) -> dict[str, str]:
    """Register the command and webhook workflows of schedules; ``{schedule: workflow name}``."""
    return {
        name: register_target("schedule", name, s.target, s.retries)
        for name, s in schedules.items()
    }


def register_debouncer_targets(debouncers: dict[str, DebouncerConfig]) -> dict[str, str]:
    """Register the command and webhook workflows of debouncers; ``{debouncer: workflow name}``."""
    return {name: register_target("debouncer", name, d.target) for name, d in debouncers.items()}


def workflow_name_of(item: ScheduleConfig | DebouncerConfig) -> str:
    """The workflow a schedule or debouncer runs (without registering anything)."""
    if isinstance(item, ScheduleConfig):
        return target_workflow_name("schedule", item.name, item.target)
    return target_workflow_name("debouncer", item.name, item.target)
