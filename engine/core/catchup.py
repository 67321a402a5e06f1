"""What to run after downtime (catch-up), on overlap, and for an explicit backfill.

Pure functions over :class:`~engine.core.cron.CronSchedule`; the caller passes ``now``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import TypeVar

from engine.core.cron import CronSchedule
from engine.error import DBOSInvalidArgumentError

__all__ = [
    "MAX_BACKFILL_TICKS",
    "MAX_CATCHUP_HARD_LIMIT",
    "CatchupPolicy",
    "OverlapPolicy",
    "backfill_ticks",
    "missed_ticks",
    "parse_catchup_policy",
    "parse_overlap_policy",
]

#: Absolute bound on the ticks one catch-up may start, whatever ``max_catchup`` says, so that a
#: long outage of a per-second schedule cannot flood the queue.
MAX_CATCHUP_HARD_LIMIT: int = 1000

#: Most ticks a single backfill request may cover; longer ranges must be split.
MAX_BACKFILL_TICKS: int = 10_000

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
