"""Apply the config's schedules and debouncers to the engine's durable registry, by name.

The engine keeps schedules in the system database (with their pause state and last fire), so
``DBOS.apply_schedules(..., configured=True)`` replaces the *definitions* and keeps the runtime
state: a schedule paused from
the CLI stays paused across reloads and restarts, and a schedule missing from the config stops
firing. Debouncers need no durable definition: the daemon keeps their settings and passes them
with each call.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from daemon.config_model import Config, DebouncerConfig, ScheduleConfig
from engine import DBOS

__all__ = ["DebouncerBinding", "RegistrySync", "schedule_entry"]


@dataclass(frozen=True)
class DebouncerBinding:
    """A configured debouncer and the workflow it runs."""

    config: DebouncerConfig
    workflow_name: str

    @property
    def period_seconds(self) -> float:
        return self.config.period.total_seconds()

    @property
    def max_wait_seconds(self) -> float | None:
        max_wait = self.config.max_wait
        return max_wait.total_seconds() if max_wait is not None else None


def schedule_entry(schedule: ScheduleConfig, workflow_name: str) -> dict[str, Any]:
    """The ``apply_schedules`` entry of one configured schedule."""
    window = schedule.catchup_window
    entry: dict[str, Any] = {
        "schedule_name": schedule.name,
        "workflow_name": workflow_name,
        "schedule": schedule.cron,
        "cron_timezone": schedule.timezone,
        "queue_name": schedule.queue,
        "catchup": str(schedule.catchup),
        "catchup_window_seconds": window.total_seconds() if window is not None else None,
        "overlap": str(schedule.overlap),
        "jitter_seconds": schedule.jitter.total_seconds(),
        "timeout_seconds": schedule.timeout.total_seconds() if schedule.timeout else None,
        "paused": schedule.paused,
    }
    if schedule.max_catchup is not None:
        entry["max_catchup"] = schedule.max_catchup
    return entry


class RegistrySync:
    """Keeps the engine's schedules and the daemon's debouncers in step with the config."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._debouncers: dict[str, DebouncerBinding] = {}
        self.schedules_loaded = threading.Event()

    def apply(
        self,
        config: Config,
        schedule_workflows: Mapping[str, str],
        debouncer_workflows: Mapping[str, str],
    ) -> None:
        """Replace every schedule definition and debouncer with the config's."""
        entries = [
            schedule_entry(s, schedule_workflows[name]) for name, s in config.schedules.items()
        ]
        DBOS.apply_schedules(entries, configured=True)
        bindings = {
            name: DebouncerBinding(d, debouncer_workflows[name])
            for name, d in config.debouncers.items()
        }
        with self._lock:
            self._debouncers = bindings
        self.schedules_loaded.set()

    def debouncer(self, name: str) -> DebouncerBinding | None:
        """The configured debouncer ``name``, or None."""
        with self._lock:
            return self._debouncers.get(name)

    def debouncer_names(self) -> list[str]:
        with self._lock:
            return sorted(self._debouncers)
