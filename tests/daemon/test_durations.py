"""Durations in config files: "500ms", "30s", "1h30m", or a plain number of seconds."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.durations import DURATION_HINT, DurationError, format_duration, parse_duration


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("10m", timedelta(minutes=10)),
        ("2h", timedelta(hours=2)),
        ("2d", timedelta(days=2)),
        ("500ms", timedelta(milliseconds=500)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1d2h3m4s5ms", timedelta(days=1, hours=2, minutes=3, seconds=4, milliseconds=5)),
        ("1h 30m", timedelta(hours=1, minutes=30)),
        ("  45s  ", timedelta(seconds=45)),
        ("1.5h", timedelta(hours=1, minutes=30)),
        ("0.25s", timedelta(milliseconds=250)),
        (30, timedelta(seconds=30)),
        (0.5, timedelta(milliseconds=500)),
    ],
)
def test_valid_durations(value: object, expected: timedelta) -> None:
    assert parse_duration(value) == expected


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("10 minutes", "invalid duration '10 minutes'"),
        ("abc", "invalid duration 'abc'"),
        ("1x", "invalid duration '1x'"),
        ("h", "invalid duration 'h'"),
        ("-5s", "invalid duration '-5s'"),
        ("10M", "invalid duration '10M'"),
        ("1e3s", "invalid duration '1e3s'"),
        (True, "invalid duration True"),
        (None, "invalid duration None"),
        ([1], "invalid duration [1]"),
        (float("nan"), "invalid duration nan"),
        (float("inf"), "invalid duration inf"),
    ],
)
def test_invalid_durations_name_the_value_and_the_forms(value: object, problem: str) -> None:
    with pytest.raises(DurationError) as info:
        parse_duration(value)
    assert info.value.problem == problem
    assert info.value.hint == DURATION_HINT


def test_message_of_a_bad_duration() -> None:
    with pytest.raises(ValueError, match=r"use a number with a unit: 500ms, 30s"):
        parse_duration("10 minutes")
    with pytest.raises(DurationError) as info:
        parse_duration("10 minutes")
    assert str(info.value) == (
        "invalid duration '10 minutes' (use a number with a unit: 500ms, 30s, 10m, 2h, 1d, "
        "or combinations like 1h30m)"
    )


def test_a_string_without_unit_is_refused_with_a_hint() -> None:
    with pytest.raises(DurationError) as info:
        parse_duration("30")
    assert info.value.problem == "invalid duration '30': the unit is missing"
    assert "'30s'" in info.value.hint


def test_units_go_from_largest_to_smallest_once() -> None:
    for text in ("30m1h", "1m1m", "1s1m"):
        with pytest.raises(DurationError, match="largest to smallest"):
            parse_duration(text)


def test_empty_string() -> None:
    with pytest.raises(DurationError, match="empty"):
        parse_duration("  ")


@pytest.mark.parametrize("value", ["0s", 0, 0.0, "0ms", -1, -0.5])
def test_zero_and_negative_are_refused_by_default(value: object) -> None:
    with pytest.raises(DurationError, match="must be positive"):
        parse_duration(value)


def test_zero_allowed_when_asked() -> None:
    assert parse_duration("0s", allow_zero=True) == timedelta(0)
    assert parse_duration(0, allow_zero=True) == timedelta(0)
    with pytest.raises(DurationError, match="must be zero or positive"):
        parse_duration(-1, allow_zero=True)


def test_too_large() -> None:
    with pytest.raises(DurationError, match="too large"):
        parse_duration(1e300)
    with pytest.raises(DurationError, match="too large"):
        parse_duration("99999999999d")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(milliseconds=500), "500ms"),
        (timedelta(seconds=30), "30s"),
        (timedelta(hours=1, minutes=30), "1h30m"),
        (timedelta(days=2, seconds=1), "2d1s"),
        (timedelta(seconds=-90), "-1m30s"),
    ],
)
def test_format_duration(value: timedelta, text: str) -> None:
    assert format_duration(value) == text


@given(st.integers(min_value=1, max_value=10**12))
def test_format_then_parse_round_trips(milliseconds: int) -> None:
    value = timedelta(milliseconds=milliseconds)
    assert parse_duration(format_duration(value)) == value
