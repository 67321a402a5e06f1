"""The engine's durable schedule registry, seen from the management commands.

Every call goes through the public schedule API of :class:`engine.DBOSClient`, so it works without
a running daemon: work it creates is enqueued, and whichever daemon runs next picks it up.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from engine import DBOSClient, WorkflowSchedule

__all__ = ["backfill", "pause", "resume", "states", "trigger"]

# backfill_schedule counts the ticks strictly between its bounds; the CLI's range includes both.
_JUST_OUTSIDE = timedelta(microseconds=1)


def states(client: DBOSClient) -> dict[str, WorkflowSchedule]:
    """Every schedule registered in the database, by name."""
    return {s["schedule_name"]: s for s in client.list_schedules()}


def pause(client: DBOSClient, name: str) -> None:
    client.pause_schedule(name)


def resume(client: DBOSClient, name: str) -> None:
    client.resume_schedule(name)


def trigger(client: DBOSClient, name: str) -> str:
    """Enqueue one run now; returns its workflow ID."""
    return client.trigger_schedule(name).workflow_id


def backfill(client: DBOSClient, name: str, start: datetime, end: datetime) -> list[str]:
    """Enqueue the runs of the ticks in [start, end]; returns their workflow IDs."""
    handles = client.backfill_schedule(name, start - _JUST_OUTSIDE, end + _JUST_OUTSIDE)
    return [h.workflow_id for h in handles]
