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
minutes), and the zone's time line is cut into segments of constant UTC offset, cached per
zone and year. Inside one segment, wall time and UTC differ by a constant, so the two rules
become simple interval arithmetic on each segment.

Nothing here reads the clock: every instant is an argument.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import math
import zoneinfo
from bisect import bisect_left, bisect_right
from calendar import monthrange
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from engine.error import (
    DBOSInvalidArgumentError,
    DBOSInvalidCrontabError,
    DBOSUnknownTimezoneError,
)

__all__ = ["CronSchedule", "deterministic_jitter", "tick_workflow_id"]

_ONE_SECOND = timedelta(seconds=1)
_ONE_DAY = timedelta(days=1)
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

_MACROS: Mapping[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_MONTH_NAMES: Mapping[str, int] = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
        start=1,
    )
}
_WEEKDAY_NAMES: Mapping[str, int] = {
    name: number for number, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))
}
# Longest length of each month (February counts its leap day) for the "never fires" check.
_MAX_MONTH_DAYS: Mapping[int, int] = {m: monthrange(2000, m)[1] for m in range(1, 13)}


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _FieldSpec:
    name: str
    low: int
    high: int  # largest literal accepted (7 for day-of-week)
    star_high: int  # largest value covered by '*' and open-ended steps (6 for day-of-week)
    names: Mapping[str, int]
    hint: str


_SECOND = _FieldSpec("second", 0, 59, 59, {}, "use 0-59")
_MINUTE = _FieldSpec("minute", 0, 59, 59, {}, "use 0-59")
_HOUR = _FieldSpec("hour", 0, 23, 23, {}, "use 0-23")
_DAY_OF_MONTH = _FieldSpec("day-of-month", 1, 31, 31, {}, "use 1-31")
_MONTH = _FieldSpec("month", 1, 12, 12, _MONTH_NAMES, "use 1-12 or jan-dec")
_DAY_OF_WEEK = _FieldSpec(
    "day-of-week", 0, 7, 6, _WEEKDAY_NAMES, "use 0-7 or sun-sat; 0 and 7 both mean Sunday"
)

_FIVE_FIELDS = (_MINUTE, _HOUR, _DAY_OF_MONTH, _MONTH, _DAY_OF_WEEK)
_SIX_FIELDS = (_SECOND, *_FIVE_FIELDS)


