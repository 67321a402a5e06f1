"""Tests for engine.core.catchup: policies, missed ticks after downtime, backfill ranges."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from engine.core.catchup import (
    DROPPED_COUNT_LIMIT,
    MAX_BACKFILL_TICKS,
    MAX_CATCHUP_HARD_LIMIT,
    CatchupPolicy,
    OverlapPolicy,
    backfill_ticks,
    fell_behind,
    missed_ticks,
    parse_catchup_policy,
    parse_overlap_policy,
    plan_catchup,
    previous_run_verdict,
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


# --------------------------------------------------------------------------------------------
# fell_behind: a gap found while running (a stall, a suspended VM)
# --------------------------------------------------------------------------------------------

EVERY_SECOND = CronSchedule.parse("* * * * * *")
MINUTELY = CronSchedule.parse("* * * * *")


@pytest.mark.parametrize(
    ("schedule", "lateness", "behind"),
    [
        (EVERY_SECOND, 0.0, False),
        (EVERY_SECOND, 0.999, False),  # late, but its successor is not due yet: it just fires
        (EVERY_SECOND, 1.0, True),  # its successor is due too
        (MINUTELY, 1.5, False),
        (MINUTELY, 59.9, False),
        (MINUTELY, 60.0, True),
        (HOURLY, 3599.0, False),
        (HOURLY, 7200.0, True),
    ],
)
def test_a_tick_is_behind_when_late_by_its_interval(
    schedule: CronSchedule, lateness: float, behind: bool
) -> None:
    assert fell_behind(schedule, at(1), lateness) is behind


def test_behind_uses_the_interval_that_follows_the_tick() -> None:
    # 0 and 5 past the hour: after :00 the interval is 5 minutes, after :05 it is 55.
    schedule = CronSchedule.parse("0,5 * * * *")
    assert fell_behind(schedule, at(1), 300.0)
    assert not fell_behind(schedule, at(1, 5), 300.0)
    assert fell_behind(schedule, at(1, 5), 3300.0)


def test_behind_across_a_dst_gap_follows_real_time() -> None:
    # New York springs forward on 2026-03-08: 01:00 EST (06:00 UTC) is followed by 03:00 EDT
    # (07:00 UTC), one real hour later.
    schedule = CronSchedule.parse("0 * * * *", "America/New_York")
    tick = datetime(2026, 3, 8, 6, 0, tzinfo=UTC)
    assert not fell_behind(schedule, tick, 3599.0)
    assert fell_behind(schedule, tick, 3600.0)


# --------------------------------------------------------------------------------------------
# plan_catchup: what a gap runs and drops, and how it is told
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "window", "max_catchup", "run", "dropped"),
    [
        (CatchupPolicy.NONE, None, 10, [], 5),
        (CatchupPolicy.LATEST, None, 10, [at(5)], 4),
        (CatchupPolicy.ALL, None, 10, [at(1), at(2), at(3), at(4), at(5)], 0),
        (CatchupPolicy.ALL, None, 2, [at(4), at(5)], 3),
        (CatchupPolicy.ALL, timedelta(hours=2), 10, [at(4), at(5)], 3),
        (CatchupPolicy.LATEST, timedelta(minutes=10), 10, [], 5),
    ],
)
def test_plan_runs_what_missed_ticks_picks_and_counts_the_rest(
    policy: CatchupPolicy,
    window: timedelta | None,
    max_catchup: int,
    run: list[datetime],
    dropped: int,
) -> None:
    plan = plan_catchup(HOURLY, LAST, NOW, policy, window, max_catchup)
    assert list(plan.run) == run == missed_ticks(HOURLY, LAST, NOW, policy, window, max_catchup)
    assert (plan.dropped, plan.dropped_estimated, plan.missed) == (dropped, False, 5)
    assert (plan.gap_start, plan.gap_end, plan.policy, plan.paused) == (LAST, NOW, policy, False)


def test_a_paused_schedule_plans_nothing() -> None:
    for policy in CatchupPolicy:
        plan = plan_catchup(HOURLY, LAST, NOW, policy, None, 10, paused=True)
        assert (plan.run, plan.dropped, plan.missed, plan.paused) == ((), 0, 0, True)
        assert plan.policy is policy


def test_no_gap_plans_nothing() -> None:
    for policy in CatchupPolicy:
        assert plan_catchup(HOURLY, None, NOW, policy, None, 10).missed == 0  # never fired
        assert plan_catchup(HOURLY, at(7), NOW, policy, None, 10).missed == 0  # clock stepped back
        assert plan_catchup(HOURLY, at(5), NOW, policy, None, 10).missed == 0  # nothing due


def test_a_stall_longer_than_the_hard_limit_is_bounded() -> None:
    stalled_at = NOW - timedelta(seconds=5000)
    plan = plan_catchup(EVERY_SECOND, stalled_at, NOW, CatchupPolicy.ALL, None, 50_000)
    assert len(plan.run) == MAX_CATCHUP_HARD_LIMIT
    assert plan.run[-1] == NOW
    assert plan.missed == 5000  # the dropped ones are estimated from their even spacing
    assert plan.dropped_estimated


def test_dropped_ticks_are_counted_exactly_up_to_the_limit() -> None:
    last = NOW - timedelta(seconds=DROPPED_COUNT_LIMIT + 1)
    plan = plan_catchup(EVERY_SECOND, last, NOW, CatchupPolicy.LATEST, None, 10)
    assert (plan.dropped, plan.dropped_estimated) == (DROPPED_COUNT_LIMIT, False)
    plan = plan_catchup(EVERY_SECOND, last - timedelta(seconds=1), NOW, "latest", None, 10)  # type: ignore[arg-type]
    assert (plan.dropped, plan.dropped_estimated) == (DROPPED_COUNT_LIMIT + 1, True)


def test_a_month_long_gap_is_planned_cheaply() -> None:
    last = datetime(2025, 12, 1, tzinfo=UTC)
    started = time.perf_counter()
    for policy in CatchupPolicy:
        plan = plan_catchup(EVERY_SECOND, last, NOW, policy, None, 10)
        assert plan.missed == int((NOW - last).total_seconds())
    assert time.perf_counter() - started < 2


def test_describe_names_the_schedule_gap_policy_and_counts() -> None:
    plan = plan_catchup(HOURLY, LAST, NOW, CatchupPolicy.LATEST, None, 10)
    text = plan.describe("reports", "stall")
    assert text == (
        "schedule 'reports': 5 tick(s) missed in the gap 2026-01-01T00:00:00+00:00 .. "
        "2026-01-01T05:30:00+00:00 (19800.0 s) (stall); catch-up policy 'latest' runs 1 tick "
        "(2026-01-01T05:00:00+00:00) and drops 4"
    )
    assert plan.fields("reports", "stall") == {
        "schedule": "reports",
        "cause": "stall",
        "policy": "latest",
        "paused": False,
        "gap_start": "2026-01-01T00:00:00+00:00",
        "gap_end": "2026-01-01T05:30:00+00:00",
        "ticks_run": ["2026-01-01T05:00:00+00:00"],
        "ticks_dropped": 4,
        "ticks_dropped_estimated": False,
    }
    every = plan_catchup(HOURLY, LAST, NOW, CatchupPolicy.ALL, None, 10).describe("r", "x")
    assert "runs 5 ticks (2026-01-01T01:00:00+00:00 .. 2026-01-01T05:00:00+00:00)" in every
    assert every.endswith("drops 0")
    none = plan_catchup(HOURLY, LAST, NOW, CatchupPolicy.NONE, None, 10).describe("r", "x")
    assert "runs no tick and drops 5" in none
    long_gap = plan_catchup(EVERY_SECOND, LAST, NOW, CatchupPolicy.NONE, None, 10)
    assert long_gap.describe("r", "x").endswith("drops about 19800")


def test_a_paused_plan_does_not_claim_to_catch_up() -> None:
    plan = plan_catchup(HOURLY, LAST, NOW, CatchupPolicy.ALL, None, 10, paused=True)
    text = plan.describe("reports", "failed pass")
    assert text.startswith("schedule 'reports' is paused: nothing is caught up for the gap")
    assert "catching up" not in text and "runs" not in text
    assert plan.fields("reports", "failed pass")["ticks_run"] == []


# --------------------------------------------------------------------------------------------
# previous_run_verdict: which unfinished previous run an overlap policy waits on
# --------------------------------------------------------------------------------------------

NOW_MS = 1_000_000_000
STALE_AFTER_MS = 30_000


def verdict(status: str | None, **changes: object) -> tuple[bool, str | None]:
    facts: dict[str, object] = {
        "queued": False,
        "executor_id": "other",
        "run_version": "v1",
        "owner_version": "v1",
        "owner_heartbeat_ms": NOW_MS - 1000,
        "now_ms": NOW_MS,
        "stale_after_ms": STALE_AFTER_MS,
        "me": "me",
        "my_version": "v1",
    }
    facts.update(changes)
    return previous_run_verdict(status, **facts)  # type: ignore[arg-type]


@pytest.mark.parametrize("status", [None, "SUCCESS", "ERROR", "CANCELLED"])
def test_a_finished_run_is_not_running(status: str | None) -> None:
    assert verdict(status) == (False, None)


def test_an_enqueued_run_on_a_real_queue_is_running() -> None:
    assert verdict("ENQUEUED", queued=True, executor_id=None, owner_heartbeat_ms=None) == (
        True,
        None,
    )
    running, reason = verdict("ENQUEUED", queued=False)
    assert not running and reason == "it is ENQUEUED on no queue a worker serves"


def test_a_pending_run_of_a_live_executor_of_its_version_is_running() -> None:
    assert verdict("PENDING") == (True, None)
    assert verdict("PENDING", owner_heartbeat_ms=NOW_MS - STALE_AFTER_MS) == (True, None)


def test_a_pending_run_of_this_process_counts_by_version_only() -> None:
    # This process is alive whatever its heartbeat row says (it may be late, or gone).
    assert verdict("PENDING", executor_id="me", owner_heartbeat_ms=None) == (True, None)
    running, reason = verdict("PENDING", executor_id="me", run_version="v0")
    assert not running
    assert (
        reason == "it belongs to application version 'v0', but its executor 'me' runs version 'v1'"
    )


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        (
            {"owner_heartbeat_ms": NOW_MS - STALE_AFTER_MS - 1},
            "its executor 'other' sent no heartbeat for 30 s (executor timeout 30 s)",
        ),
        (
            {"owner_heartbeat_ms": NOW_MS - 600_000},
            "its executor 'other' sent no heartbeat for 600 s (executor timeout 30 s)",
        ),
        ({"owner_heartbeat_ms": None}, "its executor 'other' is not alive (no heartbeat recorded)"),
        (
            {"owner_version": "v2"},
            "it belongs to application version 'v1', but its executor 'other' runs version 'v2'",
        ),
        ({"executor_id": None}, "it is PENDING on no executor"),
    ],
)
def test_a_pending_run_no_live_executor_will_finish_is_not_waited_on(
    changes: dict[str, object], reason: str
) -> None:
    assert verdict("PENDING", **changes) == (False, reason)
