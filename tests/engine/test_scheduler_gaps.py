"""Gaps in firing while the scheduler runs, and overlap with a previous run nobody will finish.

- A stall longer than the interval (the clock jumps: the process or its VM was suspended) is
  caught up from the watermark by the schedule's policy, never as a burst of every missed tick.
- A PostgreSQL outage (a dedicated server, stopped and started again) is caught up the same way.
- A previous run whose executor is dead, or runs another application version, does not stop
  `skip` or `buffer_one` for good; one owned by a live executor of its version still blocks.

Time is a fake clock handed to the runtime, except in the outage test, which needs real time.
"""

from __future__ import annotations

import functools
import itertools
import logging
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import delete, insert, update

import engine.dbos
from engine import DBOS
from engine.runtime.executor import Runtime
from engine.runtime.scheduler import (
    CAUSE_STALL,
    ScheduleDefinition,
    get_scheduler,
    pause_schedule,
    set_schedules,
)
from engine.storage.schema import executors, schedules, workflow_status
from tests.engine.test_scheduler import (
    T0,
    FakeClock,
    finished,
    minutely,
    runs,
    tick_id,
    wait_until,
)
from tests.pgserver import start_postgres

ENGINE_LOGGER = "keeptime.engine"


@pytest.fixture()
def clock(launch: Callable[..., None], monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock(T0)
    monkeypatch.setattr(engine.dbos, "Runtime", functools.partial(Runtime, clock=fake))
    return fake


def minute(k: int) -> datetime:
    return T0 + timedelta(minutes=k)


def catch_up_records(
    caplog: pytest.LogCaptureFixture, name: str, cause: str | None = None
) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if getattr(r, "schedule", None) == name
        and hasattr(r, "ticks_run")
        and (cause is None or getattr(r, "cause", None) == cause)
    ]


# -- a stall longer than the interval -------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "extra", "caught_up"),
    [
        ("none", {}, []),
        ("latest", {}, [10]),
        ("all", {}, [2, 3, 4, 5, 6, 7, 8, 9, 10]),
        ("all", {"max_catchup": 3}, [8, 9, 10]),
        ("all", {"catchup_window_seconds": 150}, [8, 9, 10]),
    ],
)
def test_a_stall_longer_than_the_interval_follows_the_catchup_policy(
    clock: FakeClock,
    launch: Callable[..., None],
    caplog: pytest.LogCaptureFixture,
    policy: str,
    extra: dict[str, Any],
    caught_up: list[int],
) -> None:
    caplog.set_level(logging.INFO, logger=ENGINE_LOGGER)
    launch()
    set_schedules([minutely("g", catchup=policy, **extra)])
    clock.move_to(minute(1) + timedelta(seconds=1))
    finished("g", 1)
    # Suspended from 12:01:01 to 12:10:30: ticks 2..10 came due meanwhile.
    clock.move_to(minute(10) + timedelta(seconds=30))
    [record] = wait_until(lambda: catch_up_records(caplog, "g", CAUSE_STALL))
    finished("g", 1 + len(caught_up))
    # The regular timer restarted from now: the next tick runs on time, once.
    clock.move_to(minute(11) + timedelta(seconds=1))
    found = finished("g", 2 + len(caught_up))
    expected = [1, *caught_up, 11]
    assert set(found) == {tick_id("g", minute(k)) for k in expected}
    assert all(w.status == "SUCCESS" for w in found.values())
    assert record.policy == policy
    assert record.ticks_run == [minute(k).isoformat() for k in caught_up]
    assert record.ticks_dropped == 9 - len(caught_up)
    assert record.gap_start == minute(1).isoformat()
    assert "catch-up policy" in record.getMessage()


def test_a_tick_late_by_less_than_its_interval_just_fires_late(
    clock: FakeClock, launch: Callable[..., None], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ENGINE_LOGGER)
    launch()
    set_schedules([minutely("late", catchup="none")])
    clock.move_to(minute(1) + timedelta(seconds=59))  # 59 s late: tick 2 is not due yet
    found = finished("late", 1)
    assert set(found) == {tick_id("late", minute(1))}
    assert catch_up_records(caplog, "late") == []


def test_a_paused_schedule_catches_up_nothing_after_a_stall_and_says_so_quietly(
    clock: FakeClock, launch: Callable[..., None], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=ENGINE_LOGGER)
    launch()
    set_schedules([minutely("p", catchup="all")])
    pause_schedule("p")
    clock.move_to(minute(10) + timedelta(seconds=30))
    [record] = wait_until(lambda: catch_up_records(caplog, "p", CAUSE_STALL))
    assert record.levelno == logging.DEBUG and record.paused
    assert record.ticks_run == []
    assert "is paused: nothing is caught up" in record.getMessage()
    assert not any("catching up" in r.getMessage() for r in caplog.records)
    assert runs("p") == {}


