"""The programmatic scheduling API (the daemon's): module-level functions over the scheduler of
the launched DBOS (``get_scheduler``), or, given a ``client``, over a client's database with no
scheduler running. ``engine.runtime.scheduler`` re-exports every name here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from engine.error import DBOSInvalidArgumentError, DBOSNotLaunchedError
from engine.runtime.current import current_runtime
from engine.runtime.schedule_admin import (
    OfflineAccess,
    ScheduleAdmin,
    ScheduleDefinition,
    ScheduleState,
    trigger_workflow_id,
)
from engine.runtime.tick_firing import now_utc, wake_queues

if TYPE_CHECKING:
    from engine.runtime.executor import Runtime
    from engine.runtime.scheduler import Scheduler

__all__ = [
    "backfill_schedule",
    "delete_schedule",
    "get_scheduler",
    "next_fire_times",
    "pause_schedule",
    "resume_schedule",
    "schedule_state",
    "schedule_states",
    "set_schedules",
    "trigger_schedule",
    "upsert_schedule",
]


def get_scheduler(runtime: Runtime | None = None) -> Scheduler:
    """The scheduler of ``runtime`` (by default, of the launched DBOS)."""
    if runtime is None:
        runtime = current_runtime()
    scheduler = runtime.scheduler
    if scheduler is None or runtime.stopping.is_set():
        raise DBOSNotLaunchedError("the scheduler is not running (call DBOS.launch() first)")
    return scheduler


def set_schedules(definitions: Sequence[ScheduleDefinition]) -> None:
    """Replace the managed schedules (those from configuration) at once.

    Validation happens first: if any definition is invalid, nothing changes. Schedules kept with
    an identical definition keep their timers; new or changed ones catch up per their policy.
    ``@DBOS.scheduled`` workflows are not affected.
    """
    for definition in definitions:
        if not isinstance(definition, ScheduleDefinition):
            raise DBOSInvalidArgumentError(
                f"set_schedules takes ScheduleDefinition objects, got {definition!r}"
            )
    get_scheduler().set_managed(list(definitions))


def upsert_schedule(definition: ScheduleDefinition) -> None:
    """Create a managed schedule, or replace the one with the same name."""
    if not isinstance(definition, ScheduleDefinition):
        raise DBOSInvalidArgumentError(
            f"upsert_schedule takes a ScheduleDefinition, got {definition!r}"
        )
    scheduler = get_scheduler()
    others = [d for d in scheduler.managed() if d.name != definition.name]
    scheduler.set_managed([*others, definition])


def delete_schedule(name: str) -> None:
    """Remove a managed schedule: it stops firing, and its pause state is forgotten."""
    scheduler = get_scheduler()
    current = scheduler.managed()
    if name not in {d.name for d in current}:
        known = ", ".join(sorted(d.name for d in current)) or "none"
        raise DBOSInvalidArgumentError(
            f"no managed schedule named {name!r} (managed schedules: {known})"
        )
    scheduler.set_managed([d for d in current if d.name != name])


def _admin(client: OfflineAccess | None) -> ScheduleAdmin:
    return ScheduleAdmin.from_client(client) if client is not None else get_scheduler().admin


def pause_schedule(name: str, *, client: OfflineAccess | None = None) -> None:
    """Durably pause a schedule: its ticks are skipped until it is resumed.

    With ``client``, works on that client's database without a running scheduler (the running
    daemons see the flag at their next tick).
    """
    _admin(client).pause(name)


def resume_schedule(name: str, *, client: OfflineAccess | None = None) -> None:
    """Resume a paused schedule; ticks that came due while paused do not run."""
    _admin(client).resume(name)


def trigger_schedule(name: str, *, client: OfflineAccess | None = None) -> str:
    """Run the schedule's workflow now, outside its ticks; returns the new workflow's ID.

    The ID (``sched-<name>-trigger-<hex>``) never collides with a tick's, and overlap policies do
    not apply. In a launched process the run goes to the schedule's queue, or starts here. With
    ``client`` it is enqueued (on the schedule's queue, or the internal queue every executor
    serves) for a daemon to run.
    """
    if client is not None:
        return ScheduleAdmin.from_client(client).trigger(name)
    scheduler = get_scheduler()
    definition = scheduler.admin.definition(name)
    workflow_id = trigger_workflow_id(name)
    now = now_utc(scheduler.runtime)
    scheduler.firing.start_run(definition, workflow_id, now, definition.queue_name)
    return workflow_id


def backfill_schedule(
    name: str, start: datetime, end: datetime, *, client: OfflineAccess | None = None
) -> list[str]:
    """Enqueue every tick in [start, end] (both included); returns their tick workflow IDs.

    Tick IDs are deterministic, so ticks that already ran, or were backfilled before, run nothing
    new. Raises if start > end or the range holds more than ``MAX_BACKFILL_TICKS`` ticks.
    """
    ids = _admin(client).backfill(name, start, end)
    if client is None:
        wake_queues(get_scheduler().runtime)
    return ids


def schedule_states(*, client: OfflineAccess | None = None) -> list[ScheduleState]:
    """Every schedule in the database with its next fire time and last run."""
    return _admin(client).states()


def schedule_state(name: str, *, client: OfflineAccess | None = None) -> ScheduleState:
    """One schedule's state; raises DBOSInvalidArgumentError naming the known ones if unknown."""
    return _admin(client).state(name)


def next_fire_times(
    name: str, count: int, *, client: OfflineAccess | None = None
) -> list[datetime]:
    """The next ``count`` nominal ticks of a schedule (1 to 1000)."""
    return _admin(client).next_fire_times(name, count)
