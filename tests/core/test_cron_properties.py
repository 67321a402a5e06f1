"""Property tests for engine.core.cron.

1. Against a brute-force reference that scans minute by minute (second by second for the
   6-field form) and applies the documented DST rules directly through zoneinfo's ``fold``.
   The reference takes its field sets from croniter, so it shares no parsing code either.
2. Ordering: ticks strictly increase, never equal the input, and the backward search agrees
   with the forward one.
3. A differential test against APScheduler 3's CronTrigger. Every difference must fall in one
   of the intended differences documented in docs/scheduling.md; anything else fails.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger
from croniter import croniter
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from engine.core.cron import CronSchedule

# Zones with DST of 1 hour, 30 minutes (Lord_Howe), at midnight (Santiago), several times a year
# (Casablanca's Ramadan switch), odd offsets (Chatham +12:45, Kolkata +5:30) and none at all.
ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "America/Santiago",
    "Africa/Casablanca",
    "Pacific/Chatham",
    "Asia/Kolkata",
    "Asia/Tokyo",
]
MINUTE = timedelta(minutes=1)
SECOND = timedelta(seconds=1)
# The largest DST shift in ZONES is one hour; scanning this far beyond a window is enough to see
# every wall time that can map into it.
SHIFT_MARGIN = timedelta(minutes=90)
YEARS = (2016, 2030)


# --------------------------------------------------------------------------------------------
# Reference implementation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RefFields:
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday

    def matches(self, wall: datetime) -> bool:
        if (
            wall.second not in self.seconds
            or wall.minute not in self.minutes
            or wall.hour not in self.hours
            or wall.month not in self.months
        ):
            return False
        dom_restricted = len(self.days) < 31
        dow_restricted = len(self.weekdays) < 7
        dom_ok = wall.day in self.days
        dow_ok = (wall.weekday() + 1) % 7 in self.weekdays
        if dom_restricted and dow_restricted:
            return dom_ok or dow_ok
        return (dom_ok or not dom_restricted) and (dow_ok or not dow_restricted)

    @property
    def fixed_time(self) -> bool:
        return len(self.hours) < 24


def _expand(values: Sequence[int | str], low: int, high: int) -> frozenset[int]:
    if values == ["*"]:
        return frozenset(range(low, high + 1))
    return frozenset(int(v) for v in values)


@functools.lru_cache(maxsize=4096)
def ref_fields(expression: str) -> RefFields:
    six = len(expression.split()) == 6
    expanded = croniter.expand(expression, second_at_beginning=six)[0]
    minute, hour, dom, month, dow = expanded[:5]
    return RefFields(
        seconds=_expand(expanded[5], 0, 59) if six else frozenset({0}),
        minutes=_expand(minute, 0, 59),
        hours=_expand(hour, 0, 23),
        days=_expand(dom, 1, 31),
        months=_expand(month, 1, 12),
        weekdays=frozenset(v % 7 for v in _expand(dow, 0, 6)),  # 7 is Sunday too
    )


def wall_of(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


def exists(wall: datetime, zone: ZoneInfo) -> bool:
    return wall_of(wall.replace(tzinfo=zone).astimezone(UTC), zone) == wall


def first_instant_at_or_after_wall(wall: datetime, zone: ZoneInfo, step: timedelta) -> datetime:
    """For a wall time in a gap: walk real time from before the gap until the clock reaches it."""
    instant = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)  # before the transition
    while wall_of(instant, zone) < wall:
        instant += step
    return instant


def reference_ticks(
    expression: str, zone_name: str, start: datetime, end: datetime
) -> list[datetime]:
    """All ticks t with start < t <= end, by brute force over the documented rules."""
    fields = ref_fields(expression)
    zone = ZoneInfo(zone_name)
    step = SECOND if len(expression.split()) == 6 else MINUTE
    ticks: set[datetime] = set()
    if not fields.fixed_time:
        # Interval rule: every real instant whose wall time matches.
        instant = start.replace(second=0, microsecond=0)
        while instant <= end:
            if instant > start and fields.matches(wall_of(instant, zone)):
                ticks.add(instant)
            instant += step
        return sorted(ticks)
    # Fixed-time rule: every matching wall time, at its first occurrence (fold=0), or at the
    # first instant after the gap if it does not exist.
    wall = wall_of(start, zone).replace(second=0, microsecond=0) - SHIFT_MARGIN
    last = wall_of(end, zone) + SHIFT_MARGIN
    while wall <= last:
        if fields.matches(wall):
            if exists(wall, zone):
                instant = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
            else:
                instant = first_instant_at_or_after_wall(wall, zone, step)
            if start < instant <= end:
                ticks.add(instant)
        wall += step
    return sorted(ticks)


@functools.cache
def transitions(zone_name: str) -> tuple[datetime, ...]:
    """UTC instants where the zone's offset changes (daily scan, then bisection to the minute)."""
    zone = ZoneInfo(zone_name)
    found = []
    day = datetime(YEARS[0], 1, 1, tzinfo=UTC)
    stop = datetime(YEARS[1], 12, 31, tzinfo=UTC)
    while day < stop:
        following = day + timedelta(days=1)
        if day.astimezone(zone).utcoffset() != following.astimezone(zone).utcoffset():
            low, high = day, following
            while high - low > MINUTE:
                middle = low + (high - low) / 2
                middle = middle.replace(second=0, microsecond=0)
                if middle.astimezone(zone).utcoffset() == low.astimezone(zone).utcoffset():
                    low = middle
                else:
                    high = middle
            found.append(high)
        day = following
    return tuple(found)