# -- a PostgreSQL outage while the scheduler runs -------------------------------------------------

OUTAGE_SECONDS = 6.0
OUTAGE_SEEN: list[tuple[str, datetime]] = []


@DBOS.workflow()
def outage_target(scheduled_time: datetime, actual_time: datetime, label: str) -> None:
    OUTAGE_SEEN.append((label, scheduled_time))


def every_second(name: str, **changes: Any) -> ScheduleDefinition:
    values: dict[str, Any] = {
        "name": name,
        "cron": "* * * * * *",
        "workflow_name": "outage_target",
        "overlap": "allow",
        "args": (name,),
    }
    values.update(changes)
    return ScheduleDefinition(**values)


def executed(label: str) -> list[datetime]:
    return [tick for name, tick in list(OUTAGE_SEEN) if name == label]


def ran_past(label: str, instant: float) -> bool:
    return any(tick.timestamp() >= instant for tick in executed(label))


def holes(ticks: list[datetime]) -> list[tuple[datetime, datetime]]:
    """Pairs of consecutive executed ticks more than one second apart."""
    ordered = sorted(set(ticks))
    return [(a, b) for a, b in itertools.pairwise(ordered) if b - a > timedelta(seconds=1)]


@pytest.mark.slow
def test_a_postgres_outage_is_caught_up_per_policy(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=ENGINE_LOGGER)
    OUTAGE_SEEN.clear()
    server = start_postgres()  # our own: the session's server must not go down under others
    try:
        with psycopg.connect(
            f"host=127.0.0.1 port={server.port} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            conn.execute('CREATE DATABASE "outage"')
        DBOS.destroy()
        DBOS(config={"name": "gap-outage", "system_database_url": server.url_for("outage")})
        DBOS.launch()
        set_schedules(
            [
                every_second("out-all", catchup="all", max_catchup=60),
                every_second("out-latest", catchup="latest"),
            ]
        )
        wait_until(lambda: len(executed("out-all")) >= 3 and len(executed("out-latest")) >= 3)
        server.halt("fast")
        halted = time.time()
        time.sleep(OUTAGE_SECONDS)  # the outage itself, not a wait for a result
        server.start()
        back = time.time()
        wait_until(
            lambda: ran_past("out-all", back + 3) and ran_past("out-latest", back + 3), timeout=40
        )
    finally:
        DBOS.destroy()
        server.stop()

    missed = [t for t in executed("out-all") if halted + 1 < t.timestamp() < back - 1]
    # `all`: every tick ran, the ones missed during the outage included, each once.
    assert holes(executed("out-all")) == []
    assert len(missed) >= OUTAGE_SECONDS - 3
    counts = Counter(t for t in executed("out-all") if t.timestamp() > halted)
    assert set(counts.values()) == {1}, counts
    decisions = catch_up_records(caplog, "out-all")
    assert decisions and all(r.ticks_dropped == 0 for r in decisions)
    assert sum(len(r.ticks_run) for r in decisions) >= len(missed)

    # `latest`: one hole, where all but the most recent missed tick were dropped.
    latest = executed("out-latest")
    [(before, after)] = holes(latest)
    assert before.timestamp() < halted + 1 and after.timestamp() > back - 1
    assert (after - before).total_seconds() >= OUTAGE_SECONDS - 1
    counts = Counter(t for t in latest if t.timestamp() > halted)
    assert set(counts.values()) == {1}, counts
    decisions = catch_up_records(caplog, "out-latest")
    assert decisions and all(len(r.ticks_run) <= 1 for r in decisions)
    assert sum(r.ticks_dropped for r in decisions) >= OUTAGE_SECONDS - 3
    assert {datetime.fromisoformat(t) for r in decisions for t in r.ticks_run} <= set(latest)


# -- overlap with a previous run no live executor will finish -------------------------------------

#: Large, so that this process's own take-over of dead executors (every timeout / 6 of real
#: time) stays out of these tests; ages below are on the fake clock.
EXECUTOR_TIMEOUT = 600.0
LONG_AGO_MS = int((T0 - timedelta(days=1)).timestamp() * 1000)
FRESH_MS = int((T0 + timedelta(minutes=5)).timestamp() * 1000)
PLANTED = "planted-previous-run"


def plant_executor(executor_id: str, version: str, heartbeat_ms: int) -> None:
    db = get_scheduler().runtime.db
    with db.write() as conn:
        conn.execute(delete(executors).where(executors.c.executor_id == executor_id))
        conn.execute(
            insert(executors).values(
                executor_id=executor_id, application_version=version, last_heartbeat_ms=heartbeat_ms
            )
        )


def plant_previous_run(schedule: str, executor_id: str, version: str) -> None:
    """A PENDING run recorded as the schedule's last one, as a crashed or old process left it."""
    runtime = get_scheduler().runtime
    now = runtime.now_ms()
    with runtime.db.write() as conn:
        conn.execute(
            insert(workflow_status).values(
                workflow_uuid=PLANTED,
                status="PENDING",
                name="sched_target",
                executor_id=executor_id,
                application_version=version,
                created_at=now,
                updated_at=now,
                recovery_attempts=1,
            )
        )
        conn.execute(
            update(schedules).where(schedules.c.name == schedule).values(last_workflow_id=PLANTED)
        )


def _plant_dead_owner(runtime: Runtime) -> str:
    plant_executor("ghost", runtime.app_version, LONG_AGO_MS)
    return "ghost"


def _plant_missing_owner(runtime: Runtime) -> str:
    return "vanished"  # no executors row at all: it stopped and was cleaned up


def _plant_owner_of_another_version(runtime: Runtime) -> str:
    plant_executor("other", "another-version", FRESH_MS)  # alive, but cannot run this run
    return "other"


def _plant_this_process_older_version(runtime: Runtime) -> str:
    return runtime.executor_id  # e.g. before a restart with edited code


STALE_OWNERS: dict[str, tuple[Callable[[Runtime], str], str]] = {
    "dead executor": (_plant_dead_owner, "sent no heartbeat for"),
    "no executor row": (_plant_missing_owner, "is not alive"),
    "live executor of another version": (_plant_owner_of_another_version, "runs version"),
    "this process, older version": (_plant_this_process_older_version, "runs version"),
}


def _stale_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.levelno == logging.WARNING and getattr(r, "workflow_id", None) == PLANTED
    ]


