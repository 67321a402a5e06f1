"""Schedule definitions, and managing schedules from any process (no scheduler needed).

:class:`ScheduleAdmin` needs only a :class:`SystemStore` and a :class:`Codec`: the CLI lists,
pauses, resumes, triggers and backfills schedules against the database while no daemon runs.
Work it creates is ENQUEUED (on the schedule's queue, or on the internal queue every executor
serves), so whichever daemon runs next picks it up.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from engine.core.catchup import (
    MAX_CATCHUP_HARD_LIMIT,
    CatchupPolicy,
    OverlapPolicy,
    backfill_ticks,
    parse_catchup_policy,
    parse_overlap_policy,
)
from engine.core.cron import CronSchedule, tick_workflow_id
from engine.error import DBOSInvalidArgumentError
from engine.runtime.internal_queue import INTERNAL_QUEUE_NAME
from engine.serialization import Codec
from engine.storage.schedules import Registration, ScheduleRow, ScheduleStore
from engine.storage.store import SystemStore, WorkflowRow


class OfflineAccess(Protocol):
    """What managing schedules without a scheduler needs (a ``DBOSClient`` is one)."""

    @property
    def store(self) -> SystemStore: ...

    @property
    def codec(self) -> Codec: ...

    @property
    def clock(self) -> Callable[[], float]: ...


SOURCE_DECORATOR = "decorator"
SOURCE_MANAGED = "managed"
#: Schedules of the public registry API (DBOS.create_schedule...): stored, and installed by every
#: launched scheduler from the database (engine.schedules_api).
SOURCE_REGISTRY = "registry"
DEFAULT_MAX_CATCHUP = 10


@dataclass(frozen=True)
class ScheduleDefinition:
    """One schedule: run ``workflow_name`` at each tick of ``cron`` in ``timezone``.

    The workflow is called with ``(scheduled_time, actual_time, *args, **kwargs)``, both aware
    UTC datetimes; ``scheduled_time`` is the nominal tick. Defaults: catch-up ``latest`` (one run
    for the most recent missed tick), overlap ``skip``. Invalid values raise
    :class:`~engine.error.DBOSInvalidArgumentError` (a bad crontab raises its subclass
    ``DBOSInvalidCrontabError``).
    """

    name: str
    cron: str
    workflow_name: str
    timezone: str = "UTC"
    catchup: CatchupPolicy | str = CatchupPolicy.LATEST
    catchup_window_seconds: float | None = None
    #: At most this many missed ticks run with catch-up ``all`` (None: DEFAULT_MAX_CATCHUP).
    max_catchup: int | None = None
    overlap: OverlapPolicy | str = OverlapPolicy.SKIP
    jitter_seconds: float = 0.0
    queue_name: str | None = None
    #: Workflow timeout of each run (for queued runs the clock starts at dequeue).
    timeout_seconds: float | None = None
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    #: Paused by configuration. The durable pause flag (pause/resume) is separate; either pauses.
    paused: bool = False
    #: Whether the workflow gets ``actual_time`` after ``scheduled_time`` (False for the registry
    #: API, whose workflows take ``(scheduled_time, context)`` as in the reference).
    pass_actual_time: bool = True
    schedule: CronSchedule = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_text("name", self.name)
        _check_text("workflow_name", self.workflow_name)
        if self.queue_name is not None:
            _check_text("queue_name", self.queue_name)
        object.__setattr__(self, "schedule", CronSchedule.parse(self.cron, self.timezone))
        object.__setattr__(self, "catchup", parse_catchup_policy(self.catchup))
        object.__setattr__(self, "overlap", parse_overlap_policy(self.overlap))
        _check_seconds("catchup_window_seconds", self.catchup_window_seconds, allow_none=True)
        _check_seconds("jitter_seconds", self.jitter_seconds, allow_zero=True)
        _check_seconds("timeout_seconds", self.timeout_seconds, allow_none=True)
        if self.max_catchup is None:
            object.__setattr__(self, "max_catchup", DEFAULT_MAX_CATCHUP)
        if (
            isinstance(self.max_catchup, bool)
            or not isinstance(self.max_catchup, int)
            or not 1 <= self.max_catchup <= MAX_CATCHUP_HARD_LIMIT
        ):
            raise DBOSInvalidArgumentError(
                f"schedule {self.name!r}: max_catchup must be an integer from 1 to "
                f"{MAX_CATCHUP_HARD_LIMIT}, got {self.max_catchup!r}"
            )
        object.__setattr__(self, "args", tuple(self.args))
        object.__setattr__(self, "kwargs", dict(self.kwargs))

    @property
    def catchup_policy(self) -> CatchupPolicy:
        return parse_catchup_policy(self.catchup)

    @property
    def overlap_policy(self) -> OverlapPolicy:
        return parse_overlap_policy(self.overlap)

    @property
    def max_catchup_count(self) -> int:
        return self.max_catchup if self.max_catchup is not None else DEFAULT_MAX_CATCHUP

    @property
    def catchup_window(self) -> timedelta | None:
        s = self.catchup_window_seconds
        return None if s is None else timedelta(seconds=s)

    def to_json(self) -> str:
        """The definition without its arguments (those are stored with the codec)."""
        return json.dumps(
            {
                "cron": self.cron,
                "workflow_name": self.workflow_name,
                "timezone": self.timezone,
                "catchup": str(self.catchup),
                "catchup_window_seconds": self.catchup_window_seconds,
                "max_catchup": self.max_catchup,
                "overlap": str(self.overlap),
                "jitter_seconds": self.jitter_seconds,
                "queue_name": self.queue_name,
                "timeout_seconds": self.timeout_seconds,
                "paused": self.paused,
                **({} if self.pass_actual_time else {"pass_actual_time": False}),
            },
            sort_keys=True,
        )

    @classmethod
    def from_row(cls, row: ScheduleRow, codec: Codec) -> ScheduleDefinition:
        data = json.loads(row.definition)
        extra = codec.decode_inputs(row.inputs) if row.inputs is not None else None
        return cls(
            name=row.name,
            args=tuple(extra["args"]) if extra else (),
            kwargs=dict(extra["kwargs"]) if extra else {},
            **data,
        )

    def registration(self, source: str, codec: Codec) -> Registration:
        inputs = None
        if self.args or self.kwargs:
            inputs = codec.encode_inputs(self.workflow_name, self.args, self.kwargs)
        return Registration(self.name, source, self.to_json(), inputs)

    def tick_inputs(
        self, scheduled: datetime, actual: datetime
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if not self.pass_actual_time:
            return (scheduled, *self.args), dict(self.kwargs)
        return (scheduled, actual, *self.args), dict(self.kwargs)


@dataclass(frozen=True)
class ScheduleState:
    """A schedule as ``schedule_states()`` reports it."""

    name: str
    source: str  # "managed" (set_schedules) or "decorator" (@DBOS.scheduled)
    cron: str
    timezone: str
    workflow_name: str
    queue_name: str | None
    catchup: str
    overlap: str
    paused: bool
    next_fire_time: datetime | None  # the next nominal tick (None while paused)
    last_tick: datetime | None  # catch-up watermark: last tick handled, or creation/resume time
    last_workflow_id: str | None
    last_status: str | None


class ScheduleAdmin:
    """Schedule management over the system database; usable without a running scheduler."""

    def __init__(
        self, store: SystemStore, codec: Codec, clock: Callable[[], float] = time.time
    ) -> None:
        self.schedules = ScheduleStore(store)
        self.codec = codec
        self.clock = clock

    @classmethod
    def from_client(cls, client: OfflineAccess) -> ScheduleAdmin:
        return cls(client.store, client.codec, client.clock)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), tz=UTC)

    # -- reading ----------------------------------------------------------------------------------

    def states(self) -> list[ScheduleState]:
        return [self._state(row) for row in self.schedules.list_all()]

    def state(self, name: str) -> ScheduleState:
        return self._state(self._row(name))

    def definition(self, name: str) -> ScheduleDefinition:
        return ScheduleDefinition.from_row(self._row(name), self.codec)

    def next_fire_times(self, name: str, count: int) -> list[datetime]:
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 1000:
            raise DBOSInvalidArgumentError(
                f"count must be an integer from 1 to 1000, got {count!r}"
            )
        schedule = self.definition(name).schedule
        ticks: list[datetime] = []
        cursor = self.now()
        for _ in range(count):
            cursor = schedule.next_after(cursor)
            ticks.append(cursor)
        return ticks

    def _row(self, name: str) -> ScheduleRow:
        row = self.schedules.get(name)
        if row is None:
            known = ", ".join(r.name for r in self.schedules.list_all()) or "none"
            raise DBOSInvalidArgumentError(f"no schedule named {name!r} (known schedules: {known})")
        return row

    def _state(self, row: ScheduleRow) -> ScheduleState:
        data = json.loads(row.definition)
        paused = row.paused or bool(data.get("paused"))
        next_fire = None
        if not paused:
            schedule = CronSchedule.parse(data["cron"], data["timezone"])
            next_fire = schedule.next_after(self.now())
        last = row.last_tick_ms
        return ScheduleState(
            name=row.name,
            source=row.source,
            cron=data["cron"],
            timezone=data["timezone"],
            workflow_name=data["workflow_name"],
            queue_name=data.get("queue_name"),
            catchup=data["catchup"],
            overlap=data["overlap"],
            paused=paused,
            next_fire_time=next_fire,
            last_tick=None if last is None else datetime.fromtimestamp(last / 1000, tz=UTC),
            last_workflow_id=row.last_workflow_id,
            last_status=row.last_status,
        )

    # -- changing ---------------------------------------------------------------------------------

    def pause(self, name: str) -> None:
        """Pause durably: ticks are skipped (not caught up later) until resumed."""
        if not self.schedules.set_paused(name, True):
            self._row(name)

    def resume(self, name: str) -> None:
        """Resume; ticks that came due while paused are not run."""
        if not self.schedules.set_paused(name, False):
            self._row(name)

    def trigger(self, name: str) -> str:
        """Enqueue one extra run now, with a fresh ID that never collides with a tick's."""
        defn = self.definition(name)
        now = self.now()
        row = self.queued_row(defn, trigger_workflow_id(name), now, now)
        self.schedules.insert_enqueued([row])
        return row.workflow_uuid

    def backfill(self, name: str, start: datetime, end: datetime) -> list[str]:
        """Enqueue every tick in [start, end] under its tick ID; returns all the tick IDs.

        Ticks that already ran (as ticks, or in an earlier backfill) run nothing new. At most
        ``MAX_BACKFILL_TICKS`` ticks per call.
        """
        defn = self.definition(name)
        ticks = backfill_ticks(defn.schedule, start, end)
        now = self.now()
        rows = [self.queued_row(defn, tick_workflow_id(name, t), t, now) for t in ticks]
        self.schedules.insert_enqueued(rows)
        return [r.workflow_uuid for r in rows]

    def queued_row(
        self, defn: ScheduleDefinition, workflow_id: str, scheduled: datetime, actual: datetime
    ) -> WorkflowRow:
        args, kwargs = defn.tick_inputs(scheduled, actual)
        now_ms = int(actual.timestamp() * 1000)
        return WorkflowRow(
            workflow_uuid=workflow_id,
            status="ENQUEUED",
            name=defn.workflow_name,
            inputs=self.codec.encode_inputs(defn.workflow_name, args, kwargs),
            created_at=now_ms,
            updated_at=now_ms,
            queue_name=defn.queue_name or INTERNAL_QUEUE_NAME,
            timeout_ms=None if defn.timeout_seconds is None else int(defn.timeout_seconds * 1000),
        )


def trigger_workflow_id(name: str) -> str:
    return f"sched-{name}-trigger-{uuid.uuid4().hex}"


def _check_text(label: str, value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise DBOSInvalidArgumentError(
            f"schedule {label} must be a non-empty string, got {value!r}"
        )


def _check_seconds(
    label: str, value: object, *, allow_none: bool = False, allow_zero: bool = False
) -> None:
    if value is None and allow_none:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
        or (value == 0 and not allow_zero)
    ):
        bound = ">= 0" if allow_zero else "> 0"
        raise DBOSInvalidArgumentError(
            f"schedule {label} must be a number of seconds {bound}, got {value!r}"
        )