# --------------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------------

MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
WEEKDAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]


@st.composite
def field_item(
    draw: st.DrawFn, low: int, high: int, star_high: int, names: list[str] | None
) -> str:
    def value(lo: int, hi: int) -> str:
        number = draw(st.integers(lo, hi))
        if names and number - low < len(names) and draw(st.booleans()):
            return names[number - low]
        return str(number)

    kind = draw(st.sampled_from(["single", "range", "range_step", "start_step", "star_step"]))
    if kind == "star_step":
        return f"*/{draw(st.integers(1, star_high - low))}"
    if kind == "start_step":
        # 'a/n' with a = 7 in day-of-week is read differently by croniter; keep a <= star_high.
        first = draw(st.integers(low, star_high - 1))
        return f"{value(first, first)}/{draw(st.integers(1, star_high - first))}"
    first = draw(st.integers(low, high))
    if kind == "single":
        return value(first, first)
    if first == high:
        return value(first, first)
    # croniter 7 expands a one-value range 'a-a' to '*', so the reference cannot use it; the
    # unit tests cover 'a-a' instead.
    last = draw(st.integers(first + 1, high))
    text = f"{value(first, first)}-{value(last, last)}"
    if kind == "range_step" and last > first:
        text += f"/{draw(st.integers(1, last - first))}"
    return text


def field(
    low: int,
    high: int,
    star_weight: float,
    star_high: int | None = None,
    names: list[str] | None = None,
) -> st.SearchStrategy[str]:
    top = high if star_high is None else star_high
    items = st.lists(field_item(low, high, top, names), min_size=1, max_size=3).map(",".join)
    star = st.just("*")
    weight = int(star_weight * 10)
    return st.one_of(*([star] * weight), *([items] * (10 - weight)))


def five_field_expressions(hour_star: float = 0.5) -> st.SearchStrategy[str]:
    # Half of the fixed-time expressions use the small hours, where most DST transitions
    # happen (00:00 in Santiago, 01:00-03:45 elsewhere), so gaps and repeats are hit often.
    night_hours = st.lists(st.integers(0, 4), min_size=1, max_size=3, unique=True).map(
        lambda hours: ",".join(map(str, hours))
    )
    hours = st.one_of(field(0, 23, hour_star), night_hours)
    return st.tuples(
        field(0, 59, 0.2),
        hours,
        field(1, 31, 0.7),
        field(1, 12, 0.8, names=MONTHS),
        field(0, 7, 0.6, star_high=6, names=WEEKDAYS),
    ).map(" ".join)


