"""Crontab expressions and their fire times, with explicit daylight-saving semantics.

A schedule is a crontab expression evaluated on the wall clock of an IANA time zone. Fire
times ("ticks") are returned as aware UTC datetimes. The DST rules (see docs/scheduling.md):

* Fixed-time schedules (the hour field is restricted, e.g. ``30 2 * * *``) name wall-clock
  times. A wall time that does not exist (spring-forward gap) fires once at the first instant
  after the gap; a wall time that occurs twice (fall-back) fires once, at its first occurrence.
  Several gap times that land on the same instant fire once.
* Interval schedules (the hour field is ``*``, e.g. ``*/5 * * * *``) follow elapsed time: they
  fire at every instant whose wall time matches, so a repeated hour fires again and a skipped
  hour simply has no instants.

Implementation: matching wall times are found by jumping field by field (never by scanning
minutes; parsing and that matching are in ``engine.core.cron_fields``), and the zone's time
line is cut into segments of constant UTC offset, cached per zone and year. Inside one segment,
wall time and UTC differ by a constant, so the two rules become simple interval arithmetic on
each segment.

Nothing here reads the clock: every instant is an argument.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import math
import zoneinfo
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from engine.core.cron_fields import CronFields, parse_expression
from engine.error import DBOSInvalidArgumentError, DBOSUnknownTimezoneError

__all__ = ["CronSchedule", "deterministic_jitter", "tick_workflow_id"]

_ONE_SECOND = timedelta(seconds=1)
# Wall times and instants are compared with exclusive bounds turned inclusive by this step;
# datetimes have microsecond resolution, so it is the smallest possible step.
_EPSILON = timedelta(microseconds=1)

# The longest gap between two ticks of a valid schedule is 8 years (29 February across a
# century that is not a leap year, e.g. 2096 -> 2104). Searches stop after this horizon, which
# guarantees termination whatever the input.
_SEARCH_HORIZON = timedelta(days=366 * 9)

# Instants outside this range are rejected: the transition sampling below is only verified
# from 1900 on, and the search horizon must not overflow datetime.max.
_MIN_INSTANT = datetime(1900, 1, 1)
_MAX_INSTANT = datetime(9000, 1, 1)

# No zone in tzdata changes its UTC offset twice within about 4 days (checked over 1900-2100),
# so sampling the offset every 12 hours finds every transition; each one is then located to
# the second by bisection.
_OFFSET_SAMPLE_STEP = timedelta(hours=12)
# UTC offsets stay within -12h..+14h (since 1900), so no two offsets differ by more than 26h.
_MAX_OFFSET_SPREAD = timedelta(hours=26)


# --------------------------------------------------------------------------------------------
# Time zones: segments of constant UTC offset
# --------------------------------------------------------------------------------------------


def _load_zone(name: str) -> ZoneInfo:
    if isinstance(name, str) and name:
        try:
            return ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            pass
    raise DBOSUnknownTimezoneError(
        f"unknown timezone {name!r} (use an IANA name such as 'Europe/Berlin' or 'UTC'"
        f"{_zone_suggestion(name)})"
    )


def _zone_suggestion(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        return ""
    known = zoneinfo.available_timezones()
    folded = {key.lower(): key for key in known}
    if name.strip().lower() in folded:
        return f"; did you mean {folded[name.strip().lower()]!r}?"
    close = difflib.get_close_matches(name, known, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


@dataclass(frozen=True)
class _Segment:
    """A stretch [start, end) of UTC time (naive datetimes) during which the offset is constant.

    Segments are also cut at every 1 January (UTC) so that they can be cached per year; such
    artificial cuts keep the offset unchanged and are harmless to the algorithms below.
    """

    start: datetime
    end: datetime
    offset: timedelta
    year: int
    index: int


def _offset_at(zone: ZoneInfo, instant: datetime) -> timedelta:
    offset = instant.replace(tzinfo=UTC).astimezone(zone).utcoffset()
    assert offset is not None  # ZoneInfo always has an offset
    return offset


def _find_transition(zone: ZoneInfo, before: datetime, after: datetime) -> datetime:
    """First whole second in (before, after] whose offset differs from the offset at before."""
    old = _offset_at(zone, before)
    low, high = 0, int((after - before).total_seconds())
    while high - low > 1:
        middle = (low + high) // 2
        if _offset_at(zone, before + timedelta(seconds=middle)) == old:
            low = middle
        else:
            high = middle
    return before + timedelta(seconds=high)


@functools.lru_cache(maxsize=4096)
def _year_segments(zone_key: str, year: int) -> tuple[_Segment, ...]:
    """Offset segments covering [1 Jan year, 1 Jan year+1) UTC; about 1 ms once per zone-year."""
    zone = ZoneInfo(zone_key)
    start = datetime(year, 1, 1)
    end = datetime(year + 1, 1, 1)
    cuts = [start]
    sample = start
    previous = _offset_at(zone, start)
    while sample < end:
        following = min(sample + _OFFSET_SAMPLE_STEP, end - _ONE_SECOND)
        offset = _offset_at(zone, following)
        if offset != previous:
            cuts.append(_find_transition(zone, sample, following))
        previous = offset
        if following == end - _ONE_SECOND:
            break
        sample = following
    bounds = [*cuts, end]
    return tuple(
        _Segment(bounds[i], bounds[i + 1], _offset_at(zone, bounds[i]), year, i)
        for i in range(len(cuts))
    )


def _segment_at(zone_key: str, instant: datetime) -> _Segment:
    segments = _year_segments(zone_key, instant.year)
    return segments[bisect_right(segments, instant, key=lambda s: s.start) - 1]


def _next_segment(zone_key: str, segment: _Segment) -> _Segment:
    segments = _year_segments(zone_key, segment.year)
    if segment.index + 1 < len(segments):
        return segments[segment.index + 1]
    return _year_segments(zone_key, segment.year + 1)[0]


def _previous_segment(zone_key: str, segment: _Segment) -> _Segment:
    if segment.index > 0:
        return _year_segments(zone_key, segment.year)[segment.index - 1]
    return _year_segments(zone_key, segment.year - 1)[-1]


def _shown_wall_end(zone_key: str, segment: _Segment) -> datetime:
    """The latest wall time (exclusive) the clock has shown before `segment` starts.

    After a fall-back, the new segment starts at a wall time the clock already showed; wall
    times below this bound belong to earlier segments (their first occurrence).
    """
    best = datetime.min
    earlier = segment
    while True:
        earlier = _previous_segment(zone_key, earlier)
        best = max(best, earlier.end + earlier.offset)
        # Segments before `earlier` end by earlier.start, so their wall end is below
        # earlier.start + _MAX_OFFSET_SPREAD; once that is <= best, nothing earlier can matter.
        # In practice this stops after one or two segments.
        if earlier.start + _MAX_OFFSET_SPREAD <= best:
            return best


# --------------------------------------------------------------------------------------------
# The schedule
# --------------------------------------------------------------------------------------------


def _to_naive_utc(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise DBOSInvalidArgumentError(
            f"{name} must be a timezone-aware datetime, got {value!r} "
            "(use e.g. datetime.now(timezone.utc))"
        )
    naive = value.astimezone(UTC).replace(tzinfo=None)
    if not _MIN_INSTANT <= naive < _MAX_INSTANT:
        raise DBOSInvalidArgumentError(
            f"{name} {value.isoformat()} is outside the supported range "
            f"{_MIN_INSTANT.year}-{_MAX_INSTANT.year}"
        )
    return naive


@dataclass(frozen=True)
class CronSchedule:
    """A crontab expression evaluated on the wall clock of one IANA time zone.

    Build it with :meth:`parse` (or the constructor, which validates the same way). Invalid
    expressions raise :class:`DBOSInvalidCrontabError` naming the bad field; unknown zones
    raise :class:`DBOSUnknownTimezoneError`.
    """

    expression: str
    timezone: str = "UTC"
    _fields: CronFields = field(init=False, repr=False, compare=False)
    _elapsed_time: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fields = parse_expression(self.expression)
        _load_zone(self.timezone)
        object.__setattr__(self, "_fields", fields)
        # The interval rule applies when every hour matches (hourly or finer schedules).
        object.__setattr__(self, "_elapsed_time", len(fields.hours) == 24)

    @classmethod
    def parse(cls, expression: str, timezone: str = "UTC") -> CronSchedule:
        """Validate `expression` (5 fields, 6 fields with seconds first, or a macro)."""
        return cls(expression, timezone)

    @property
    def has_seconds(self) -> bool:
        """True for the 6-field form whose first field is the second."""
        return self._fields.has_seconds

    def next_after(self, after: datetime) -> datetime:
        """The first tick strictly after `after` (aware, any zone), as an aware UTC datetime."""
        found = self._next_naive(_to_naive_utc(after, "after"))
        if found is None:
            raise DBOSInvalidArgumentError(
                f"schedule {self.expression!r} has no tick within the supported range "
                f"after {after.isoformat()}"
            )
        return found.replace(tzinfo=UTC)

    def ticks_between(self, start: datetime, end: datetime, limit: int) -> list[datetime]:
        """Ticks t with start < t <= end, ascending, at most `limit` of them (aware UTC)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise DBOSInvalidArgumentError(f"limit must be a positive integer, got {limit!r}")
        low = _to_naive_utc(start, "start")
        high = _to_naive_utc(end, "end")
        if low > high:
            raise DBOSInvalidArgumentError(
                f"start {start.isoformat()} is after end {end.isoformat()} (swap them)"
            )
        ticks: list[datetime] = []
        cursor = low
        while len(ticks) < limit:
            found = self._next_naive(cursor)
            if found is None or found > high:
                break
            ticks.append(found.replace(tzinfo=UTC))
            cursor = found
        return ticks

    def previous_at_or_before(self, at: datetime) -> datetime | None:
        """The latest tick <= `at` (aware UTC), or None if none within about 9 years."""
        found = self._previous_naive(_to_naive_utc(at, "at"))
        return None if found is None else found.replace(tzinfo=UTC)

    # -- segment walks ----------------------------------------------------------------------------

    def _next_naive(self, after: datetime) -> datetime | None:
        # Each segment costs O(1) cached lookups plus one field-jumping search, and a year
        # holds only a few segments, so a call is O(segments until the tick).
        segment = _segment_at(self.timezone, after)
        deadline = after + _SEARCH_HORIZON
        while segment.start <= deadline:
            found = self._first_in_segment(segment, after)
            if found is not None:
                return found
            segment = _next_segment(self.timezone, segment)
        return None

    def _previous_naive(self, at: datetime) -> datetime | None:
        segment = _segment_at(self.timezone, at)
        floor = at - _SEARCH_HORIZON
        while segment.end > floor:
            found = self._last_in_segment(segment, at)
            if found is not None:
                return found
            segment = _previous_segment(self.timezone, segment)
        return None

    def _first_in_segment(self, segment: _Segment, after: datetime) -> datetime | None:
        """First tick inside `segment` that is strictly after `after`."""
        offset = segment.offset
        wall_start = segment.start + offset
        wall_end = segment.end + offset
        strict = after + offset + _EPSILON  # wall times > wall(after)
        if self._elapsed_time:
            found = self._fields.first_at_or_after(max(strict, wall_start), wall_end)
            return None if found is None else found - offset
        shown = _shown_wall_end(self.timezone, segment)
        # Wall times in [shown, wall_start) never existed (a gap): any of them fires once, at
        # the first instant after the gap, which is the start of this segment.
        if after < segment.start and self._gap_has_tick(shown, wall_start):
            return segment.start
        high = max(shown, wall_end)
        found = self._fields.first_at_or_after(max(strict, wall_start, shown), high)
        return None if found is None else found - offset

    def _last_in_segment(self, segment: _Segment, at: datetime) -> datetime | None:
        """Last tick inside `segment` that is at or before `at`."""
        offset = segment.offset
        wall_start = segment.start + offset
        wall_end = segment.end + offset
        if self._elapsed_time:
            end = min(at + offset, wall_end - _EPSILON)
            found = self._fields.last_at_or_before(end, wall_start)
            return None if found is None else found - offset
        shown = _shown_wall_end(self.timezone, segment)
        end = min(at + offset, max(shown, wall_end) - _EPSILON)
        found = self._fields.last_at_or_before(end, max(shown, wall_start))
        if found is not None:
            return found - offset
        if at >= segment.start and self._gap_has_tick(shown, wall_start):
            return segment.start
        return None

    def _gap_has_tick(self, shown: datetime, wall_start: datetime) -> bool:
        """Whether a matching wall time falls in the skipped wall times [shown, wall_start)."""
        return shown < wall_start and (
            self._fields.first_at_or_after(shown, wall_start) is not None
        )


