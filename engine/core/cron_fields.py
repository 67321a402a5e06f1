"""Crontab expressions parsed into their fields, and the wall-clock times that match them.

``parse_expression`` validates an expression (5 fields, 6 fields with seconds first, or a
macro such as ``@daily``) and raises ``DBOSInvalidCrontabError`` naming the bad field.
``CronFields`` finds the next or previous matching wall time by jumping field by field (never
by scanning minutes). Time zones and daylight saving are ``engine.core.cron``'s concern.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from calendar import monthrange
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from engine.error import DBOSInvalidCrontabError

__all__ = ["CronFields", "parse_expression"]

_ONE_SECOND = timedelta(seconds=1)
_ONE_DAY = timedelta(days=1)

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
class CronFields:
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


def parse_expression(expression: str) -> CronFields:
    """The fields of a crontab expression; raises DBOSInvalidCrontabError naming the bad one."""
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
    fields = CronFields(
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
    expression: str, parts: list[str], specs: tuple[_FieldSpec, ...], fields: CronFields
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