def six_field_expressions() -> st.SearchStrategy[str]:
    return st.tuples(
        field(0, 59, 0.2),
        field(0, 59, 0.5),
        field(0, 23, 0.5),
        st.just("*"),
        st.just("*"),
        st.just("*"),
    ).map(" ".join)


def parseable(expression: str) -> bool:
    try:
        CronSchedule.parse(expression)
    except ValueError:
        return False
    return True


@st.composite
def instants(draw: st.DrawFn, zone_name: str, spread: timedelta) -> datetime:
    """Mostly near a DST transition of the zone (when it has any), otherwise anywhere."""
    near = transitions(zone_name)
    if near and draw(st.integers(0, 3)) > 0:
        base = draw(st.sampled_from(near))
        seconds = int(spread.total_seconds())
        offset = timedelta(seconds=draw(st.integers(-seconds, seconds)))
    else:
        base = datetime(YEARS[0], 1, 1, tzinfo=UTC)
        offset = timedelta(seconds=draw(st.integers(0, 14 * 365 * 86400)))
    micro = timedelta(microseconds=draw(st.sampled_from([0, 0, 1, 500_000, 999_999])))
    return base + offset + micro


@st.composite
def cases(
    draw: st.DrawFn, expressions: st.SearchStrategy[str], spread: timedelta
) -> tuple[str, str, datetime]:
    expression = draw(expressions.filter(parseable))
    zone = draw(st.sampled_from(ZONES))
    return expression, zone, draw(instants(zone, spread))


def bounded(examples: int) -> settings:
    """Few enough examples to keep the whole file well under a minute; no per-example deadline
    because the brute-force reference is deliberately slow."""
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


# --------------------------------------------------------------------------------------------
# (1) Against the brute-force reference
# --------------------------------------------------------------------------------------------


@bounded(300)
@given(cases(five_field_expressions(), timedelta(hours=30)))
def test_five_field_matches_reference(case: tuple[str, str, datetime]) -> None:
    expression, zone, start = case
    end = start + timedelta(days=2)
    expected = reference_ticks(expression, zone, start, end)
    schedule = CronSchedule.parse(expression, zone)
    assert schedule.ticks_between(start, end, 10_000) == expected
    following = schedule.next_after(start)
    if expected:
        assert following == expected[0]
    else:
        assert following > end
    event(f"fixed_time={len(ref_fields(expression).hours) < 24}, ticks={bool(expected)}")


@bounded(40)
@given(cases(six_field_expressions(), timedelta(minutes=90)))
def test_six_field_matches_reference(case: tuple[str, str, datetime]) -> None:
    expression, zone, start = case
    end = start + timedelta(minutes=40)
    expected = reference_ticks(expression, zone, start, end)
    schedule = CronSchedule.parse(expression, zone)
    assert schedule.has_seconds
    assert schedule.ticks_between(start, end, 10_000) == expected


def test_every_2026_transition_matches_reference() -> None:
    """Not random: each transition of each zone in 2026, for typical schedule shapes."""
    expressions = [
        "*/5 * * * *",
        "30 * * * *",
        "0,15,30,45 0-3 * * *",
        "30 2 * * *",
        "0 1,2,3 * * *",
        "*/10 0 * * *",
        "45 1 * * *",
        "0 0 * * *",
    ]
    checked = 0
    for zone in ZONES:
        for moment in transitions(zone):
            if moment.year != 2026:
                continue
            start, end = moment - timedelta(hours=20), moment + timedelta(hours=20)
            for expression in expressions:
                schedule = CronSchedule.parse(expression, zone)
                expected = reference_ticks(expression, zone, start, end)
                assert schedule.ticks_between(start, end, 10_000) == expected, (zone, expression)
                checked += 1
    assert checked >= 12 * len(expressions)  # the DST zones really were visited


# --------------------------------------------------------------------------------------------
# (2) Ordering and forward/backward agreement
# --------------------------------------------------------------------------------------------