# --------------------------------------------------------------------------------------------
# Helpers for the scheduler runtime
# --------------------------------------------------------------------------------------------


def _tick_text(tick: datetime) -> str:
    if not isinstance(tick, datetime) or tick.tzinfo is None or tick.utcoffset() is None:
        raise DBOSInvalidArgumentError(f"tick must be a timezone-aware datetime, got {tick!r}")
    utc = tick.astimezone(UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += f".{utc.microsecond:06d}"
    return text + "Z"


def _check_name(schedule_name: str) -> None:
    if not isinstance(schedule_name, str) or not schedule_name:
        raise DBOSInvalidArgumentError(
            f"schedule_name must be a non-empty string, got {schedule_name!r}"
        )


def deterministic_jitter(schedule_name: str, tick: datetime, max_jitter_seconds: float) -> float:
    """A delay in [0, max_jitter_seconds) that depends only on the schedule name and the tick.

    It is derived from SHA-256 (not ``hash()``, which is salted per process), so every process
    and every restart computes the same delay for the same tick. ``0`` disables jitter.
    """
    _check_name(schedule_name)
    if (
        isinstance(max_jitter_seconds, bool)
        or not isinstance(max_jitter_seconds, int | float)
        or not math.isfinite(max_jitter_seconds)
        or max_jitter_seconds < 0
    ):
        raise DBOSInvalidArgumentError(
            f"max_jitter_seconds must be a finite number >= 0, got {max_jitter_seconds!r}"
        )
    text = _tick_text(tick)
    if max_jitter_seconds == 0:
        return 0.0
    digest = hashlib.sha256(f"{schedule_name}\x00{text}".encode()).digest()
    # 53 bits fill a float mantissa exactly, so the fraction is uniform in [0, 1).
    fraction = (int.from_bytes(digest[:8], "big") >> 11) / float(1 << 53)
    # Rounding of the product could reach the bound itself; keep the interval half-open.
    return min(fraction * max_jitter_seconds, math.nextafter(max_jitter_seconds, 0.0))


def tick_workflow_id(schedule_name: str, tick: datetime) -> str:
    """The workflow ID for one nominal tick, e.g. ``sched-backup-2026-11-24T02:00:00Z``.

    Deterministic, so a tick started twice (after a crash, or by two daemons) deduplicates on
    the ID. The tick is the nominal fire time, before any jitter.
    """
    _check_name(schedule_name)
    return f"sched-{schedule_name}-{_tick_text(tick)}"
