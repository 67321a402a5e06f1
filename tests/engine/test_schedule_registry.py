"""The schedule registry API (DBOS.create_schedule and friends), on both backends."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine import DBOS, DBOSClient
from engine.error import DBOSException, DBOSInvalidArgumentError, DBOSInvalidCrontabError
from engine.runtime.scheduler import REGISTRY_SYNC_SECONDS, ScheduleDefinition, set_schedules

RUNS: list[tuple[datetime, Any]] = []
LOCK = threading.Lock()


@DBOS.workflow()
def reg_task(scheduled_time: datetime, context: Any) -> None:
    with LOCK:
        RUNS.append((scheduled_time, context))


@DBOS.step()
def reg_step(scheduled_time: datetime, context: Any) -> None:
    pass


def _wait(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        time.sleep(0.05)


@pytest.fixture(autouse=True)
def _clear_runs() -> None:
    with LOCK:
        RUNS.clear()


def _count(context: Any) -> int:
    with LOCK:
        return sum(1 for _, c in RUNS if c == context)


def test_create_list_get_delete(dbos: None) -> None:
    DBOS.create_schedule(
        schedule_name="s1",
        workflow_fn=reg_task,
        schedule="0 0 * * *",
        context={"k": 1},
        cron_timezone="Europe/Paris",
        queue_name="q1",
    )
    [s] = DBOS.list_schedules()
    assert s["schedule_name"] == s["schedule_id"] == "s1"
    assert s["workflow_name"].endswith("reg_task")
    assert s["schedule"] == "0 0 * * *"
    assert s["status"] == "ACTIVE"
    assert s["context"] == {"k": 1}
    assert s["cron_timezone"] == "Europe/Paris"
    assert s["queue_name"] == "q1"
    assert s["automatic_backfill"] is False
    assert s["overlap"] == "allow" and s["catchup"] == "none"
    assert DBOS.get_schedule("s1") == s
    assert DBOS.get_schedule("nope") is None
    assert DBOS.list_schedules(status="PAUSED") == []
    assert DBOS.list_schedules(schedule_name_prefix=["x", "s"]) == [s]
    assert DBOS.list_schedules(workflow_name="other") == []
    with pytest.raises(DBOSException, match="already exists"):
        DBOS.create_schedule(schedule_name="s1", workflow_fn=reg_task, schedule="* * * * *")
    DBOS.delete_schedule("s1")
    DBOS.delete_schedule("s1")  # a no-op, as in the reference
    assert DBOS.list_schedules() == []


def test_invalid_function_and_cron(dbos: None) -> None:
    def plain(a: Any, b: Any, c: Any) -> None:
        pass

    with pytest.raises(DBOSInvalidArgumentError, match=r"@DBOS.workflow\(\)"):
        DBOS.create_schedule(schedule_name="bad", workflow_fn=plain, schedule="* * * * *")
    with pytest.raises(DBOSInvalidArgumentError, match=r"@DBOS.workflow\(\)"):
        DBOS.create_schedule(schedule_name="bad", workflow_fn=reg_step, schedule="* * * * *")
    with pytest.raises(DBOSInvalidCrontabError, match="Invalid cron schedule"):
        DBOS.create_schedule(schedule_name="bad", workflow_fn=reg_task, schedule="not a cron")
    with pytest.raises(DBOSInvalidArgumentError, match="overlap"):
        DBOS.create_schedule(
            schedule_name="bad", workflow_fn=reg_task, schedule="* * * * *", overlap="sometimes"
        )
    assert DBOS.list_schedules() == []


def test_fires_pause_resume(dbos: None) -> None:
    DBOS.create_schedule(
        schedule_name="fast", workflow_fn=reg_task, schedule="* * * * * *", context="fast"
    )
    _wait(lambda: _count("fast") >= 2)
    DBOS.pause_schedule("fast")
    assert DBOS.get_schedule("fast")["status"] == "PAUSED"  # type: ignore[index]
    # A run already started at the pause may still land: settle past the next tick, then watch.
    time.sleep(1.5)
    paused_count = _count("fast")
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        assert _count("fast") == paused_count, "a paused schedule fired"
        time.sleep(0.1)
    DBOS.resume_schedule("fast")
    _wait(lambda: _count("fast") > paused_count)
    DBOS.delete_schedule("fast")


def test_apply_schedules_atomic(dbos: None) -> None:
    DBOS.apply_schedules(
        [
            {"schedule_name": "a", "workflow_fn": reg_task, "schedule": "0 * * * *"},
            {
                "schedule_name": "b",
                "workflow_fn": reg_task,
                "schedule": "0 0 * * *",
                "context": "b",
                "automatic_backfill": True,
            },
        ]
    )
    by_name = {s["schedule_name"]: s for s in DBOS.list_schedules()}
    assert by_name["a"]["schedule"] == "0 * * * *"
    assert by_name["b"]["automatic_backfill"] is True and by_name["b"]["context"] == "b"
    # Replacing: the whole definition is replaced; unlisted schedules are kept.
    DBOS.apply_schedules([{"schedule_name": "b", "workflow_fn": reg_task, "schedule": "5 * * * *"}])
    by_name = {s["schedule_name"]: s for s in DBOS.list_schedules()}
    assert set(by_name) == {"a", "b"}
    assert by_name["b"]["schedule"] == "5 * * * *" and by_name["b"]["context"] is None
    before = DBOS.list_schedules()
    with pytest.raises(DBOSInvalidCrontabError, match="Invalid cron schedule"):
        DBOS.apply_schedules(
            [
                {"schedule_name": "a", "workflow_fn": reg_task, "schedule": "1 * * * *"},
                {"schedule_name": "c", "workflow_fn": reg_task, "schedule": "nope"},
            ]
        )
    with pytest.raises(DBOSInvalidArgumentError, match="repeated"):
        DBOS.apply_schedules(
            [
                {"schedule_name": "c", "workflow_fn": reg_task, "schedule": "1 * * * *"},
                {"schedule_name": "c", "workflow_fn": reg_task, "schedule": "2 * * * *"},
            ]
        )
    assert DBOS.list_schedules() == before


def test_trigger_and_backfill(dbos: None) -> None:
    DBOS.create_schedule(
        schedule_name="hourly", workflow_fn=reg_task, schedule="0 * * * *", context="h"
    )
    handle = DBOS.trigger_schedule("hourly")
    assert handle.get_result() is None
    assert _count("h") == 1
    start = datetime(2025, 1, 1, 0, 30, tzinfo=UTC)
    handles = DBOS.backfill_schedule("hourly", start, start + timedelta(hours=3))
    assert len(handles) == 3
    for h in handles:
        h.get_result()
    with LOCK:
        ticks = sorted(t for t, c in RUNS if c == "h" and t.year == 2025)
    assert ticks == [datetime(2025, 1, 1, h, tzinfo=UTC) for h in (1, 2, 3)]
    again = DBOS.backfill_schedule("hourly", start, start + timedelta(hours=3))
    assert [h.workflow_id for h in again] == [h.workflow_id for h in handles]
    for h in again:
        h.get_result()
    assert _count("h") == 4  # once each
    with pytest.raises(DBOSException, match="does not exist"):
        DBOS.trigger_schedule("missing")
    with pytest.raises(DBOSException, match="does not exist"):
        DBOS.backfill_schedule("missing", start, start + timedelta(hours=1))


def test_async_variants(dbos: None) -> None:
    async def scenario() -> None:
        await DBOS.create_schedule_async(
            schedule_name="as", workflow_fn=reg_task, schedule="0 0 * * *", context="as"
        )
        assert [s["schedule_name"] for s in await DBOS.list_schedules_async()] == ["as"]
        await DBOS.pause_schedule_async("as")
        assert (await DBOS.get_schedule_async("as"))["status"] == "PAUSED"  # type: ignore[index]
        await DBOS.resume_schedule_async("as")
        handle = await DBOS.trigger_schedule_async("as")
        await handle.get_result()
        start = datetime(2025, 1, 1, tzinfo=UTC)
        handles = await DBOS.backfill_schedule_async("as", start, start + timedelta(days=2))
        assert len(handles) == 1
        await handles[0].get_result()
        await DBOS.apply_schedules_async(
            [{"schedule_name": "as", "workflow_fn": reg_task, "schedule": "1 0 * * *"}]
        )
        await DBOS.delete_schedule_async("as")
        assert await DBOS.get_schedule_async("as") is None

    asyncio.run(scenario())
    assert _count("as") == 2


def test_client_equivalents(dbos: None, db_url: str) -> None:
    client = DBOSClient(system_database_url=db_url)
    try:
        name = DBOS.list_schedules  # the launched DBOS and the client see the same rows
        client.create_schedule(
            schedule_name="c1",
            workflow_name=reg_task.__keeptime_function__.name,  # type: ignore[attr-defined]
            schedule="0 0 * * *",
            context="c",
        )
        with pytest.raises(DBOSException, match="already exists"):
            client.create_schedule(schedule_name="c1", workflow_name="x", schedule="* * * * *")
        with pytest.raises(DBOSInvalidCrontabError, match="Invalid cron schedule"):
            client.create_schedule(schedule_name="c2", workflow_name="x", schedule="bad cron")
        assert [s["schedule_name"] for s in name()] == ["c1"]
        assert client.get_schedule("c1") == DBOS.get_schedule("c1")
        client.pause_schedule("c1")
        assert client.list_schedules(status="PAUSED")[0]["schedule_name"] == "c1"
        client.resume_schedule("c1")
        client.trigger_schedule("c1").get_result()
        start = datetime(2025, 3, 1, tzinfo=UTC)
        handles = client.backfill_schedule("c1", start, start + timedelta(days=2))
        assert len(handles) == 1
        handles[0].get_result()
        assert _count("c") == 2
        client.apply_schedules(
            [{"schedule_name": "c1", "workflow_name": "wf.x", "schedule": "5 0 * * *"}]
        )
        assert client.get_schedule("c1")["workflow_name"] == "wf.x"  # type: ignore[index]
        client.delete_schedule("c1")
        assert client.list_schedules() == []
    finally:
        client.destroy()


def test_a_schedule_outlives_a_restart(launch: Callable[..., None]) -> None:
    """Stored, not only installed: a relaunched process fires it without being told again."""
    launch()
    DBOS.create_schedule(
        schedule_name="kept", workflow_fn=reg_task, schedule="* * * * * *", context="kept"
    )
    launch()  # DBOS.destroy(), then a new DBOS on the same database
    with LOCK:
        RUNS.clear()
    _wait(lambda: _count("kept") >= 2)
    assert DBOS.get_schedule("kept") is not None


def test_a_client_change_reaches_a_running_process(dbos: None, db_url: str) -> None:
    """Created, then deleted, from a client: the launched DBOS follows within its sync interval."""
    client = DBOSClient(system_database_url=db_url)
    try:
        client.create_schedule(
            schedule_name="from-client",
            workflow_name=reg_task.__keeptime_function__.name,  # type: ignore[attr-defined]
            schedule="* * * * * *",
            context="from-client",
        )
        _wait(lambda: _count("from-client") >= 2)
        client.delete_schedule("from-client")
        time.sleep(REGISTRY_SYNC_SECONDS + 1.5)  # the sync interval, and a run under way
        settled = _count("from-client")
        time.sleep(2.5)  # no tick of a deleted schedule fires any more
        assert _count("from-client") == settled
    finally:
        client.destroy()


def test_configured_schedules_and_registry_schedules_do_not_replace_each_other(
    dbos: None,
) -> None:
    """The daemon's set_schedules (its config) and the registry API keep separate sets."""
    DBOS.create_schedule(
        schedule_name="registry-one", workflow_fn=reg_task, schedule="0 0 * * *", context=1
    )
    name = reg_task.__keeptime_function__.name  # type: ignore[attr-defined]
    set_schedules([ScheduleDefinition(name="config-one", cron="0 0 * * *", workflow_name=name)])
    set_schedules([])  # the config emptied: its schedules go, the registry's stay
    assert [s["schedule_name"] for s in DBOS.list_schedules()] == ["registry-one"]