@bounded(300)
@given(
    cases(five_field_expressions(), timedelta(hours=30)),
    st.sampled_from([timedelta(hours=3), timedelta(days=3), timedelta(days=400)]),
)
def test_ticks_increase_and_backward_agrees(
    case: tuple[str, str, datetime], window: timedelta
) -> None:
    expression, zone, start = case
    schedule = CronSchedule.parse(expression, zone)
    ticks = schedule.ticks_between(start, start + window, 60)
    assert all(start < t <= start + window for t in ticks)
    assert all(a < b for a, b in itertools.pairwise(ticks))
    previous = schedule.previous_at_or_before(start)
    assert previous is None or previous <= start
    if ticks:
        assert schedule.next_after(start) == ticks[0]
        assert schedule.previous_at_or_before(ticks[0] - timedelta(microseconds=1)) == previous
    for earlier, later in itertools.pairwise(ticks):
        assert schedule.next_after(earlier) == later
        assert schedule.previous_at_or_before(later) == later
        assert schedule.previous_at_or_before(later - timedelta(microseconds=1)) == earlier
    if previous is not None:
        following = schedule.next_after(previous)
        assert following > start
        if ticks:
            assert following == ticks[0]


@bounded(200)
@given(five_field_expressions().filter(parseable) | six_field_expressions().filter(parseable))
def test_field_expansion_agrees_with_croniter(expression: str) -> None:
    """Our parser and croniter agree on what each field means (day-of-week 7 = Sunday)."""
    ours = CronSchedule.parse(expression)._fields
    theirs = ref_fields(expression)
    assert set(ours.seconds) == theirs.seconds
    assert set(ours.minutes) == theirs.minutes
    assert set(ours.hours) == theirs.hours
    assert ours.days == theirs.days
    assert set(ours.months) == theirs.months
    assert ours.weekdays == theirs.weekdays


# --------------------------------------------------------------------------------------------
# (3) Differential test against APScheduler 3
# --------------------------------------------------------------------------------------------

GAP = "gap: keeptime fires at the end of the gap, APScheduler shifts by the gap length"
APS_WEEKDAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]


def _aps_field(values: frozenset[int], full: int) -> str:
    return "*" if len(values) == full else ",".join(str(v) for v in sorted(values))


def aps_next(expression: str, zone: str, after: datetime) -> datetime | None:
    """APScheduler's next fire time strictly after `after`, emulating cron's day OR rule.

    Fields are handed over as explicit lists (taken from croniter) so that syntax and
    day-of-week numbering (APScheduler 3 counts 0 = Monday, even in from_crontab) cannot differ;
    only the time computation is compared. APScheduler ANDs day-of-month with day-of-week, so
    when both are restricted we take the earlier of the two single-field triggers.
    """
    fields = ref_fields(expression)
    weekdays = (
        "*"
        if len(fields.weekdays) == 7
        else ",".join(APS_WEEKDAYS[d] for d in sorted(fields.weekdays))
    )
    days = _aps_field(fields.days, 31)
    common = {
        "minute": _aps_field(fields.minutes, 60),
        "hour": _aps_field(fields.hours, 24),
        "month": _aps_field(fields.months, 12),
        "timezone": zone,
    }
    if days != "*" and weekdays != "*":
        variants = [{"day": days}, {"day_of_week": weekdays}]
    else:
        variants = [{"day": days, "day_of_week": weekdays}]
    # get_next_fire_time is inclusive of `now`; ticks are whole minutes, so 1 µs later makes
    # it strictly-after.
    now = after + timedelta(microseconds=1)
    results = []
    for variant in variants:
        trigger = CronTrigger(**common, **variant)
        found = trigger.get_next_fire_time(None, now)
        if found is not None:
            results.append(found.astimezone(UTC))
    return min(results) if results else None


