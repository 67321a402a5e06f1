"""Tests for engine.core.catchup: policies, missed ticks after downtime, backfill ranges."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from engine.core.catchup import (
    MAX_BACKFILL_TICKS,
    MAX_CATCHUP_HARD_LIMIT,
    CatchupPolicy,
    OverlapPolicy,
    backfill_ticks,
    missed_ticks,
    parse_catchup_policy,
    parse_overlap_policy,
)
from engine.core.cron import CronSchedule
from engine.error import DBOSInvalidArgumentError

HOURLY = CronSchedule.parse("0 * * * *")
LAST = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
NOW = datetime(2026, 1, 1, 5, 30, tzinfo=UTC)


def at(hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 1, 1, hour, minute, second, tzinfo=UTC)


# --------------------------------------------------------------------------------------------
# Policy parsing
# --------------------------------------------------------------------------------------------


def test_documented_limits() -> None:
    assert MAX_CATCHUP_HARD_LIMIT == 1000
    assert MAX_BACKFILL_TICKS == 10_000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("none", CatchupPolicy.NONE),
        ("latest", CatchupPolicy.LATEST),
        ("all", CatchupPolicy.ALL),
        ("ALL", CatchupPolicy.ALL),
        ("  Latest ", CatchupPolicy.LATEST),
        (CatchupPolicy.ALL, CatchupPolicy.ALL),
    ],
)
def test_parse_catchup_policy(text: str, expected: CatchupPolicy) -> None:
    assert parse_catchup_policy(text) is expected


@pytest.mark.parametrize("bad", ["", "some", "every", "non e", None, 1, OverlapPolicy.SKIP])
def test_parse_catchup_policy_lists_valid_names(bad: object) -> None:
    with pytest.raises(DBOSInvalidArgumentError) as info:
        parse_catchup_policy(bad)  # type: ignore[arg-type]
    assert "unknown catch-up policy" in str(info.value)
    assert "use one of: none, latest, all" in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("skip", OverlapPolicy.SKIP),
        ("buffer_one", OverlapPolicy.BUFFER_ONE),
        ("buffer-one", OverlapPolicy.BUFFER_ONE),
        ("BUFFER_ALL", OverlapPolicy.BUFFER_ALL),
        ("cancel_other", OverlapPolicy.CANCEL_OTHER),
        ("allow", OverlapPolicy.ALLOW),
        (OverlapPolicy.ALLOW, OverlapPolicy.ALLOW),
    ],
)
def test_parse_overlap_policy(text: str, expected: OverlapPolicy) -> None:
    assert parse_overlap_policy(text) is expected


@pytest.mark.parametrize("bad", ["", "buffer", "cancel", "queue", None, 3])
def test_parse_overlap_policy_lists_valid_names(bad: object) -> None:
    with pytest.raises(DBOSInvalidArgumentError) as info:
        parse_overlap_policy(bad)  # type: ignore[arg-type]
    assert "unknown overlap policy" in str(info.value)
    assert "skip, buffer_one, buffer_all, cancel_other, allow" in str(info.value)


def test_policies_are_strings() -> None:
    assert isinstance(CatchupPolicy.LATEST, str)
    assert f"{CatchupPolicy.LATEST}" == "latest"
    assert f"{OverlapPolicy.BUFFER_ONE}" == "buffer_one"
    assert [p.value for p in CatchupPolicy] == ["none", "latest", "all"]
    assert [p.value for p in OverlapPolicy] == [
        "skip",
        "buffer_one",
        "buffer_all",
        "cancel_other",
        "allow",
    ]


# --------------------------------------------------------------------------------------------
# missed_ticks
# --------------------------------------------------------------------------------------------


def test_policy_none_runs_nothing() -> None:
    assert missed_ticks(HOURLY, LAST, NOW, CatchupPolicy.NONE, None, 100) == []


def test_policy_latest_runs_the_most_recent_missed_tick() -> None:
    assert missed_ticks(HOURLY, LAST, NOW, CatchupPolicy.LATEST, None, 100) == [at(5)]


def test_policy_all_runs_every_missed_tick_in_order() -> None:
    assert missed_ticks(HOURLY, LAST, NOW, CatchupPolicy.ALL, None, 100) == [
        at(1),
        at(2),
        at(3),
        at(4),
        at(5),
    ]


def test_last_fired_is_exclusive_and_now_inclusive() -> None:
    assert missed_ticks(HOURLY, at(1), at(3), CatchupPolicy.ALL, None, 100) == [at(2), at(3)]


def test_nothing_missed() -> None:
    for policy in CatchupPolicy:
        assert missed_ticks(HOURLY, at(5), NOW, policy, None, 100) == []


def test_window_limits_policy_all() -> None:
    window = timedelta(hours=2)  # cutoff 03:30
    assert missed_ticks(HOURLY, LAST, NOW, CatchupPolicy.ALL, window, 100) == [at(4), at(5)]


def test_window_boundary_is_inclusive() -> None:
    window = timedelta(hours=2)  # cutoff exactly 03:00
    assert missed_ticks(HOURLY, LAST, at(5), CatchupPolicy.ALL, window, 100) == [
        at(3),
        at(4),
        at(5),
    ]


def test_window_also_limits_policy_latest() -> None:
    daily = CronSchedule.parse("0 0 * * *")
    last = datetime(2025, 12, 1, tzinfo=UTC)
    now = datetime(2026, 1, 1, 6, tzinfo=UTC)
    assert missed_ticks(daily, last, now, CatchupPolicy.LATEST, timedelta(hours=1), 10) == []
    assert missed_ticks(daily, last, now, CatchupPolicy.LATEST, timedelta(hours=6), 10) == [
        datetime(2026, 1, 1, tzinfo=UTC)
    ]


def test_max_catchup_keeps_the_most_recent() -> None:
    assert missed_ticks(HOURLY, LAST, NOW, CatchupPolicy.ALL, None, 2) == [at(4), at(5)]
    assert missed_ticks(HOURLY, LAST, NOW, CatchupPolicy.LATEST, None, 5) == [at(5)]


def test_hard_limit_caps_max_catchup() -> None:
    every_second = CronSchedule.parse("* * * * * *")
    ticks = missed_ticks(every_second, LAST, NOW, CatchupPolicy.ALL, None, 50_000)
    assert len(ticks) == MAX_CATCHUP_HARD_LIMIT
    assert ticks[-1] == NOW
    assert ticks[0] == NOW - timedelta(seconds=MAX_CATCHUP_HARD_LIMIT - 1)


def test_long_outage_of_fast_schedule_is_cheap() -> None:
    every_second = CronSchedule.parse("* * * * * *", "Europe/Berlin")
    last = datetime(2025, 1, 1, tzinfo=UTC)  # about 31 million missed ticks
    started = time.perf_counter()
    ticks = missed_ticks(every_second, last, NOW, CatchupPolicy.ALL, None, 1000)
    assert len(ticks) == 1000
    assert missed_ticks(every_second, last, NOW, CatchupPolicy.LATEST, None, 1000) == [NOW]
    assert time.perf_counter() - started < 5  # walks back from now; never enumerates the gap


def test_brand_new_schedule_does_not_backfill() -> None:
    for policy in CatchupPolicy:
        assert missed_ticks(HOURLY, None, NOW, policy, None, 100) == []


def test_last_fired_in_the_future_yields_nothing() -> None:
    # e.g. the clock stepped back after the last run
    for policy in CatchupPolicy:
        assert missed_ticks(HOURLY, at(7), NOW, policy, None, 100) == []
        assert missed_ticks(HOURLY, NOW, NOW, policy, None, 100) == []


def test_policy_given_as_string_and_mixed_zones() -> None:
    last = LAST.astimezone(ZoneInfo("America/New_York"))
    now = NOW.astimezone(ZoneInfo("Asia/Tokyo"))
    assert missed_ticks(HOURLY, last, now, "latest", None, 1) == [at(5)]  # type: ignore[arg-type]


def test_catchup_across_fall_back_runs_the_repeated_time_once() -> None:
    schedule = CronSchedule.parse("30 2 * * *", "Europe/Berlin")
    last = datetime(2026, 10, 24, 0, 30, tzinfo=UTC)
    now = datetime(2026, 10, 26, 12, tzinfo=UTC)
    assert missed_ticks(schedule, last, now, CatchupPolicy.ALL, None, 10) == [
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
        datetime(2026, 10, 26, 1, 30, tzinfo=UTC),
    ]


def test_catchup_across_spring_forward_runs_the_gap_tick_once() -> None:
    schedule = CronSchedule.parse("0,30 2 * * *", "Europe/Berlin")
    last = datetime(2026, 3, 28, 1, 30, tzinfo=UTC)
    now = datetime(2026, 3, 29, 12, tzinfo=UTC)
    assert missed_ticks(schedule, last, now, CatchupPolicy.ALL, None, 10) == [
        datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    ]


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "10", None])
def test_bad_max_catchup(bad: object) -> None:
    with pytest.raises(DBOSInvalidArgumentError, match="max_catchup must be a positive integer"):
        missed_ticks(HOURLY, LAST, NOW, CatchupPolicy.ALL, None, bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [timedelta(0), timedelta(seconds=-1), 3600, "1h"])
def test_bad_catchup_window(bad: object) -> None:
    with pytest.raises(DBOSInvalidArgumentError, match="catchup_window must be a positive"):
        missed_ticks(HOURLY, LAST, NOW, CatchupPolicy.ALL, bad, 10)  # type: ignore[arg-type]


def test_bad_datetimes_and_policy() -> None:
    naive = datetime(2026, 1, 1)
    with pytest.raises(DBOSInvalidArgumentError, match="now must be a timezone-aware"):
        missed_ticks(HOURLY, LAST, naive, CatchupPolicy.ALL, None, 10)
    with pytest.raises(DBOSInvalidArgumentError, match="last_fired must be a timezone-aware"):
        missed_ticks(HOURLY, naive, NOW, CatchupPolicy.ALL, None, 10)
    with pytest.raises(DBOSInvalidArgumentError, match="unknown catch-up policy 'sometimes'"):
        missed_ticks(HOURLY, LAST, NOW, "sometimes", None, 10)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# backfill_ticks
# --------------------------------------------------------------------------------------------


def test_backfill_includes_both_ends() -> None:
    assert backfill_ticks(HOURLY, at(1), at(3)) == [at(1), at(2), at(3)]
    assert backfill_ticks(HOURLY, at(1, 0, 1), at(3, 59)) == [at(2), at(3)]


def test_backfill_single_instant() -> None:
    assert backfill_ticks(HOURLY, at(2), at(2)) == [at(2)]
    assert backfill_ticks(HOURLY, at(2, 30), at(2, 30)) == []


def test_backfill_reversed_range() -> None:
    with pytest.raises(DBOSInvalidArgumentError, match="is after end"):
        backfill_ticks(HOURLY, at(3), at(1))


def test_backfill_at_the_limit_is_allowed() -> None:
    minutely = CronSchedule.parse("* * * * *")
    end = LAST + timedelta(minutes=MAX_BACKFILL_TICKS - 1)
    ticks = backfill_ticks(minutely, LAST, end)
    assert len(ticks) == MAX_BACKFILL_TICKS
    assert ticks[0] == LAST and ticks[-1] == end


def test_backfill_over_the_limit_is_rejected_with_advice() -> None:
    minutely = CronSchedule.parse("* * * * *")
    end = LAST + timedelta(minutes=MAX_BACKFILL_TICKS)  # one tick too many
    with pytest.raises(DBOSInvalidArgumentError) as info:
        backfill_ticks(minutely, LAST, end)
    message = str(info.value)
    assert "more than 10000 ticks" in message
    assert "the limit is 10000" in message
    assert "shorter range" in message
    last_allowed = LAST + timedelta(minutes=MAX_BACKFILL_TICKS - 1)
    assert f"end it at {last_allowed.isoformat()}" in message


def test_backfill_far_over_the_limit_estimates_the_count_quickly() -> None:
    every_second = CronSchedule.parse("* * * * * *")
    start = datetime(2025, 1, 1, tzinfo=UTC)
    end = datetime(2026, 1, 1, tzinfo=UTC)  # 31,536,001 ticks
    started = time.perf_counter()
    with pytest.raises(DBOSInvalidArgumentError) as info:
        backfill_ticks(every_second, start, end)
    assert time.perf_counter() - started < 5
    assert "about 31536001;" in str(info.value)


def test_backfill_rejects_naive_datetimes() -> None:
    with pytest.raises(DBOSInvalidArgumentError, match="start must be a timezone-aware"):
        backfill_ticks(HOURLY, datetime(2026, 1, 1), at(3))
    with pytest.raises(DBOSInvalidArgumentError, match="end must be a timezone-aware"):
        backfill_ticks(HOURLY, at(1), datetime(2026, 1, 1))
