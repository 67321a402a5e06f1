"""Unit tests for engine.core.cron: parsing, next-fire times, DST rules, jitter and IDs.

Expected instants are literal values worked out by hand from the zone rules (noted in each
test), not values produced by the code under test.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from engine.core.cron import CronSchedule, deterministic_jitter, tick_workflow_id
from engine.error import (
    DBOSInvalidArgumentError,
    DBOSInvalidCrontabError,
    DBOSUnknownTimezoneError,
)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, sec, tzinfo=UTC)


def chain(schedule: CronSchedule, after: datetime, count: int) -> list[datetime]:
    ticks = []
    for _ in range(count):
        after = schedule.next_after(after)
        ticks.append(after)
    return ticks


# --------------------------------------------------------------------------------------------
# Parsing: accepted forms
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expression",
    [
        "* * * * *",
        "*/5 * * * *",
        "0 2 * * *",
        "0,15,30,45 9-17 * * mon-fri",
        "5/10 */2 1,15 jan-mar,dec SUN",
        "0 0 1-31 * 0-7",
        "0 12 * * 7",
        "59 23 31 12 6",
        "0 0 29 2 *",
        "  0   0  *  *  *  ",
        "00 05 01 01 *",
        "30 */6 * * 1-5/2",
        "0 0 * * 5-7",
        "*/90 * * * *",
        "0 0 30 2 mon",
    ],
)
def test_parse_accepts_five_field_forms(expression: str) -> None:
    schedule = CronSchedule.parse(expression)
    assert schedule.expression == expression
    assert schedule.timezone == "UTC"
    assert not schedule.has_seconds


@pytest.mark.parametrize("expression", ["* * * * * *", "*/10 * * * * *", "30 0 12 * * mon"])
def test_parse_accepts_six_field_forms_with_seconds_first(expression: str) -> None:
    assert CronSchedule.parse(expression).has_seconds


def test_constructor_validates_like_parse() -> None:
    assert CronSchedule("0 2 * * *", "Europe/Berlin") == CronSchedule.parse(
        "0 2 * * *", "Europe/Berlin"
    )
    with pytest.raises(DBOSInvalidCrontabError):
        CronSchedule("61 * * * *")
    with pytest.raises(DBOSUnknownTimezoneError):
        CronSchedule("* * * * *", "Mars/Olympus")


def test_schedule_is_hashable_and_compares_by_expression_and_zone() -> None:
    a = CronSchedule.parse("0 2 * * *", "UTC")
    assert a == CronSchedule.parse("0 2 * * *")
    assert a != CronSchedule.parse("0 2 * * *", "Europe/Berlin")
    assert len({a, CronSchedule.parse("0 2 * * *")}) == 1


@pytest.mark.parametrize(
    ("macro", "equivalent"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("@DAILY", "0 0 * * *"),
    ],
)
def test_macros_expand_to_their_five_field_form(macro: str, equivalent: str) -> None:
    schedule = CronSchedule.parse(macro, "Europe/Berlin")
    reference = CronSchedule.parse(equivalent, "Europe/Berlin")
    start = utc(2026, 3, 1)
    assert not schedule.has_seconds
    assert chain(schedule, start, 5) == chain(reference, start, 5)


def test_macro_values() -> None:
    start = utc(2026, 5, 13, 10, 20)  # a Wednesday
    assert CronSchedule.parse("@hourly").next_after(start) == utc(2026, 5, 13, 11)
    assert CronSchedule.parse("@daily").next_after(start) == utc(2026, 5, 14)
    assert CronSchedule.parse("@weekly").next_after(start) == utc(2026, 5, 17)  # Sunday
    assert CronSchedule.parse("@monthly").next_after(start) == utc(2026, 6, 1)
    assert CronSchedule.parse("@yearly").next_after(start) == utc(2027, 1, 1)


def test_names_are_case_insensitive_and_seven_is_sunday() -> None:
    start = utc(2026, 6, 1)  # a Monday
    sunday = utc(2026, 6, 7, 12)
    for dow in ("0", "7", "sun", "SUN", "Sun"):
        assert CronSchedule.parse(f"0 12 * * {dow}").next_after(start) == sunday
    assert CronSchedule.parse("0 0 1 JUL *").next_after(start) == utc(2026, 7, 1)


def test_weekday_range_through_seven_includes_sunday() -> None:
    schedule = CronSchedule.parse("0 0 * * 5-7")
    ticks = schedule.ticks_between(utc(2026, 6, 1), utc(2026, 6, 8), 10)
    assert ticks == [utc(2026, 6, 5), utc(2026, 6, 6), utc(2026, 6, 7)]  # Fri, Sat, Sun


def test_weekday_name_range_ending_on_sunday() -> None:
    for expression in ("0 0 * * sat-sun", "0 0 * * 6-7", "0 0 * * SAT-SUN"):
        ticks = CronSchedule.parse(expression).ticks_between(utc(2026, 6, 1), utc(2026, 6, 8), 9)
        assert ticks == [utc(2026, 6, 6), utc(2026, 6, 7)], expression
    with pytest.raises(DBOSInvalidCrontabError, match="reversed range"):
        CronSchedule.parse("0 0 * * 6-0")


def test_one_value_range_is_that_value() -> None:
    schedule = CronSchedule.parse("46-46 3-3 * * *")
    assert schedule.next_after(utc(2026, 1, 1)) == utc(2026, 1, 1, 3, 46)
    assert schedule.next_after(utc(2026, 1, 1, 3, 46)) == utc(2026, 1, 2, 3, 46)


def test_start_with_step_runs_to_end_of_field() -> None:
    schedule = CronSchedule.parse("50/4 3 * * *")
    ticks = schedule.ticks_between(utc(2026, 1, 1), utc(2026, 1, 1, 4), 10)
    assert [t.minute for t in ticks] == [50, 54, 58]


def test_step_larger_than_range_fires_at_start_only() -> None:
    ticks = CronSchedule.parse("*/90 * * * *").ticks_between(
        utc(2026, 1, 1), utc(2026, 1, 1, 3), 10
    )
    assert ticks == [utc(2026, 1, 1, 1), utc(2026, 1, 1, 2), utc(2026, 1, 1, 3)]


# --------------------------------------------------------------------------------------------
# Parsing: rejected forms, each message naming the field and the value
# --------------------------------------------------------------------------------------------


def test_out_of_range_minute_message_is_exact() -> None:
    with pytest.raises(DBOSInvalidCrontabError) as info:
        CronSchedule.parse("61 * * * *")
    assert str(info.value) == (
        "invalid crontab '61 * * * *': minute field '61' is out of range 0-59 (use 0-59)"
    )


@pytest.mark.parametrize(
    ("expression", "fragments"),
    [
        ("1,61 * * * *", ["minute field '1,61'", "'61'", "0-59"]),
        ("0 24 * * *", ["hour field '24'", "out of range 0-23"]),
        ("0 0 0 * *", ["day-of-month field '0'", "out of range 1-31"]),
        ("0 0 32 * *", ["day-of-month field '32'", "out of range 1-31"]),
        ("0 0 * 13 *", ["month field '13'", "1-12 or jan-dec"]),
        ("0 0 * 0 *", ["month field '0'", "out of range 1-12"]),
        ("0 0 * * 8", ["day-of-week field '8'", "out of range 0-7"]),
        ("60 * * * * *", ["second field '60'", "out of range 0-59"]),
        ("0 60 * * * *", ["minute field '60'"]),
        ("0 0 * * funday", ["day-of-week field 'funday'", "unparsable", "'mon'"]),
        ("0 0 * foo *", ["month field 'foo'", "unparsable"]),
        ("mon * * * *", ["minute field 'mon'", "unparsable"]),
        ("0 0 * * jan", ["day-of-week field 'jan'"]),
        ("*/0 * * * *", ["minute field '*/0'", "step '0'", "positive integer"]),
        ("*/x * * * *", ["minute field '*/x'", "step 'x'"]),
        ("1-5/2/3 * * * *", ["minute field '1-5/2/3'", "step '2/3'"]),
        ("0 5-1 * * *", ["hour field '5-1' is a reversed range: 5 is greater than 1"]),
        ("0 1,5-1 * * *", ["hour field '1,5-1' has reversed range '5-1'", "do not wrap"]),
        ("0 0 * * fri-mon", ["day-of-week field 'fri-mon'", "reversed range"]),
        ("0 0 * dec-jan *", ["month field 'dec-jan'", "reversed range"]),
        ("1,,2 * * * *", ["minute field '1,,2'", "empty list item"]),
        ("0 0 L * *", ["day-of-month field 'L'", "not supported"]),
        ("0 0 15W * *", ["day-of-month field '15W'", "not supported"]),
        ("0 0 * * 5#3", ["day-of-week field '5#3'", "not supported"]),
        ("0 0 ? * *", ["day-of-month field '?'", "not supported"]),
        ("-5 * * * *", ["minute field '-5'"]),
        ("5- * * * *", ["minute field '5-'"]),
        ("\u0661 * * * *", ["minute field '\u0661'", "unparsable"]),
        ("* * * *", ["expected 5 fields", "got 4"]),
        ("* * * * * * *", ["expected 5 fields", "or 6 fields", "got 7"]),
        ("", ["empty"]),
        ("   ", ["empty"]),
        ("@reboot", ["@reboot is not supported"]),
        ("@REBOOT", ["@reboot is not supported"]),
        ("@fortnightly", ["unknown macro '@fortnightly'", "@daily"]),
    ],
)
def test_parse_rejects_with_field_named(expression: str, fragments: list[str]) -> None:
    with pytest.raises(DBOSInvalidCrontabError) as info:
        CronSchedule.parse(expression)
    message = str(info.value)
    assert message.startswith(f"invalid crontab {expression!r}: ")
    for fragment in fragments:
        assert fragment in message


def test_crontab_error_is_an_invalid_argument_error() -> None:
    with pytest.raises(DBOSInvalidArgumentError):
        CronSchedule.parse("99 * * * *")
    with pytest.raises(ValueError):  # callers that only know ValueError still catch it
        CronSchedule.parse("99 * * * *")


def test_non_string_expression_is_rejected() -> None:
    with pytest.raises(DBOSInvalidCrontabError, match="expected a string"):
        CronSchedule.parse(5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "expression",
    ["0 0 30 2 *", "0 0 31 2 *", "0 0 30,31 feb *", "0 0 31 4,6,9,11 *", "0 0 31 apr-apr *"],
)
def test_dates_that_never_exist_fail_at_parse_time(expression: str) -> None:
    with pytest.raises(DBOSInvalidCrontabError) as info:
        CronSchedule.parse(expression)
    assert "never fires" in str(info.value)
    assert "day-of-month field" in str(info.value)


def test_leap_day_schedule_is_bounded_and_fires_every_leap_year() -> None:
    schedule = CronSchedule.parse("0 0 29 2 *")
    assert chain(schedule, utc(2026, 3, 1), 3) == [
        utc(2028, 2, 29),
        utc(2032, 2, 29),
        utc(2036, 2, 29),
    ]
    # 2100 is not a leap year: the longest possible wait, eight years.
    assert schedule.next_after(utc(2096, 3, 1)) == utc(2104, 2, 29)
    assert schedule.previous_at_or_before(utc(2104, 2, 28)) == utc(2096, 2, 29)


# --------------------------------------------------------------------------------------------
# Time zones
# --------------------------------------------------------------------------------------------


def test_unknown_timezone_message() -> None:
    with pytest.raises(DBOSUnknownTimezoneError) as info:
        CronSchedule.parse("* * * * *", "Europe/Berln")
    message = str(info.value)
    assert message.startswith(
        "unknown timezone 'Europe/Berln' (use an IANA name such as 'Europe/Berlin' or 'UTC'"
    )
    assert "did you mean 'Europe/Berlin'?" in message


@pytest.mark.parametrize(
    "zone", ["", "Europe", "../etc/passwd", "/etc/localtime", "Nowhere/City", "a" * 300, "x\x00"]
)
def test_bad_timezone_names_are_rejected(zone: str) -> None:
    with pytest.raises(DBOSUnknownTimezoneError, match="unknown timezone"):
        CronSchedule.parse("* * * * *", zone)


def test_timezone_case_mistake_gets_a_suggestion() -> None:
    with pytest.raises(DBOSUnknownTimezoneError, match="did you mean 'UTC'"):
        CronSchedule.parse("* * * * *", "utc")


def test_non_string_timezone_is_rejected() -> None:
    with pytest.raises(DBOSUnknownTimezoneError):
        CronSchedule.parse("* * * * *", None)  # type: ignore[arg-type]


def test_timezone_error_is_an_invalid_argument_error() -> None:
    with pytest.raises(DBOSInvalidArgumentError):
        CronSchedule.parse("* * * * *", "Europe/Berln")


# --------------------------------------------------------------------------------------------
# next_after, ticks_between, previous_at_or_before: ordinary cases
# --------------------------------------------------------------------------------------------


def test_next_after_is_strictly_after() -> None:
    schedule = CronSchedule.parse("*/5 * * * *")
    assert schedule.next_after(utc(2026, 1, 1, 10, 0)) == utc(2026, 1, 1, 10, 5)
    assert schedule.next_after(utc(2026, 1, 1, 10, 4, 59)) == utc(2026, 1, 1, 10, 5)
    assert schedule.next_after(datetime(2026, 1, 1, 10, 4, 59, 999999, UTC)) == utc(
        2026, 1, 1, 10, 5
    )
    assert schedule.next_after(datetime(2026, 1, 1, 10, 5, 0, 1, UTC)) == utc(2026, 1, 1, 10, 10)


def test_next_after_returns_aware_utc_for_any_input_zone() -> None:
    schedule = CronSchedule.parse("0 9 * * *", "Europe/Berlin")
    after = datetime(2026, 6, 1, 12, 0, tzinfo=ZoneInfo("America/New_York"))  # 16:00Z
    tick = schedule.next_after(after)
    assert tick == utc(2026, 6, 2, 7)  # 09:00 CEST
    assert tick.tzinfo is UTC
    fixed_offset = datetime(2026, 6, 1, 16, 0, tzinfo=timezone(timedelta(hours=-4)))
    assert schedule.next_after(fixed_offset) == utc(2026, 6, 2, 7)


def test_rollovers_across_hour_day_month_and_year() -> None:
    assert CronSchedule.parse("59 23 31 12 *").next_after(utc(2026, 12, 31, 23, 59)) == utc(
        2027, 12, 31, 23, 59
    )
    assert CronSchedule.parse("0 0 31 * *").next_after(utc(2026, 4, 1)) == utc(2026, 5, 31)
    assert CronSchedule.parse("15 */6 * * *").next_after(utc(2026, 2, 28, 18, 15)) == utc(
        2026, 3, 1, 0, 15
    )


def test_day_of_month_and_day_of_week_both_restricted_use_or() -> None:
    schedule = CronSchedule.parse("0 0 1 * 1")  # the 1st of the month OR any Monday
    ticks = schedule.ticks_between(utc(2026, 6, 25), utc(2026, 7, 7), 10)
    # 2026-06-29 and 2026-07-06 are Mondays; 2026-07-01 is a Wednesday.
    assert ticks == [utc(2026, 6, 29), utc(2026, 7, 1), utc(2026, 7, 6)]


def test_full_day_of_month_range_counts_as_unrestricted() -> None:
    schedule = CronSchedule.parse("0 0 1-31 * 1")  # every day AND Monday = Mondays only
    assert schedule.ticks_between(utc(2026, 6, 1), utc(2026, 6, 14), 10) == [utc(2026, 6, 8)]


def test_impossible_day_with_weekday_fires_on_the_weekday() -> None:
    schedule = CronSchedule.parse("0 0 30 2 1")  # 30 Feb (never) OR Mondays in February
    assert schedule.next_after(utc(2026, 3, 1)) == utc(2027, 2, 1)


def test_seconds_form() -> None:
    schedule = CronSchedule.parse("*/15 * * * * *")
    assert schedule.ticks_between(utc(2026, 1, 1), utc(2026, 1, 1, 0, 1), 10) == [
        utc(2026, 1, 1, 0, 0, 15),
        utc(2026, 1, 1, 0, 0, 30),
        utc(2026, 1, 1, 0, 0, 45),
        utc(2026, 1, 1, 0, 1, 0),
    ]
    daily = CronSchedule.parse("30 0 12 * * *", "Asia/Tokyo")
    assert daily.next_after(utc(2026, 1, 1)) == utc(2026, 1, 1, 3, 0, 30)


def test_ticks_between_bounds_and_limit() -> None:
    schedule = CronSchedule.parse("0 * * * *")
    start, end = utc(2026, 1, 1, 0), utc(2026, 1, 1, 5)
    assert schedule.ticks_between(start, end, 100) == [utc(2026, 1, 1, h) for h in range(1, 6)]
    assert schedule.ticks_between(start, end, 2) == [utc(2026, 1, 1, 1), utc(2026, 1, 1, 2)]
    assert schedule.ticks_between(start, start, 5) == []


@pytest.mark.parametrize("limit", [0, -1, True, 1.5, "3"])
def test_ticks_between_rejects_bad_limit(limit: object) -> None:
    with pytest.raises(DBOSInvalidArgumentError, match="limit must be a positive integer"):
        CronSchedule.parse("* * * * *").ticks_between(utc(2026, 1, 1), utc(2026, 1, 2), limit)  # type: ignore[arg-type]


def test_ticks_between_rejects_reversed_range() -> None:
    with pytest.raises(DBOSInvalidArgumentError, match="is after end"):
        CronSchedule.parse("* * * * *").ticks_between(utc(2026, 1, 2), utc(2026, 1, 1), 5)


def test_previous_at_or_before_is_inclusive() -> None:
    schedule = CronSchedule.parse("*/5 * * * *")
    assert schedule.previous_at_or_before(utc(2026, 1, 1, 10, 5)) == utc(2026, 1, 1, 10, 5)
    assert schedule.previous_at_or_before(utc(2026, 1, 1, 10, 4, 59)) == utc(2026, 1, 1, 10, 0)
    yearly = CronSchedule.parse("@yearly", "Europe/Berlin")
    assert yearly.previous_at_or_before(utc(2026, 6, 1)) == utc(2025, 12, 31, 23)


@pytest.mark.parametrize("bad", [datetime(2026, 1, 1), "2026-01-01", None, 1700000000])
def test_naive_or_non_datetime_inputs_are_rejected(bad: object) -> None:
    schedule = CronSchedule.parse("* * * * *")
    with pytest.raises(DBOSInvalidArgumentError, match="timezone-aware"):
        schedule.next_after(bad)  # type: ignore[arg-type]
    with pytest.raises(DBOSInvalidArgumentError, match="timezone-aware"):
        schedule.previous_at_or_before(bad)  # type: ignore[arg-type]
    with pytest.raises(DBOSInvalidArgumentError, match="timezone-aware"):
        schedule.ticks_between(bad, utc(2026, 1, 1), 1)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [utc(1850, 1, 1), utc(9500, 1, 1)])
def test_instants_outside_supported_range_are_rejected(bad: datetime) -> None:
    with pytest.raises(DBOSInvalidArgumentError, match="supported range"):
        CronSchedule.parse("* * * * *").next_after(bad)


# --------------------------------------------------------------------------------------------
# DST: Europe/Berlin (2026: CET->CEST at 01:00Z on 29 March, CEST->CET at 01:00Z on 25 Oct)
# --------------------------------------------------------------------------------------------


def test_berlin_fixed_time_in_gap_runs_once_at_end_of_gap() -> None:
    schedule = CronSchedule.parse("30 2 * * *", "Europe/Berlin")
    assert chain(schedule, utc(2026, 3, 28, 12), 2) == [
        utc(2026, 3, 29, 1, 0),  # 02:30 does not exist: 03:00 CEST
        utc(2026, 3, 30, 0, 30),  # 02:30 CEST
    ]
    assert schedule.previous_at_or_before(utc(2026, 3, 29, 1, 0)) == utc(2026, 3, 29, 1, 0)
    assert schedule.previous_at_or_before(utc(2026, 3, 29, 0, 59, 59)) == utc(2026, 3, 28, 1, 30)


def test_berlin_several_gap_ticks_collapse_into_one() -> None:
    schedule = CronSchedule.parse("0,15,30,45 2 * * *", "Europe/Berlin")
    assert chain(schedule, utc(2026, 3, 28, 12), 3) == [
        utc(2026, 3, 29, 1, 0),  # 02:00, 02:15, 02:30, 02:45 all become 03:00 CEST, once
        utc(2026, 3, 30, 0, 0),
        utc(2026, 3, 30, 0, 15),
    ]


def test_berlin_gap_tick_collapses_with_tick_at_end_of_gap() -> None:
    schedule = CronSchedule.parse("0 2,3 * * *", "Europe/Berlin")
    assert chain(schedule, utc(2026, 3, 28, 12), 3) == [
        utc(2026, 3, 29, 1, 0),  # 02:00 (gap) and 03:00 CEST are the same instant
        utc(2026, 3, 30, 0, 0),
        utc(2026, 3, 30, 1, 0),
    ]


def test_berlin_fixed_time_in_repeat_runs_once_at_first_occurrence() -> None:
    schedule = CronSchedule.parse("30 2 * * *", "Europe/Berlin")
    assert chain(schedule, utc(2026, 10, 24, 12), 2) == [
        utc(2026, 10, 25, 0, 30),  # 02:30 CEST, not 02:30 CET
        utc(2026, 10, 26, 1, 30),
    ]
    # Asked from inside the repeated hour, the already-run 02:30 is the previous tick.
    assert schedule.previous_at_or_before(utc(2026, 10, 25, 1, 45)) == utc(2026, 10, 25, 0, 30)
    assert schedule.next_after(utc(2026, 10, 25, 1, 15)) == utc(2026, 10, 26, 1, 30)


def test_berlin_interval_schedule_follows_elapsed_time() -> None:
    schedule = CronSchedule.parse("*/30 * * * *", "Europe/Berlin")
    assert schedule.ticks_between(utc(2026, 10, 24, 23, 59), utc(2026, 10, 25, 2, 0), 10) == [
        utc(2026, 10, 25, 0, 0),  # 02:00 CEST
        utc(2026, 10, 25, 0, 30),  # 02:30 CEST
        utc(2026, 10, 25, 1, 0),  # 02:00 CET (the repeat fires again)
        utc(2026, 10, 25, 1, 30),  # 02:30 CET
        utc(2026, 10, 25, 2, 0),  # 03:00 CET
    ]
    assert schedule.ticks_between(utc(2026, 3, 28, 23, 59), utc(2026, 3, 29, 1, 30), 10) == [
        utc(2026, 3, 29, 0, 0),  # 01:00 CET
        utc(2026, 3, 29, 0, 30),  # 01:30 CET
        utc(2026, 3, 29, 1, 0),  # 03:00 CEST: 02:00 and 02:30 have no instant
        utc(2026, 3, 29, 1, 30),
    ]


def test_berlin_seconds_schedule_keeps_its_rhythm_through_the_gap() -> None:
    schedule = CronSchedule.parse("*/20 * * * * *", "Europe/Berlin")
    assert schedule.ticks_between(utc(2026, 3, 29, 0, 59, 30), utc(2026, 3, 29, 1, 0, 40), 9) == [
        utc(2026, 3, 29, 0, 59, 40),
        utc(2026, 3, 29, 1, 0, 0),
        utc(2026, 3, 29, 1, 0, 20),
        utc(2026, 3, 29, 1, 0, 40),
    ]


# --------------------------------------------------------------------------------------------
# DST: America/New_York (2026: EST->EDT at 07:00Z on 8 March, EDT->EST at 06:00Z on 1 Nov)
# --------------------------------------------------------------------------------------------


def test_new_york_gap_and_repeat() -> None:
    gap = CronSchedule.parse("30 2 * * *", "America/New_York")
    assert chain(gap, utc(2026, 3, 7, 12), 2) == [utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 30)]
    repeat = CronSchedule.parse("30 1 * * *", "America/New_York")
    assert chain(repeat, utc(2026, 10, 31, 12), 2) == [
        utc(2026, 11, 1, 5, 30),  # 01:30 EDT only
        utc(2026, 11, 2, 6, 30),  # 01:30 EST the next day
    ]


def test_new_york_minute_schedule_in_a_fixed_hour_skips_the_repeat() -> None:
    schedule = CronSchedule.parse("*/20 1 * * *", "America/New_York")
    assert chain(schedule, utc(2026, 11, 1, 4), 4) == [
        utc(2026, 11, 1, 5, 0),
        utc(2026, 11, 1, 5, 20),
        utc(2026, 11, 1, 5, 40),
        utc(2026, 11, 2, 6, 0),
    ]


def test_new_york_hourly_fires_every_real_hour() -> None:
    schedule = CronSchedule.parse("0 * * * *", "America/New_York")
    assert schedule.ticks_between(utc(2026, 3, 8, 5, 30), utc(2026, 3, 8, 8), 10) == [
        utc(2026, 3, 8, 6),  # 01:00 EST
        utc(2026, 3, 8, 7),  # 03:00 EDT
        utc(2026, 3, 8, 8),
    ]
    assert schedule.ticks_between(utc(2026, 11, 1, 4, 30), utc(2026, 11, 1, 7), 10) == [
        utc(2026, 11, 1, 5),  # 01:00 EDT
        utc(2026, 11, 1, 6),  # 01:00 EST
        utc(2026, 11, 1, 7),  # 02:00 EST
    ]


# --------------------------------------------------------------------------------------------
# DST: Australia/Lord_Howe, a 30-minute shift (2026: +11 -> +10:30 at 15:00Z on 4 April,
# +10:30 -> +11 at 15:30Z on 3 October)
# --------------------------------------------------------------------------------------------


def test_lord_howe_half_hour_gap() -> None:
    schedule = CronSchedule.parse("15 2 * * *", "Australia/Lord_Howe")
    assert chain(schedule, utc(2026, 10, 3), 2) == [
        utc(2026, 10, 3, 15, 30),  # 02:15 does not exist: 02:30 LHDT
        utc(2026, 10, 4, 15, 15),  # 02:15 LHDT
    ]


def test_lord_howe_half_hour_repeat() -> None:
    schedule = CronSchedule.parse("45 1 * * *", "Australia/Lord_Howe")
    assert chain(schedule, utc(2026, 4, 4), 2) == [
        utc(2026, 4, 4, 14, 45),  # 01:45 LHDT; 01:45 LHST (15:15Z) is skipped
        utc(2026, 4, 5, 15, 15),
    ]


def test_lord_howe_interval_schedule() -> None:
    schedule = CronSchedule.parse("*/15 * * * *", "Australia/Lord_Howe")
    back = schedule.ticks_between(utc(2026, 4, 4, 14, 20), utc(2026, 4, 4, 15, 30), 10)
    # Every 15 real minutes: the repeated 01:30 and 01:45 fire twice.
    assert back == [utc(2026, 4, 4, 14, m) for m in (30, 45)] + [
        utc(2026, 4, 4, 15, m) for m in (0, 15, 30)
    ]
    forward = schedule.ticks_between(utc(2026, 10, 3, 14, 50), utc(2026, 10, 3, 15, 45), 10)
    # 02:00 and 02:15 do not exist; real time still ticks every 15 minutes.
    assert forward == [utc(2026, 10, 3, 15, m) for m in (0, 15, 30, 45)]


# --------------------------------------------------------------------------------------------
# Zones without DST, and unusual transitions
# --------------------------------------------------------------------------------------------


def test_zones_without_dst() -> None:
    tokyo = CronSchedule.parse("30 2 * * *", "Asia/Tokyo")
    assert tokyo.next_after(utc(2026, 3, 29)) == utc(2026, 3, 29, 17, 30)
    kolkata = CronSchedule.parse("0 9 * * *", "Asia/Kolkata")
    assert kolkata.next_after(utc(2026, 10, 25)) == utc(2026, 10, 25, 3, 30)
    plain = CronSchedule.parse("0 2 * * *")
    assert chain(plain, utc(2026, 3, 28), 3) == [
        utc(2026, 3, 28, 2),
        utc(2026, 3, 29, 2),
        utc(2026, 3, 30, 2),
    ]


def test_midnight_transition_america_santiago() -> None:
    # Chile springs forward at local midnight (2026-09-06 00:00 -04 -> 01:00 -03).
    schedule = CronSchedule.parse("0 0 * * *", "America/Santiago")
    assert chain(schedule, utc(2026, 9, 5, 12), 2) == [utc(2026, 9, 6, 4), utc(2026, 9, 7, 3)]


def test_whole_skipped_day_pacific_apia() -> None:
    # Samoa skipped 30 December 2011 (-10 -> +14 at 10:00Z). The fixed-time tick of the missing
    # day fires once at the first instant after the gap (31 Dec 00:00 local).
    schedule = CronSchedule.parse("0 9 * * *", "Pacific/Apia")
    assert chain(schedule, utc(2011, 12, 29), 3) == [
        utc(2011, 12, 29, 19),
        utc(2011, 12, 30, 10),
        utc(2011, 12, 30, 19),
    ]


# --------------------------------------------------------------------------------------------
# deterministic_jitter and tick_workflow_id
# --------------------------------------------------------------------------------------------


def test_jitter_is_in_range_and_varies() -> None:
    ticks = [utc(2026, 1, 1) + timedelta(minutes=i) for i in range(500)]
    values = [deterministic_jitter("backup", t, 30.0) for t in ticks]
    assert all(0.0 <= v < 30.0 for v in values)
    assert len(set(values)) > 450
    assert min(values) < 3 and max(values) > 27  # spread over the interval
    assert deterministic_jitter("backup", ticks[0], 30) != deterministic_jitter(
        "report", ticks[0], 30
    )


def test_jitter_is_stable_within_a_process_and_zone_independent() -> None:
    tick = utc(2026, 11, 24, 2)
    same_instant = tick.astimezone(ZoneInfo("Asia/Tokyo"))
    assert deterministic_jitter("a", tick, 10) == deterministic_jitter("a", tick, 10)
    assert deterministic_jitter("a", tick, 10) == deterministic_jitter("a", same_instant, 10)


def test_jitter_is_stable_across_processes() -> None:
    code = (
        "from datetime import datetime, UTC;"
        "from engine.core.cron import deterministic_jitter;"
        "print(repr(deterministic_jitter('nightly', datetime(2026, 11, 24, 2, tzinfo=UTC), 60)))"
    )
    outputs = set()
    for seed in ("1", "2", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        outputs.add(result.stdout.strip())
    here = repr(deterministic_jitter("nightly", utc(2026, 11, 24, 2), 60))
    assert outputs == {here}


def test_jitter_zero_disables() -> None:
    assert deterministic_jitter("a", utc(2026, 1, 1), 0) == 0.0


def test_jitter_stays_below_tiny_maximum() -> None:
    for i in range(200):
        value = deterministic_jitter("a", utc(2026, 1, 1) + timedelta(seconds=i), 5e-324)
        assert 0.0 <= value < 5e-324


@pytest.mark.parametrize("bad", [-1, -0.001, float("nan"), float("inf"), True, "5", None])
def test_jitter_rejects_bad_maximum(bad: object) -> None:
    with pytest.raises(DBOSInvalidArgumentError, match="max_jitter_seconds"):
        deterministic_jitter("a", utc(2026, 1, 1), bad)  # type: ignore[arg-type]


def test_jitter_and_id_reject_bad_name_and_tick() -> None:
    for call in (
        lambda: deterministic_jitter("", utc(2026, 1, 1), 1),
        lambda: deterministic_jitter(None, utc(2026, 1, 1), 1),  # type: ignore[arg-type]
        lambda: tick_workflow_id("", utc(2026, 1, 1)),
    ):
        with pytest.raises(DBOSInvalidArgumentError, match="schedule_name"):
            call()
    for call in (
        lambda: deterministic_jitter("a", datetime(2026, 1, 1), 1),
        lambda: tick_workflow_id("a", datetime(2026, 1, 1)),
    ):
        with pytest.raises(DBOSInvalidArgumentError, match="timezone-aware"):
            call()


def test_tick_workflow_id_format() -> None:
    assert tick_workflow_id("backup", utc(2026, 11, 24, 2)) == "sched-backup-2026-11-24T02:00:00Z"
    berlin = datetime(2026, 11, 24, 3, tzinfo=ZoneInfo("Europe/Berlin"))
    assert tick_workflow_id("backup", berlin) == "sched-backup-2026-11-24T02:00:00Z"
    odd = datetime(2026, 11, 24, 2, 0, 0, 1500, UTC)
    assert tick_workflow_id("x", odd) == "sched-x-2026-11-24T02:00:00.001500Z"


def test_tick_workflow_ids_are_distinct_per_tick_and_name() -> None:
    schedule = CronSchedule.parse("*/5 * * * *", "Europe/Berlin")
    ticks = schedule.ticks_between(utc(2026, 10, 24, 22), utc(2026, 10, 25, 3), 100)
    ids = {tick_workflow_id("job", t) for t in ticks}
    assert len(ids) == len(ticks)
    assert tick_workflow_id("a", ticks[0]) != tick_workflow_id("b", ticks[0])


def test_schedule_pickles() -> None:
    schedule = CronSchedule.parse("30 2 * * *", "Europe/Berlin")
    copy = pickle.loads(pickle.dumps(schedule))
    assert copy == schedule
    assert copy.next_after(utc(2026, 3, 28, 12)) == utc(2026, 3, 29, 1)


def test_next_after_is_cheap_enough_for_a_large_timer_heap() -> None:
    # The runtime keeps 10,000 schedules on a heap; next_after jumps by fields instead of
    # scanning minutes, so a call costs microseconds whatever the distance to the next tick.
    shapes = ["*/5 * * * *", "30 2 * * *", "0 9 * * mon-fri", "0 0 29 2 *", "*/10 * * * * *"]
    zones = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]
    schedules = [
        CronSchedule.parse(shapes[i % len(shapes)], zones[i % len(zones)]) for i in range(10_000)
    ]
    after = utc(2026, 3, 29, 0, 30)
    started = time.perf_counter()
    for schedule in schedules:
        schedule.next_after(after)
    assert time.perf_counter() - started < 3.0  # typically ~0.1 s