def classify_difference(
    expression: str, zone_name: str, after: datetime, ours: datetime, theirs: datetime
) -> str | None:
    """Name the documented difference that explains ours != theirs (both the first tick after
    `after`), or None if none does. keeptime's side is checked by the reference tests; here
    each difference must be one of the kinds listed in docs/scheduling.md."""
    fields = ref_fields(expression)
    zone = ZoneInfo(zone_name)

    def offset(instant: datetime) -> timedelta:
        result = instant.astimezone(zone).utcoffset()
        assert result is not None
        return result

    their_local, our_local = theirs.astimezone(zone), ours.astimezone(zone)
    their_wall, our_wall = their_local.replace(tzinfo=None), our_local.replace(tzinfo=None)
    if not fields.matches(their_wall):
        # APScheduler's time is not at a matching wall time: a DST artefact on its side.
        if offset(theirs - timedelta(hours=3)) > offset(theirs):
            return "fall-back: APScheduler fires at a wall time that does not match"
        if offset(theirs - timedelta(hours=3)) < offset(theirs):
            return GAP
        if offset(theirs + timedelta(hours=3)) > offset(theirs) and theirs < ours:
            # Its search started in a repeated hour (fold=1) and it resolved the gap time with
            # that fold, which lands before the gap.
            return "gap after a repeat: APScheduler fires before the gap"
        return None
    if fields.fixed_time and their_local.fold == 1 and theirs < ours:
        return "repeat: APScheduler fires the second occurrence too"
    if offset(ours - SECOND) < offset(ours) and ours < theirs:
        # keeptime's end-of-gap tick (its wall time may or may not match the expression), which
        # APScheduler replaces by a later, shifted time.
        return GAP
    if not fields.matches(our_wall):
        return None
    if not fields.fixed_time and our_local.fold == 1 and ours < theirs:
        # Interval rule: the repeated wall time fires again. APScheduler 3 misses it when its
        # search starts just before the fall-back (it moves forward on the wall clock).
        return "repeat: keeptime's interval rule fires the repeated time again"
    # APScheduler 3 carries a larger field (day, month) across a DST change by adding naive
    # time in UTC, lands up to `delta` late on the wall clock and then fires at the first match
    # from there. So no match may lie between (our wall time + delta) and its wall time.
    delta = offset(ours) - offset(after)
    late = (
        their_wall <= our_wall + delta or first_wall_match(fields, our_wall + delta) == their_wall
    )
    if ours < theirs and our_local.fold == 0 and delta > timedelta(0) and late:
        return "crossing: APScheduler starts late by up to the DST delta"
    return None


def first_wall_match(fields: RefFields, wall: datetime) -> datetime:
    """The first matching wall time at or after `wall` (whole minutes), skipping whole days."""
    probe = wall
    earliest = (min(fields.hours), min(fields.minutes), min(fields.seconds))
    while True:
        day = probe.date()
        if fields.matches(
            datetime.combine(day, datetime.min.time()).replace(
                hour=earliest[0], minute=earliest[1], second=earliest[2]
            )
        ):
            while probe.date() == day:
                if fields.matches(probe):
                    return probe
                probe += MINUTE
        probe = datetime.combine(day + timedelta(days=1), datetime.min.time())


@bounded(600)
@given(
    st.tuples(
        five_field_expressions(hour_star=0.4).filter(parseable),
        st.sampled_from(ZONES),
    ).flatmap(
        lambda pair: st.tuples(
            st.just(pair[0]), st.just(pair[1]), instants(pair[1], timedelta(hours=30))
        )
    )
)
def test_differential_against_apscheduler(case: tuple[str, str, datetime]) -> None:
    expression, zone, after = case
    schedule = CronSchedule.parse(expression, zone)
    cursor = after
    # Follow a short chain so that the comparison also runs right after DST-affected ticks.
    for _ in range(4):
        ours = schedule.next_after(cursor)
        theirs = aps_next(expression, zone, cursor)
        assert theirs is not None
        if ours == theirs:
            event("equal")
        else:
            label = classify_difference(expression, zone, cursor, ours, theirs)
            assert label is not None, (expression, zone, cursor, ours, theirs)
            event(label)
        cursor = ours


