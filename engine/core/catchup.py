"""What to run after a gap in firing (catch-up), on overlap, and for an explicit backfill.

Pure functions over :class:`~engine.core.cron.CronSchedule`; the caller passes ``now``. A gap is
any time in which a schedule's ticks did not fire: the process was down, the database was
unreachable, or the process stalled (a suspended VM). Every gap follows the same policy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum, StrEnum
from typing import Any, TypeVar

from engine.core.cron import CronSchedule
from engine.error import DBOSInvalidArgumentError

__all__ = [
    "DROPPED_COUNT_LIMIT",
    "MAX_BACKFILL_TICKS",
    "MAX_CATCHUP_HARD_LIMIT",
    "MIN_TICK_SPACING_SECONDS",
    "CatchupPlan",
    "CatchupPolicy",
    "Overlap",
    "OverlapPolicy",
    "backfill_ticks",
    "fell_behind",
    "missed_ticks",
    "overlap_action",
    "parse_catchup_policy",
    "parse_overlap_policy",
    "plan_catchup",
    "previous_run_verdict",
]

#: Absolute bound on the ticks one catch-up may start, whatever ``max_catchup`` says, so that a
#: long outage of a per-second schedule cannot flood the queue.
MAX_CATCHUP_HARD_LIMIT: int = 1000

#: Most ticks a single backfill request may cover; longer ranges must be split.
MAX_BACKFILL_TICKS: int = 10_000

#: Two ticks of one schedule are at least this far apart: crontab's finest field is the second.
MIN_TICK_SPACING_SECONDS: float = 1.0

#: Dropped ticks of a gap are counted one by one up to this many; beyond, the count is estimated
#: from their spacing (a per-second schedule down for a month has millions), so that a start of
#: ten thousand schedules after a long downtime spends a few cron steps on each, not thousands.
DROPPED_COUNT_LIMIT: int = 20

_ONE_MICROSECOND = timedelta(microseconds=1)


class CatchupPolicy(StrEnum):
    """Which ticks missed while the daemon was down are run when it comes back."""

    NONE = "none"  # skip them all; resume with the next future tick
    LATEST = "latest"  # run only the most recent missed tick
    ALL = "all"  # run every missed tick (bounded by the window and the counts)


class OverlapPolicy(StrEnum):
    """What happens when a tick comes due while the previous run is still going."""

    SKIP = "skip"  # drop the new tick
    BUFFER_ONE = "buffer_one"  # keep at most one waiting run; later ticks are dropped
    BUFFER_ALL = "buffer_all"  # queue every tick and run them one after another
    CANCEL_OTHER = "cancel_other"  # cancel the running one, then start the new tick
    ALLOW = "allow"  # run concurrently


_Policy = TypeVar("_Policy", CatchupPolicy, OverlapPolicy)


def _parse_policy(kind: str, enum: type[_Policy], value: str) -> _Policy:
    if isinstance(value, enum):
        return value
    if isinstance(value, str):
        normalized = value.strip().lower().replace("-", "_")
        for member in enum:
            if member.value == normalized:
                return member
    valid = ", ".join(member.value for member in enum)
    raise DBOSInvalidArgumentError(f"unknown {kind} policy {value!r} (use one of: {valid})")


def parse_catchup_policy(value: str) -> CatchupPolicy:
    """Read a catch-up policy name (case-insensitive): ``none``, ``latest`` or ``all``."""
    return _parse_policy("catch-up", CatchupPolicy, value)


def parse_overlap_policy(value: str) -> OverlapPolicy:
    """Read an overlap policy name (case-insensitive; ``buffer-one`` also accepted)."""
    return _parse_policy("overlap", OverlapPolicy, value)


def _require_aware(value: datetime, name: str) -> None:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise DBOSInvalidArgumentError(f"{name} must be a timezone-aware datetime, got {value!r}")


def missed_ticks(
    schedule: CronSchedule,
    last_fired: datetime | None,
    now: datetime,
    policy: CatchupPolicy,
    catchup_window: timedelta | None,
    max_catchup: int,
) -> list[datetime]:
    """Ticks in (last_fired, now] that were missed during downtime and should run now.

    * ``NONE`` -> ``[]``.
    * ``LATEST`` -> the most recent missed tick, if any.
    * ``ALL`` -> the missed ticks, the most recent ``max_catchup`` of them (never more than
      :data:`MAX_CATCHUP_HARD_LIMIT`), ascending.

    With ``catchup_window``, only ticks at or after ``now - catchup_window`` count (for both
    LATEST and ALL): a tick missed longer ago than that is dropped. A brand-new schedule
    (``last_fired is None``) does not backfill history and gets ``[]``; so does a
    ``last_fired`` at or after ``now`` (e.g. a clock that stepped back).
    """
    policy = parse_catchup_policy(policy)
    _require_aware(now, "now")
    if last_fired is not None:
        _require_aware(last_fired, "last_fired")
    if catchup_window is not None and (
        not isinstance(catchup_window, timedelta) or catchup_window <= timedelta(0)
    ):
        raise DBOSInvalidArgumentError(
            f"catchup_window must be a positive timedelta or None, got {catchup_window!r}"
        )
    if isinstance(max_catchup, bool) or not isinstance(max_catchup, int) or max_catchup < 1:
        raise DBOSInvalidArgumentError(
            f"max_catchup must be a positive integer, got {max_catchup!r}"
        )
    if policy is CatchupPolicy.NONE or last_fired is None or last_fired >= now:
        return []
    # A tick exactly `catchup_window` old is still inside the window.
    cutoff = None if catchup_window is None else now - catchup_window
    count = 1 if policy is CatchupPolicy.LATEST else min(max_catchup, MAX_CATCHUP_HARD_LIMIT)
    return _latest_ticks(schedule, last_fired, cutoff, now, count)


def _latest_ticks(
    schedule: CronSchedule,
    last_fired: datetime,
    cutoff: datetime | None,
    now: datetime,
    count: int,
) -> list[datetime]:
    """Up to `count` most recent ticks t with last_fired < t <= now and t >= cutoff, ascending.

    Walks backwards from `now` so that the cost depends on `count`, not on how long the outage
    was (a per-second schedule down for a month has millions of missed ticks).
    """
    found: list[datetime] = []
    tick = schedule.previous_at_or_before(now)
    while (
        tick is not None
        and tick > last_fired
        and (cutoff is None or tick >= cutoff)
        and len(found) < count
    ):
        found.append(tick)
        tick = schedule.previous_at_or_before(tick - _ONE_MICROSECOND)
    found.reverse()
    return found


def fell_behind(schedule: CronSchedule, tick: datetime, lateness_seconds: float) -> bool:
    """Whether a regular tick found ``lateness_seconds`` after its fire time shows a gap.

    It does when it is late by at least its interval, so that its successor is due too: the
    process stalled or its VM was suspended. Firing the missed ticks one after another would be
    a burst that ignores the catch-up policy, so the caller catches up instead. A tick late by
    less than its interval just fires late.
    """
    if lateness_seconds < MIN_TICK_SPACING_SECONDS:
        return False  # the usual case, without cron arithmetic: no interval is shorter
    interval = (schedule.next_after(tick) - tick).total_seconds()
    return lateness_seconds >= interval


@dataclass(frozen=True, slots=True)
class CatchupPlan:
    """The catch-up decision for one gap in a schedule's firing.

    ``gap_start`` is the last tick handled (the watermark; None if the schedule never fired),
    ``gap_end`` the moment of the decision. ``run`` holds the missed ticks to start now,
    ascending; ``dropped`` counts the other ticks missed in the gap (extrapolated from their
    spacing when ``dropped_estimated``). A paused schedule runs nothing and counts nothing.
    """

    policy: CatchupPolicy
    gap_start: datetime | None
    gap_end: datetime
    run: tuple[datetime, ...]
    dropped: int = 0
    dropped_estimated: bool = False
    paused: bool = False

    @property
    def missed(self) -> int:
        """How many ticks came due in the gap (run now or dropped)."""
        return len(self.run) + self.dropped

    def describe(self, name: str, cause: str) -> str:
        """One log line: the schedule, the gap and its cause, the policy, the ticks run/dropped."""
        gap = _gap_text(self.gap_start, self.gap_end)
        if self.paused:
            return f"schedule {name!r} is paused: nothing is caught up for the gap {gap} ({cause})"
        about = "about " if self.dropped_estimated else ""
        return (
            f"schedule {name!r}: {self.missed} tick(s) missed in the gap {gap} ({cause}); "
            f"catch-up policy {self.policy.value!r} runs {_ticks_text(self.run)} and drops "
            f"{about}{self.dropped}"
        )

    def fields(self, name: str, cause: str) -> dict[str, Any]:
        """The same facts as key/value pairs for structured logs."""
        return {
            "schedule": name,
            "cause": cause,
            "policy": self.policy.value,
            "paused": self.paused,
            "gap_start": None if self.gap_start is None else self.gap_start.isoformat(),
            "gap_end": self.gap_end.isoformat(),
            "ticks_run": [tick.isoformat() for tick in self.run],
            "ticks_dropped": self.dropped,
            "ticks_dropped_estimated": self.dropped_estimated,
        }


def plan_catchup(
    schedule: CronSchedule,
    last_fired: datetime | None,
    now: datetime,
    policy: CatchupPolicy,
    catchup_window: timedelta | None,
    max_catchup: int,
    paused: bool = False,
) -> CatchupPlan:
    """Decide one gap in firing, (last_fired, now]: what runs is :func:`missed_ticks` (the same
    rule at a start, after an outage and after a stall), and the rest is counted as dropped.

    A paused schedule catches up nothing: resuming it moves its watermark to now anyway.
    """
    policy = parse_catchup_policy(policy)
    effective = CatchupPolicy.NONE if paused else policy
    run = missed_ticks(schedule, last_fired, now, effective, catchup_window, max_catchup)
    if paused or last_fired is None or last_fired >= now:
        return CatchupPlan(policy, last_fired, now, tuple(run), paused=paused)
    # The most recent missed ticks are the ones that run, so every dropped tick is older.
    until = run[0] - _ONE_MICROSECOND if run else now
    dropped, estimated = _count_ticks(schedule, last_fired, until)
    return CatchupPlan(policy, last_fired, now, tuple(run), dropped, estimated)


def _count_ticks(schedule: CronSchedule, after: datetime, until: datetime) -> tuple[int, bool]:
    """Ticks in (after, until]: exact up to DROPPED_COUNT_LIMIT, beyond that extrapolated."""
    ticks = schedule.ticks_between(after, until, DROPPED_COUNT_LIMIT + 1)
    if len(ticks) <= DROPPED_COUNT_LIMIT:
        return len(ticks), False
    # Ticks spaced like the counted ones, from the first through `until`.
    spacing = (ticks[-1] - ticks[0]).total_seconds() / (len(ticks) - 1)
    return 1 + math.floor((until - ticks[0]).total_seconds() / spacing), True


def _gap_text(start: datetime | None, end: datetime) -> str:
    if start is None:
        return f"until {end.isoformat()}"
    return f"{start.isoformat()} .. {end.isoformat()} ({(end - start).total_seconds():.1f} s)"


def _ticks_text(ticks: tuple[datetime, ...]) -> str:
    if not ticks:
        return "no tick"
    if len(ticks) == 1:
        return f"1 tick ({ticks[0].isoformat()})"
    return f"{len(ticks)} ticks ({ticks[0].isoformat()} .. {ticks[-1].isoformat()})"


def previous_run_verdict(
    status: str | None,
    *,
    queued: bool,
    executor_id: str | None,
    run_version: str | None,
    owner_version: str | None,
    owner_heartbeat_ms: int | None,
    now_ms: int,
    stale_after_ms: int,
    me: str,
    my_version: str,
) -> tuple[bool, str | None]:
    """Whether a schedule's previous run counts as still going, for its overlap policy.

    Returns ``(running, reason)``: ``reason`` says why an unfinished run is not waited on (no
    live executor would finish it, so waiting would stop the schedule for good). An unfinished
    run counts when it is ENQUEUED on a queue that workers serve (``queued``), or PENDING on an
    executor that will finish it: this process (``me``, running ``my_version``), or an executor
    whose last heartbeat (``owner_heartbeat_ms``, None when it has no row) is at most
    ``stale_after_ms`` old and whose version (``owner_version``) is the run's (``run_version``).
    """
    if status == "ENQUEUED":
        return (True, None) if queued else (False, "it is ENQUEUED on no queue a worker serves")
    if status != "PENDING":
        return False, None
    if executor_id is None:
        return False, "it is PENDING on no executor"
    if executor_id == me:
        owner_version = my_version  # this process is alive: only its version matters
    elif owner_heartbeat_ms is None:
        return False, f"its executor {executor_id!r} is not alive (no heartbeat recorded)"
    elif now_ms - owner_heartbeat_ms > stale_after_ms:
        silent = (now_ms - owner_heartbeat_ms) / 1000
        return False, (
            f"its executor {executor_id!r} sent no heartbeat for {silent:.0f} s "
            f"(executor timeout {stale_after_ms / 1000:g} s)"
        )
    if owner_version != run_version:
        return False, (
            f"it belongs to application version {run_version!r}, but its executor "
            f"{executor_id!r} runs version {owner_version!r}"
        )
    return True, None


def backfill_ticks(schedule: CronSchedule, start: datetime, end: datetime) -> list[datetime]:
    """All ticks in [start, end] (both inclusive), ascending, as aware UTC datetimes.

    Raises :class:`DBOSInvalidArgumentError` if ``start`` is after ``end`` or if the range
    holds more than :data:`MAX_BACKFILL_TICKS` ticks.
    """
    _require_aware(start, "start")
    _require_aware(end, "end")
    if start > end:
        raise DBOSInvalidArgumentError(
            f"backfill start {start.isoformat()} is after end {end.isoformat()} (swap them)"
        )
    # ticks_between excludes its start; step back one microsecond to include a tick at start.
    ticks = schedule.ticks_between(start - _ONE_MICROSECOND, end, MAX_BACKFILL_TICKS + 1)
    if len(ticks) > MAX_BACKFILL_TICKS:
        raise DBOSInvalidArgumentError(_too_long_message(start, end, ticks[0], ticks[-2]))
    return ticks


def _too_long_message(
    start: datetime, end: datetime, first: datetime, last_allowed: datetime
) -> str:
    # Counting every tick of a huge range could itself take very long, so the count is
    # extrapolated from the spacing of the first MAX_BACKFILL_TICKS ticks.
    covered = (last_allowed - first).total_seconds()
    span = (end - first).total_seconds()
    estimate = 1 + round((MAX_BACKFILL_TICKS - 1) * span / covered) if covered > 0 else 0
    about = f", about {estimate}" if estimate > MAX_BACKFILL_TICKS else ""
    return (
        f"backfill range {start.isoformat()} .. {end.isoformat()} holds more than "
        f"{MAX_BACKFILL_TICKS} ticks{about}; the limit is {MAX_BACKFILL_TICKS} "
        f"(MAX_BACKFILL_TICKS): use a shorter range, e.g. end it at {last_allowed.isoformat()}, "
        "and backfill the rest in further requests"
    )


class Overlap(Enum):
    """What to do with a due tick (see :func:`overlap_action`)."""

    START = "start"
    SKIP = "skip"
    HOLD = "hold"
    CANCEL_AND_START = "cancel_and_start"


def overlap_action(policy: OverlapPolicy, running: bool, held: int) -> Overlap:
    """What to do with a due tick, given whether the previous run still goes and how many wait."""
    if policy is OverlapPolicy.ALLOW:
        return Overlap.START
    if policy is OverlapPolicy.CANCEL_OTHER:
        return Overlap.CANCEL_AND_START if running else Overlap.START
    if policy is OverlapPolicy.SKIP:
        return Overlap.SKIP if running else Overlap.START
    if not running and held == 0:
        return Overlap.START
    if policy is OverlapPolicy.BUFFER_ONE and held >= 1:
        return Overlap.SKIP
    return Overlap.HOLD
