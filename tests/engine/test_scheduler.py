"""The scheduler end to end on both backends: ticks, catch-up, overlap, pause, trigger, backfill.

Time is driven by a fake clock handed to the runtime; the scheduler thread is woken after each
clock move. Only the per-second tests wait for real ticks.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import engine.dbos
from engine import DBOS, DBOSClient
from engine.core.catchup import MAX_BACKFILL_TICKS, Overlap, OverlapPolicy, overlap_action
from engine.error import (
    DBOSInvalidArgumentError,
    DBOSInvalidCrontabError,
    DBOSUnknownTimezoneError,
)
from engine.runtime import scheduler
from engine.runtime.executor import Runtime
from engine.runtime.scheduler import (
    ScheduleDefinition,
    backfill_schedule,
    delete_schedule,
    get_scheduler,
    pause_schedule,
    resume_schedule,
    schedule_state,
    schedule_states,
    set_schedules,
    trigger_schedule,
    upsert_schedule,
)
from engine.status import WorkflowStatus

T0 = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.now = start.timestamp()

    def __call__(self) -> float:
        return self.now

    def move_to(self, when: datetime) -> None:
        self.now = when.timestamp()
        get_scheduler().wake()


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


@pytest.fixture()
def clock(launch: Callable[..., None], monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock(T0)
    SEEN.clear()
    monkeypatch.setattr(engine.dbos, "Runtime", functools.partial(Runtime, clock=fake))
    return fake


def runs(name: str) -> dict[str, WorkflowStatus]:
    return {w.workflow_id: w for w in DBOS.list_workflows(workflow_id_prefix=f"sched-{name}-")}


def tick_id(name: str, when: datetime) -> str:
    return f"sched-{name}-{when.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"


def finished(name: str, count: int) -> dict[str, WorkflowStatus]:
    def check() -> dict[str, WorkflowStatus] | None:
        found = runs(name)
        done = [w for w in found.values() if w.status in ("SUCCESS", "ERROR", "CANCELLED")]
        return found if len(done) >= count else None

    result: dict[str, WorkflowStatus] = wait_until(check)
    return result


SEEN: list[tuple[datetime, datetime, str]] = []
GATE = threading.Event()


@DBOS.workflow()
def sched_target(scheduled_time: datetime, actual_time: datetime, label: str = "") -> str:
    SEEN.append((scheduled_time, actual_time, label))
    return scheduled_time.isoformat()


@DBOS.workflow()
def sched_blocking(scheduled_time: datetime, actual_time: datetime) -> str:
    GATE.wait(20)
    return scheduled_time.isoformat()


def minutely(name: str = "m", **changes: Any) -> ScheduleDefinition:
    values: dict[str, Any] = {
        "name": name,
        "cron": "* * * * *",
        "workflow_name": "sched_target",
        "overlap": "allow",
        "catchup": "none",
    }
    values.update(changes)
    return ScheduleDefinition(**values)


# -- validation (no database) ---------------------------------------------------------------------


def test_bad_crontab_fails_at_decoration_naming_the_field() -> None:
    with pytest.raises(DBOSInvalidCrontabError, match="minute field '61'"):
        DBOS.scheduled("61 * * * *")


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        ({"cron": "* * * *"}, DBOSInvalidCrontabError, "crontab"),
        ({"timezone": "Europe/Berln"}, DBOSUnknownTimezoneError, "Europe/Berlin"),
        ({"catchup": "sometimes"}, DBOSInvalidArgumentError, "catch-up policy 'sometimes'"),
        ({"overlap": "queue"}, DBOSInvalidArgumentError, "overlap policy 'queue'"),
        ({"max_catchup": 0}, DBOSInvalidArgumentError, "max_catchup"),
        ({"catchup_window_seconds": 0}, DBOSInvalidArgumentError, "catchup_window_seconds"),
        ({"jitter_seconds": -1}, DBOSInvalidArgumentError, "jitter_seconds"),
        ({"name": ""}, DBOSInvalidArgumentError, "name"),
    ],
)
def test_bad_definitions_are_rejected(changes: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        minutely(**changes)


def test_defaults_are_latest_and_skip() -> None:
    definition = ScheduleDefinition(name="d", cron="@daily", workflow_name="w")
    assert (definition.catchup, definition.overlap, definition.max_catchup) == (
        "latest",
        "skip",
        10,
    )


@pytest.mark.parametrize(
    ("policy", "running", "held", "expected"),
    [
        (OverlapPolicy.ALLOW, True, 0, Overlap.START),
        (OverlapPolicy.SKIP, True, 0, Overlap.SKIP),
        (OverlapPolicy.SKIP, False, 0, Overlap.START),
        (OverlapPolicy.CANCEL_OTHER, True, 0, Overlap.CANCEL_AND_START),
        (OverlapPolicy.BUFFER_ONE, True, 0, Overlap.HOLD),
        (OverlapPolicy.BUFFER_ONE, True, 1, Overlap.SKIP),
        (OverlapPolicy.BUFFER_ALL, True, 3, Overlap.HOLD),
        (OverlapPolicy.BUFFER_ALL, False, 1, Overlap.HOLD),
        (OverlapPolicy.BUFFER_ALL, False, 0, Overlap.START),
    ],
)
def test_overlap_action(policy: OverlapPolicy, running: bool, held: int, expected: Overlap) -> None:
    assert overlap_action(policy, running, held) is expected


# -- ticks ----------------------------------------------------------------------------------------


def test_each_tick_runs_once_with_its_nominal_time(
    clock: FakeClock, launch: Callable[..., None]
) -> None:
    launch()
    set_schedules([minutely(args=("hello",))])
    for minute in (1, 2, 3):
        clock.move_to(T0 + timedelta(minutes=minute, seconds=0.5))
        finished("m", minute)
    found = runs("m")
    assert set(found) == {tick_id("m", T0 + timedelta(minutes=k)) for k in (1, 2, 3)}
    assert all(w.status == "SUCCESS" for w in found.values())
    mine = [s for s in SEEN if s[2] == "hello"]
    assert mine[-1][0] == T0 + timedelta(minutes=3)
    assert mine[-1][1] == T0 + timedelta(minutes=3, seconds=0.5)


def _prepared_ticks() -> int:
    return sum(1 for plan in get_scheduler()._prepared.values() if plan is not None)


def test_a_tick_is_prepared_ahead_and_starts_at_its_instant(
    clock: FakeClock, launch: Callable[..., None]
) -> None:
    launch()
    set_schedules([minutely(args=("ahead",))])
    tick = T0 + timedelta(minutes=1)
    clock.move_to(tick - timedelta(seconds=0.03))  # within the lead: decided, row built
    wait_until(lambda: _prepared_ticks() == 1)
    assert runs("m") == {}  # nothing is written before the tick
    clock.move_to(tick)
    finished("m", 1)
    assert [s for s in SEEN if s[2] == "ahead"] == [(tick, tick, "ahead")]
    assert _prepared_ticks() == 0


def test_a_prepared_tick_fired_late_is_decided_afresh(
    clock: FakeClock, launch: Callable[..., None]
) -> None:
    launch()
    set_schedules([minutely(args=("late",))])
    tick = T0 + timedelta(minutes=1)
    clock.move_to(tick - timedelta(seconds=0.03))
    wait_until(lambda: _prepared_ticks() == 1)
    clock.move_to(tick + timedelta(seconds=2))  # the scheduler was held up past the slack
    finished("m", 1)
    # actual_time tells when it really started, not when it was planned.
    assert [s for s in SEEN if s[2] == "late"] == [(tick, tick + timedelta(seconds=2), "late")]


def test_set_schedules_replaces_the_managed_set(
    clock: FakeClock, launch: Callable[..., None]
) -> None:
    launch()
    set_schedules([minutely("a"), minutely("b")])
    set_schedules([minutely("b")])
    assert [s.name for s in schedule_states()] == ["b"]
    clock.move_to(T0 + timedelta(minutes=1, seconds=1))
    finished("b", 1)
    assert runs("a") == {}
    with pytest.raises(DBOSInvalidArgumentError, match="unique"):
        set_schedules([minutely("c"), minutely("c")])
    assert [s.name for s in schedule_states()] == ["b"]


def test_upsert_get_and_delete_one_schedule(launch: Callable[..., None]) -> None:
    launch()
    set_schedules([minutely("keep")])
    upsert_schedule(minutely("extra", cron="*/5 * * * *"))
    upsert_schedule(minutely("extra", cron="*/10 * * * *"))  # same name: replaced
    assert {s.name for s in schedule_states()} == {"keep", "extra"}
    assert schedule_state("extra").cron == "*/10 * * * *"
    delete_schedule("extra")
    assert [s.name for s in schedule_states()] == ["keep"]
    with pytest.raises(DBOSInvalidArgumentError, match="no managed schedule named 'extra'"):
        delete_schedule("extra")


def test_fixed_time_tick_in_the_dst_gap_runs_once_after_it(
    clock: FakeClock, launch: Callable[..., None]
) -> None:
    # Berlin springs forward at 02:00 CET on 2026-03-29: 02:30 does not exist that day.
    clock.now = datetime(2026, 3, 28, 23, 0, tzinfo=UTC).timestamp()
    launch()
    set_schedules([minutely("dst", cron="30 2 * * *", timezone="Europe/Berlin")])
    gap_end = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # 03:00 CEST
    clock.move_to(gap_end + timedelta(seconds=1))
    found = finished("dst", 1)
    assert set(found) == {tick_id("dst", gap_end)}


def test_fall_back_repeat_runs_fixed_time_once_and_intervals_at_each_instant(
    clock: FakeClock, launch: Callable[..., None]
) -> None:
    # Berlin falls back at 03:00 CEST on 2026-10-25: 02:30 happens at 00:30 and at 01:30 UTC.
    clock.now = datetime(2026, 10, 24, 23, 50, tzinfo=UTC).timestamp()
    launch()
    set_schedules(
        [
            minutely("fixed", cron="30 2 * * *", timezone="Europe/Berlin", catchup="all"),
            minutely("every30", cron="0,30 * * * *", timezone="Europe/Berlin", catchup="all"),
        ]
    )
    first, second = (datetime(2026, 10, 25, h, 30, tzinfo=UTC) for h in (0, 1))
    clock.move_to(first + timedelta(seconds=1))
    finished("fixed", 1)
    clock.move_to(second + timedelta(seconds=1))
    every30 = finished("every30", 4)
    assert set(every30) == {
        tick_id("every30", datetime(2026, 10, 25, 0, 0, tzinfo=UTC)),
        tick_id("every30", first),
        tick_id("every30", datetime(2026, 10, 25, 1, 0, tzinfo=UTC)),
        tick_id("every30", second),
    }
    assert set(runs("fixed")) == {tick_id("fixed", first)}  # never again at the repeat


# -- catch-up -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "extra", "expected_minutes"),
    [
        ("none", {}, []),
        ("latest", {}, [10]),
        ("all", {"max_catchup": 3}, [8, 9, 10]),
        ("all", {"catchup_window_seconds": 150}, [8, 9, 10]),
    ],
)
def test_catchup_after_downtime(
    clock: FakeClock,
    launch: Callable[..., None],
    policy: str,
    extra: dict[str, Any],
    expected_minutes: list[int],
) -> None:
    launch()
    definition = minutely("c", catchup=policy, **extra)
    set_schedules([definition])
    DBOS.destroy()
    clock.now = (T0 + timedelta(minutes=10, seconds=30)).timestamp()
    launch()
    set_schedules([definition])
    if expected_minutes:
        finished("c", len(expected_minutes))
    else:
        get_scheduler().run_once()
    expected = {tick_id("c", T0 + timedelta(minutes=m)) for m in expected_minutes}
    assert set(runs("c")) == expected


# -- overlap --------------------------------------------------------------------------------------


@pytest.fixture()
def gate() -> Iterator[threading.Event]:
    GATE.clear()
    yield GATE
    GATE.set()


def _statuses(name: str) -> dict[int, str]:
    return {
        int(wid.rsplit(":", 2)[-2]): w.status
        for wid, w in runs(name).items()
        if "trigger" not in wid
    }


def _watermark_is(name: str, expected_ms: int) -> bool:
    return get_scheduler().schedules.watermark(name) == expected_ms


@pytest.mark.parametrize(
    ("policy", "while_blocked", "after"),
    [
        (
            "allow",
            {1: "PENDING", 2: "PENDING", 3: "PENDING"},
            {1: "SUCCESS", 2: "SUCCESS", 3: "SUCCESS"},
        ),
        ("skip", {1: "PENDING"}, {1: "SUCCESS"}),
        ("buffer_one", {1: "PENDING", 2: "ENQUEUED"}, {1: "SUCCESS", 2: "SUCCESS"}),
        (
            "buffer_all",
            {1: "PENDING", 2: "ENQUEUED", 3: "ENQUEUED"},
            {1: "SUCCESS", 2: "SUCCESS", 3: "SUCCESS"},
        ),
        (
            "cancel_other",
            {1: "CANCELLED", 2: "CANCELLED", 3: "PENDING"},
            {1: "CANCELLED", 2: "CANCELLED", 3: "SUCCESS"},
        ),
    ],
)
def test_overlap_policies(
    clock: FakeClock,
    launch: Callable[..., None],
    gate: threading.Event,
    policy: str,
    while_blocked: dict[int, str],
    after: dict[int, str],
) -> None:
    launch()
    set_schedules([minutely("o", workflow_name="sched_blocking", overlap=policy)])
    for minute in (1, 2, 3):
        clock.move_to(T0 + timedelta(minutes=minute, seconds=1))
        watermark = int((T0 + timedelta(minutes=minute)).timestamp() * 1000)
        wait_until(functools.partial(_watermark_is, "o", watermark))
    wait_until(lambda: _statuses("o") == while_blocked)
    gate.set()
    wait_until(lambda: _statuses("o") == after)


# -- pause, resume, trigger, backfill -------------------------------------------------------------


def test_pause_is_durable_and_resume_skips_paused_ticks(
    clock: FakeClock, launch: Callable[..., None], db_url: str
) -> None:
    launch()
    set_schedules([minutely("p", catchup="all")])
    pause_schedule("p")
    clock.move_to(T0 + timedelta(minutes=1, seconds=1))
    get_scheduler().run_once()
    DBOS.destroy()
    clock.now = (T0 + timedelta(minutes=5, seconds=1)).timestamp()
    launch()
    set_schedules([minutely("p", catchup="all")])
    state = schedule_state("p")
    assert state.paused and state.next_fire_time is None
    client = DBOSClient(db_url)
    client.clock = clock
    try:
        resume_schedule("p", client=client)  # from "another process", no scheduler needed
    finally:
        client.destroy()
    assert runs("p") == {}
    clock.move_to(T0 + timedelta(minutes=6, seconds=1))
    found = finished("p", 1)
    assert set(found) == {tick_id("p", T0 + timedelta(minutes=6))}
    assert schedule_state("p").next_fire_time == T0 + timedelta(minutes=7)


def test_trigger_runs_now_without_colliding_with_ticks(
    clock: FakeClock, launch: Callable[..., None], db_url: str
) -> None:
    launch()
    set_schedules([minutely("t", args=("trig",))])
    first = trigger_schedule("t")
    client = DBOSClient(db_url)
    client.clock = clock
    try:
        second = trigger_schedule("t", client=client)
    finally:
        client.destroy()
    assert first != second and "trigger" in first
    for wid in (first, second):
        assert DBOS.retrieve_workflow(wid).get_result() == T0.isoformat()
    state = schedule_state("t")
    assert state.last_workflow_id is None  # triggers are not ticks


def test_backfill_is_idempotent_and_bounded(clock: FakeClock, launch: Callable[..., None]) -> None:
    launch()
    set_schedules([minutely("b")])
    start, end = T0 - timedelta(minutes=5), T0 - timedelta(minutes=1)
    ids = backfill_schedule("b", start, end)
    assert ids == [tick_id("b", start + timedelta(minutes=k)) for k in range(5)]
    finished("b", 5)
    again = backfill_schedule("b", start - timedelta(minutes=1), end)
    assert again[1:] == ids
    finished("b", 6)
    assert len(runs("b")) == 6
    assert sum(1 for s in SEEN if s[0] == start) == 1
    with pytest.raises(DBOSInvalidArgumentError, match="after end"):
        backfill_schedule("b", end, start)
    with pytest.raises(DBOSInvalidArgumentError, match=str(MAX_BACKFILL_TICKS)):
        backfill_schedule("b", T0 - timedelta(days=30), T0)
    with pytest.raises(DBOSInvalidArgumentError, match="no schedule named 'nope'"):
        backfill_schedule("nope", start, end)


# -- real time ------------------------------------------------------------------------------------


def test_decorated_every_second_schedule(launch: Callable[..., None]) -> None:
    fired: list[datetime] = []

    @DBOS.scheduled("* * * * * *")
    @DBOS.workflow(name="every_second_decorated")
    def every_second(scheduled_time: datetime, actual_time: datetime) -> None:
        fired.append(scheduled_time)

    try:
        launch()
        wait_until(lambda: len(fired) >= 2, timeout=10)
        ids = {w.workflow_id for w in DBOS.list_workflows(name="every_second_decorated")}
        assert len(ids) == len(set(ids))
        assert all(t.microsecond == 0 and t.tzinfo is not None for t in fired)
        assert "every_second_decorated" in {s.name for s in schedule_states()}
    finally:
        scheduler.unregister_scheduled("every_second_decorated")
    assert "every_second_decorated" not in {d.name for d in scheduler.scheduled_definitions()}


@pytest.mark.slow
def test_two_processes_run_each_tick_once(db_url: str, tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    log.touch()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [
        sys.executable,
        "-m",
        "tests.engine.scheduling_worker",
        "ticks",
        db_url,
        str(log),
        "3.5",
    ]
    procs = [
        subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for proc in procs:
        assert proc.wait(timeout=60) == 0
    lines = log.read_text().split()
    ticks = [lines[i + 1] for i in range(0, len(lines), 3)]
    assert len(ticks) >= 3
    assert len(ticks) == len(set(ticks)), f"a tick ran twice: {sorted(ticks)}"