# Concrete, deterministic examples of every documented difference (docs/scheduling.md).
DIFFERENCES: list[tuple[str, str, str, datetime, datetime, datetime, str]] = [
    (
        "gap",
        "30 2 * * *",
        "Europe/Berlin",
        datetime(2026, 3, 28, 12, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 0, tzinfo=UTC),  # keeptime: 03:00 CEST
        datetime(2026, 3, 29, 1, 30, tzinfo=UTC),  # APScheduler: 03:30 CEST
        GAP,
    ),
    (
        "gap, several ticks",
        "30,45 2 * * *",
        "America/New_York",
        datetime(2026, 3, 8, 5, tzinfo=UTC),
        datetime(2026, 3, 8, 7, 0, tzinfo=UTC),  # keeptime: once at 03:00 EDT
        datetime(2026, 3, 8, 7, 30, tzinfo=UTC),  # APScheduler: 03:30 EDT
        GAP,
    ),
    (
        "crossing",
        "* * 1 * *",
        "Europe/Berlin",
        datetime(2026, 3, 20, tzinfo=UTC),  # CET; the next tick is in CEST
        datetime(2026, 3, 31, 22, 0, tzinfo=UTC),  # keeptime: 1 April 00:00 CEST
        datetime(2026, 3, 31, 23, 0, tzinfo=UTC),  # APScheduler: 1 April 01:00 CEST
        "crossing: APScheduler starts late by up to the DST delta",
    ),
    (
        "crossing, whole month skipped",
        "0 0 1 * *",
        "Europe/Berlin",
        datetime(2026, 2, 28, 23, 0, tzinfo=UTC),  # 1 March 00:00 CET, just fired
        datetime(2026, 3, 31, 22, 0, tzinfo=UTC),  # keeptime: 1 April 00:00 CEST
        datetime(2026, 4, 30, 22, 0, tzinfo=UTC),  # APScheduler: lands on 01:00, skips April
        "crossing: APScheduler starts late by up to the DST delta",
    ),
    (
        "crossing, 30-minute DST",
        "* * * 1 *",
        "Australia/Lord_Howe",
        datetime(2026, 5, 1, tzinfo=UTC),  # +10:30; January is +11
        datetime(2026, 12, 31, 13, 0, tzinfo=UTC),  # keeptime: 1 January 00:00
        datetime(2026, 12, 31, 13, 30, tzinfo=UTC),  # APScheduler: 1 January 00:30
        "crossing: APScheduler starts late by up to the DST delta",
    ),
    (
        "repeat, interval rule",
        "45 * * * *",
        "Pacific/Chatham",
        # Chatham falls back from 03:45 +13:45 to 02:45 +12:45 at 14:00Z on 5 April 2026.
        datetime(2026, 4, 4, 13, 59, 58, tzinfo=UTC),  # 03:44:58 +13:45
        datetime(2026, 4, 4, 14, 0, tzinfo=UTC),  # keeptime: 02:45 +12:45, the repeat
        datetime(2026, 4, 4, 15, 0, tzinfo=UTC),  # APScheduler: 03:45 +12:45
        "repeat: keeptime's interval rule fires the repeated time again",
    ),
    (
        "fall-back instant",
        "* 3 * * *",
        "Pacific/Chatham",
        datetime(2026, 4, 4, 13, 59, 58, tzinfo=UTC),  # 03:44:58 +13:45
        datetime(2026, 4, 4, 15, 0, tzinfo=UTC),  # keeptime: 03:45 +12:45 (first 03:45)
        datetime(2026, 4, 4, 14, 0, tzinfo=UTC),  # APScheduler: 02:45 +12:45, not hour 3
        "fall-back: APScheduler fires at a wall time that does not match",
    ),
    (
        "gap, APScheduler shifted",
        "* 3 * * *",
        "Pacific/Chatham",
        # Chatham springs forward from 02:45 +12:45 to 03:45 +13:45 at 14:00Z on 26 Sep 2026.
        datetime(2026, 9, 26, 13, 59, 58, tzinfo=UTC),
        datetime(2026, 9, 26, 14, 0, tzinfo=UTC),  # keeptime: 03:45 +13:45
        datetime(2026, 9, 26, 14, 15, tzinfo=UTC),  # APScheduler: 03:00 shifted to 04:00
        GAP,
    ),
    (
        "gap after a repeat",
        "* 2 10 1/2 *",
        "Africa/Casablanca",
        # 2016: Ramadan fall-back at 02:00Z on 5 June (03:00 -> 02:00), spring-forward at
        # 02:00Z on 10 July (02:00 -> 03:00). The search starts inside the repeated hour.
        datetime(2016, 6, 5, 2, 0, tzinfo=UTC),
        datetime(2016, 7, 10, 2, 0, tzinfo=UTC),  # keeptime: 03:00 +01, the end of the gap
        datetime(2016, 7, 10, 1, 0, tzinfo=UTC),  # APScheduler: 01:00 +00, before the gap
        "gap after a repeat: APScheduler fires before the gap",
    ),
    (
        "repeat",
        "30 1 * * *",
        "America/New_York",
        datetime(2026, 11, 1, 5, 30, tzinfo=UTC),  # just after 01:30 EDT fired
        datetime(2026, 11, 2, 6, 30, tzinfo=UTC),  # keeptime: next day
        datetime(2026, 11, 1, 6, 30, tzinfo=UTC),  # APScheduler: 01:30 EST again
        "repeat: APScheduler fires the second occurrence too",
    ),
]


