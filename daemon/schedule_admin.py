"""The engine's durable schedule registry, seen from the management commands.

Every call goes through :class:`engine.runtime.schedule_admin.ScheduleAdmin` on a
:class:`engine.DBOSClient`, so it works without a running daemon: work it creates is enqueued,
and whichever daemon runs next picks it up.
"""

from __future__ import annotations

from datetime import datetime

from engine import DBOSClient
from engine.runtime.schedule_admin import ScheduleAdmin, ScheduleState

__all__ = ["backfill", "pause", "resume", "states", "trigger"]


def states(client: DBOSClient) -> dict[str, ScheduleState]:
    """Every schedule registered in the database, by name."""
    return {state.name: state for state in ScheduleAdmin.from_client(client).states()}


def pause(client: DBOSClient, name: str) -> None:
    ScheduleAdmin.from_client(client).pause(name)


def resume(client: DBOSClient, name: str) -> None:
    ScheduleAdmin.from_client(client).resume(name)


def trigger(client: DBOSClient, name: str) -> str:
    """Enqueue one run now; returns its workflow ID."""
    return ScheduleAdmin.from_client(client).trigger(name)


def backfill(client: DBOSClient, name: str, start: datetime, end: datetime) -> list[str]:
    """Enqueue the runs of the ticks in [start, end]; returns their workflow IDs."""
    return ScheduleAdmin.from_client(client).backfill(name, start, end)