@pytest.mark.parametrize("overlap", ["skip", "buffer_one"])
@pytest.mark.parametrize("owner", list(STALE_OWNERS))
def test_a_previous_run_no_live_executor_will_finish_is_not_waited_on(
    clock: FakeClock,
    launch: Callable[..., None],
    caplog: pytest.LogCaptureFixture,
    owner: str,
    overlap: str,
) -> None:
    caplog.set_level(logging.INFO, logger=ENGINE_LOGGER)
    launch(executor_timeout_sec=EXECUTOR_TIMEOUT)
    runtime = get_scheduler().runtime
    plant, why = STALE_OWNERS[owner]
    set_schedules([minutely("s", overlap=overlap)])
    executor_id = plant(runtime)
    version = "older-version" if owner == "this process, older version" else runtime.app_version
    plant_previous_run("s", executor_id, version)
    for k in (1, 2, 3):
        clock.move_to(minute(k) + timedelta(seconds=1))
        finished("s", k)
    assert set(runs("s")) == {tick_id("s", minute(k)) for k in (1, 2, 3)}
    [warning] = _stale_warnings(caplog)  # once per run, however often it is looked at
    assert warning.schedule == "s" and warning.executor_id == executor_id
    assert why in warning.reason
    assert PLANTED in warning.getMessage() and executor_id in warning.getMessage()


@pytest.mark.parametrize(
    ("overlap", "after_death"),
    [("skip", [[3], [3, 4]]), ("buffer_one", [[1], [1, 4]])],  # one buffered: tick 3 dropped
)
def test_a_live_executors_previous_run_blocks_until_that_executor_dies(
    clock: FakeClock,
    launch: Callable[..., None],
    caplog: pytest.LogCaptureFixture,
    overlap: str,
    after_death: list[list[int]],
) -> None:
    caplog.set_level(logging.INFO, logger=ENGINE_LOGGER)
    launch(executor_timeout_sec=EXECUTOR_TIMEOUT)
    runtime = get_scheduler().runtime
    set_schedules([minutely("b", overlap=overlap)])
    plant_executor("busy", runtime.app_version, FRESH_MS)
    plant_previous_run("b", "busy", runtime.app_version)
    for k in (1, 2):
        clock.move_to(minute(k) + timedelta(seconds=1))
        watermark = int(minute(k).timestamp() * 1000)
        wait_until(lambda w=watermark: get_scheduler().schedules.watermark("b") == w)
    held = {tick_id("b", minute(1)): "ENQUEUED"} if overlap == "buffer_one" else {}
    assert {wid: w.status for wid, w in runs("b").items()} == held  # skipped, or buffered
    assert _stale_warnings(caplog) == []
    plant_executor("busy", runtime.app_version, LONG_AGO_MS)  # it stops beating
    for k, ran in zip((3, 4), after_death, strict=True):
        clock.move_to(minute(k) + timedelta(seconds=1))
        found = finished("b", len(ran))
        assert set(found) == {tick_id("b", minute(j)) for j in ran}
    [warning] = _stale_warnings(caplog)
    assert warning.executor_id == "busy" and "sent no heartbeat for" in warning.reason