class _FieldError(Exception):
    """Internal: a problem in one field; turned into DBOSInvalidCrontabError with context.

    `alone` is the wording to use when the offending token is the whole field (so that
    '61 * * * *' reads "minute field '61' is out of range ..." rather than repeating 61).
    """

    def __init__(self, problem: str, token: str = "", alone: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.token = token
        self.alone = alone or problem


def _parse_value(spec: _FieldSpec, token: str) -> int:
    if token.isdecimal() and token.isascii():
        value = int(token)
    elif token.lower() in spec.names:
        value = spec.names[token.lower()]
    else:
        raise _FieldError(_unparsable(spec, token), token)
    if not spec.low <= value <= spec.high:
        allowed = f"out of range {spec.low}-{spec.high} ({spec.hint})"
        raise _FieldError(f"has value {token!r} {allowed}", token, f"is {allowed}")
    return value


def _unparsable(spec: _FieldSpec, token: str) -> str:
    if any(mark in token for mark in "LW#?"):
        return f"has {token!r}: the Quartz extensions L, W, # and ? are not supported"
    names = ", a name such as 'jan'" if spec is _MONTH else ""
    names = ", a name such as 'mon'" if spec is _DAY_OF_WEEK else names
    return (
        f"has unparsable value {token!r} (use a number{names}, '*', a range 'a-b', "
        "a list 'a,b' or a step '*/n')"
    )


def _parse_item(spec: _FieldSpec, item: str) -> range:
    """One comma-separated item: '*', 'a', 'a-b', each optionally followed by '/step'."""
    base, slash, step_text = item.partition("/")
    step = 1
    if slash:
        if not (step_text.isdecimal() and step_text.isascii()) or int(step_text) == 0:
            raise _FieldError(
                f"has step {step_text!r} in {item!r}: a step must be a positive integer"
            )
        step = int(step_text)
    if base == "*":
        return range(spec.low, spec.star_high + 1, step)
    first_text, dash, last_text = base.partition("-")
    first = _parse_value(spec, first_text)
    if dash:
        last = _parse_value(spec, last_text)
        if spec is _DAY_OF_WEEK and last == 0 and first > 0 and not last_text.isdecimal():
            # 'sat-sun' and 'mon-sun' read naturally as ending on Sunday, i.e. 6-7 and 1-7.
            last = 7
        if first > last:
            reason = (
                f"{first} is greater than {last} "
                "(ranges do not wrap around; write two ranges such as '22-23,0-2')"
            )
            raise _FieldError(
                f"has reversed range {base!r}: {reason}", item, f"is a reversed range: {reason}"
            )
    else:
        # 'a/n' means 'from a to the end of the field, every n'; a lone 'a' is just a.
        last = max(first, spec.star_high) if slash else first
    return range(first, last + 1, step)


def _parse_field(spec: _FieldSpec, text: str) -> tuple[int, ...]:
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise _FieldError("has an empty list item")
        values.update(_parse_item(spec, item))
    if spec is _DAY_OF_WEEK and 7 in values:
        values.discard(7)
        values.add(0)
    return tuple(sorted(values))


def _crontab_error(expression: str, problem: str) -> DBOSInvalidCrontabError:
    return DBOSInvalidCrontabError(f"invalid crontab {expression!r}: {problem}")


def _split_fields(expression: str) -> list[str]:
    text = expression.strip()
    if not text:
        raise _crontab_error(expression, "the expression is empty (use e.g. '*/5 * * * *')")
    if text.startswith("@"):
        macro = text.lower()
        if macro == "@reboot":
            raise _crontab_error(
                expression,
                "@reboot is not supported: keeptime schedules follow the clock, not process "
                "starts (use a time-based expression such as '@daily')",
            )
        if macro not in _MACROS:
            raise _crontab_error(
                expression, f"unknown macro {text!r} (use one of {', '.join(_MACROS)})"
            )
        return _MACROS[macro].split()
    parts = text.split()
    if len(parts) not in (5, 6):
        raise _crontab_error(
            expression,
            f"expected 5 fields (minute hour day-of-month month day-of-week) or 6 fields "
            f"(second minute hour day-of-month month day-of-week), got {len(parts)}",
        )
    return parts


@dataclass(frozen=True)
class _Fields:
    """Expanded crontab fields and the wall-clock matching logic built on them."""

    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: tuple[int, ...]
    weekdays: frozenset[int]  # 0 = Sunday
    dom_restricted: bool
    dow_restricted: bool
    has_seconds: bool

    # -- day level --------------------------------------------------------------------------------

    def day_matches(self, day: date) -> bool:
        """Standard cron: if both day fields are restricted, a day matching EITHER fires."""
        dom_ok = day.day in self.days
        dow_ok = day.isoweekday() % 7 in self.weekdays
        if self.dom_restricted and self.dow_restricted:
            return dom_ok or dow_ok
        if self.dom_restricted:
            return dom_ok
        if self.dow_restricted:
            return dow_ok
        return True

    def _first_day(self, day: date, last: date) -> date | None:
        # Jumps over whole months that are not allowed; at most 31 single-day steps per
        # allowed month, so the cost is bounded by the number of months visited.
        while day <= last:
            if day.month not in self.months:
                i = bisect_right(self.months, day.month)
                if i < len(self.months):
                    day = date(day.year, self.months[i], 1)
                else:
                    day = date(day.year + 1, self.months[0], 1)
                continue
            if self.day_matches(day):
                return day
            day += _ONE_DAY
        return None

    def _last_day(self, day: date, first: date) -> date | None:
        while day >= first:
            if day.month not in self.months:
                i = bisect_left(self.months, day.month) - 1
                year, month = (
                    (day.year, self.months[i]) if i >= 0 else (day.year - 1, self.months[-1])
                )
                day = date(year, month, monthrange(year, month)[1])
                continue
            if self.day_matches(day):
                return day
            day -= _ONE_DAY
        return None

    # -- time-of-day level --------------------------------------------------------------------

    def _first_time(self, hour: int, minute: int, second: int) -> time | None:
        """Earliest matching time of day at or after hour:minute:second (carry like an odometer)."""
        hours, minutes, seconds = self.hours, self.minutes, self.seconds
        i = bisect_left(hours, hour)
        if i < len(hours) and hours[i] == hour:
            j = bisect_left(minutes, minute)
            if j < len(minutes) and minutes[j] == minute:
                k = bisect_left(seconds, second)
                if k < len(seconds):
                    return time(hour, minute, seconds[k])
                j += 1
            if j < len(minutes):
                return time(hour, minutes[j], seconds[0])
            i += 1
        if i < len(hours):
            return time(hours[i], minutes[0], seconds[0])
        return None

    def _last_time(self, hour: int, minute: int, second: int) -> time | None:
        """Latest matching time of day at or before hour:minute:second."""
        hours, minutes, seconds = self.hours, self.minutes, self.seconds
        i = bisect_right(hours, hour) - 1
        if i >= 0 and hours[i] == hour:
            j = bisect_right(minutes, minute) - 1
            if j >= 0 and minutes[j] == minute:
                k = bisect_right(seconds, second) - 1
                if k >= 0:
                    return time(hour, minute, seconds[k])
                j -= 1
            if j >= 0:
                return time(hour, minutes[j], seconds[-1])
            i -= 1
        if i >= 0:
            return time(hours[i], minutes[-1], seconds[-1])
        return None

    # -- wall-clock datetimes -----------------------------------------------------------------

    def first_at_or_after(self, start: datetime, until: datetime) -> datetime | None:
        """Earliest matching naive wall time w with start <= w < until, or None.

        Cost: a few bisections per call plus the day walk of _first_day; independent of how
        many minutes or seconds lie between start and the answer.
        """
        if start.microsecond:
            start = start.replace(microsecond=0) + _ONE_SECOND
        last = until.date()
        day: date | None = start.date()
        floor = start.time()
        while day is not None and day <= last:
            day = self._first_day(day, last)
            if day is None:
                return None
            if day == start.date():
                found = self._first_time(floor.hour, floor.minute, floor.second)
            else:
                found = self._first_time(0, 0, 0)
            if found is not None:
                candidate = datetime.combine(day, found)
                return candidate if candidate < until else None
            day += _ONE_DAY
        return None

    def last_at_or_before(self, end: datetime, since: datetime) -> datetime | None:
        """Latest matching naive wall time w with since <= w <= end, or None."""
        end = end.replace(microsecond=0)
        first = since.date()
        day: date | None = end.date()
        while day is not None and day >= first:
            day = self._last_day(day, first)
            if day is None:
                return None
            if day == end.date():
                found = self._last_time(end.hour, end.minute, end.second)
            else:
                found = self._last_time(23, 59, 59)
            if found is not None:
                candidate = datetime.combine(day, found)
                return candidate if candidate >= since else None
            day -= _ONE_DAY
        return None


def _parse_expression(expression: str) -> _Fields:
    if not isinstance(expression, str):
        raise DBOSInvalidCrontabError(
            f"invalid crontab {expression!r}: expected a string such as '*/5 * * * *'"
        )
    parts = _split_fields(expression)
    specs = _SIX_FIELDS if len(parts) == 6 else _FIVE_FIELDS
    parsed: dict[str, tuple[int, ...]] = {}
    for spec, text in zip(specs, parts, strict=True):
        try:
            parsed[spec.name] = _parse_field(spec, text)
        except _FieldError as exc:
            problem = exc.alone if exc.token == text else exc.problem
            raise _crontab_error(expression, f"{spec.name} field {text!r} {problem}") from None
    days = parsed["day-of-month"]
    weekdays = parsed["day-of-week"]
    fields = _Fields(
        seconds=parsed.get("second", (0,)),
        minutes=parsed["minute"],
        hours=parsed["hour"],
        days=frozenset(days),
        months=parsed["month"],
        weekdays=frozenset(weekdays),
        # "Restricted" means "does not cover every value", so '1-31' behaves like '*'.
        dom_restricted=len(days) < 31,
        dow_restricted=len(weekdays) < 7,
        has_seconds=len(parts) == 6,
    )
    _check_fires(expression, parts, specs, fields)
    return fields


def _check_fires(
    expression: str, parts: list[str], specs: tuple[_FieldSpec, ...], fields: _Fields
) -> None:
    """Reject day-of-month/month combinations that never occur (e.g. 30 February).

    With a restricted day-of-week the OR rule always yields some day, so only the
    day-of-month-only case can be empty.
    """
    if not fields.dom_restricted or fields.dow_restricted:
        return
    if any(day <= _MAX_MONTH_DAYS[month] for month in fields.months for day in fields.days):
        return
    dom_text = parts[specs.index(_DAY_OF_MONTH)]
    month_text = parts[specs.index(_MONTH)]
    raise _crontab_error(
        expression,
        f"never fires: day-of-month field {dom_text!r} never occurs in month field "
        f"{month_text!r} (no such date exists in any year)",
    )


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
    _fields: _Fields = field(init=False, repr=False, compare=False)
    _elapsed_time: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fields = _parse_expression(self.expression)
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