@pytest.mark.parametrize(
    ("name", "expression", "zone", "after", "ours", "theirs", "label"),
    DIFFERENCES,
    ids=[d[0] for d in DIFFERENCES],
)
def test_documented_differences_are_real(
    name: str,
    expression: str,
    zone: str,
    after: datetime,
    ours: datetime,
    theirs: datetime,
    label: str,
) -> None:
    assert CronSchedule.parse(expression, zone).next_after(after) == ours
    assert aps_next(expression, zone, after) == theirs
    assert classify_difference(expression, zone, after, ours, theirs) == label


def test_day_fields_or_rule_differs_from_apscheduler_and() -> None:
    """APScheduler ANDs day-of-month with day-of-week; cron (and keeptime) OR them."""
    after = datetime(2026, 6, 2, tzinfo=UTC)  # a Tuesday
    ours = CronSchedule.parse("0 0 13 * 5").next_after(after)  # the 13th OR a Friday
    and_rule = CronTrigger(minute="0", hour="0", day="13", day_of_week="fri", timezone="UTC")
    assert ours == datetime(2026, 6, 5, tzinfo=UTC)  # Friday 5 June
    # APScheduler waits for a Friday the 13th (November 2026).
    found = and_rule.get_next_fire_time(None, after)
    assert found is not None
    assert found.astimezone(UTC) == datetime(2026, 11, 13, tzinfo=UTC)


def test_weekday_numbering_differs_from_apscheduler_from_crontab() -> None:
    after = datetime(2026, 6, 2, tzinfo=UTC)  # a Tuesday
    ours = CronSchedule.parse("0 0 * * 0").next_after(after)
    theirs = CronTrigger.from_crontab("0 0 * * 0", timezone="UTC").get_next_fire_time(None, after)
    assert ours == datetime(2026, 6, 7, tzinfo=UTC)  # Sunday
    assert theirs is not None and theirs.astimezone(UTC) == datetime(2026, 6, 8, tzinfo=UTC)


@pytest.mark.parametrize(
    "expression",
    [
        "*/90 * * * *",  # step larger than the range: fires at minute 0
        "0 0 * * 7",  # 7 = Sunday
        "0 0 * * 5-7",  # Friday to Sunday
        "0 0 1-31/40 * *",  # step larger than the range: day 1
        "@daily",  # macro
        "0 0 0 * * *",  # seconds first
    ],
)
def test_syntax_accepted_by_keeptime_and_rejected_by_apscheduler(expression: str) -> None:
    assert parseable(expression)
    with pytest.raises(ValueError):
        CronTrigger.from_crontab(expression, timezone="UTC")
