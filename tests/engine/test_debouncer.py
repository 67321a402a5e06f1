"""Debouncer on both backends: last input wins, the cap, keys, queues, crashes, processes."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert

import engine.dbos
from engine import DBOS, DBOSClient, Debouncer, DebouncerClient, Queue
from engine.error import DBOSConnectionLostError, DBOSInvalidArgumentError, DBOSStorageError
from engine.runtime.debounce_timers import DebounceTimers
from engine.runtime.executor import Runtime
from engine.runtime.scheduler import get_scheduler
from engine.storage.debounce import DEBOUNCE_HOLD_QUEUE, DebounceStore
from engine.storage.schema import debounce_windows, workflow_status
from tests.engine.scheduling_worker import logged_debounce
from tests.engine.test_connection_loss import kill_other_connections
from tests.engine.test_scheduler import FakeClock, wait_until

T0 = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]
CALLS: list[str] = []
debounce_queue = Queue("debounce-test-queue")


@DBOS.workflow()
def debounced(value: str) -> str:
    CALLS.append(value)
    return value.upper()


@pytest.fixture()
def clock(launch: Callable[..., None], monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock(T0)
    monkeypatch.setattr(engine.dbos, "Runtime", functools.partial(Runtime, clock=fake))
    CALLS.clear()
    launch()
    return fake


def advance(clock: FakeClock, seconds: float) -> None:
    clock.move_to(datetime.fromtimestamp(clock.now, tz=UTC) + timedelta(seconds=seconds))


def open_windows() -> int:
    return len(DebounceStore(get_scheduler().runtime.store).open_windows())


def test_rapid_calls_run_once_with_the_last_input(clock: FakeClock) -> None:
    debouncer = Debouncer.create(debounced)
    handles = []
    for value in ("a", "b", "c", "d"):
        handles.append(debouncer.debounce("user-1", 10, value))
        advance(clock, 5)  # each call comes within the quiet period of the one before
    assert CALLS == [] and open_windows() == 1
    advance(clock, 6)
    assert [h.get_result() for h in handles] == ["D"] * 4
    assert len({h.workflow_id for h in handles}) == 1
    assert CALLS == ["d"]
    assert open_windows() == 0
    nxt = debouncer.debounce("user-1", 10, "e")  # after the run started: a new window
    assert nxt.workflow_id != handles[0].workflow_id
    advance(clock, 11)
    assert nxt.get_result() == "E"


def test_timeout_caps_the_window(clock: FakeClock) -> None:
    debouncer = Debouncer.create(debounced, debounce_timeout_sec=12)
    handle = debouncer.debounce("k", 5, "first")
    for value in ("x", "y", "z"):
        advance(clock, 3.5)
        debouncer.debounce("k", 5, value)
    # 10.5 s after the first call; without the cap the deadline would be 15.5 s.
    assert CALLS == []
    assert handle.get_status().status == "ENQUEUED"
    advance(clock, 2)  # 12.5 s: past the cap although the last call was 2 s ago
    assert handle.get_result() == "Z"


def test_keys_are_independent(clock: FakeClock) -> None:
    debouncer = Debouncer.create(debounced)
    a = debouncer.debounce("a", 2, "a1")
    b = debouncer.debounce("b", 8, "b1")
    advance(clock, 3)
    assert a.get_result() == "A1"
    assert b.get_status().status == "ENQUEUED"
    advance(clock, 6)
    assert b.get_result() == "B1"


def test_queue_routing_and_by_name(clock: FakeClock) -> None:
    debouncer = Debouncer.create(debounced, queue=debounce_queue)
    handle = debouncer.debounce("q", 1, "queued")
    by_name = Debouncer.by_name("debounced", queue_name="ignored")
    same = by_name.debounce("q", 1, "by-name").workflow_id
    assert same == handle.workflow_id  # joins the open window; its queue stays
    advance(clock, 2)
    assert handle.get_result() == "BY-NAME"
    assert handle.get_status().queue_name == "debounce-test-queue"


def test_async_variants(clock: FakeClock) -> None:
    async def scenario() -> str:
        debouncer = Debouncer.create_async(debounced)  # type: ignore[arg-type]
        handle = await debouncer.debounce_async("async", 1, "v")
        advance(clock, 2)
        result: str = await handle.get_result()
        return result

    assert asyncio.run(scenario()) == "V"


def test_client_debounce_runs_in_the_launched_process(clock: FakeClock, db_url: str) -> None:
    client = DBOSClient(db_url)
    client.clock = clock
    try:
        handle = DebouncerClient(client).debounce("debounced", "c", 1, args=("from-client",))
        advance(clock, 2)  # the runtime finds the window by polling
        assert DBOS.retrieve_workflow(handle.workflow_id).get_result() == "FROM-CLIENT"
    finally:
        client.destroy()


def test_a_call_after_the_run_was_cancelled_opens_a_new_window(clock: FakeClock) -> None:
    debouncer = Debouncer.create(debounced)
    first = debouncer.debounce("cancelled", 10, "a")
    DBOS.cancel_workflow(first.workflow_id)
    second = debouncer.debounce("cancelled", 10, "b")
    assert second.workflow_id != first.workflow_id
    assert open_windows() == 1
    advance(clock, 11)
    assert second.get_result() == "B"
    assert first.get_status().status == "CANCELLED"
    assert CALLS == ["b"]


def debounce_timers(key: str) -> list[float]:
    """When the scheduler's timers for ``key`` are due (epoch seconds of the fake clock)."""
    return sorted(
        t.at for t in list(get_scheduler()._heap) if t.kind == "debounce" and t.key[1] == key
    )


def test_a_shorter_period_after_an_early_timer_fires_on_time(clock: FakeClock) -> None:
    debouncer = Debouncer.create(debounced)
    handle = debouncer.debounce("short", 10, "a")  # deadline +10: a timer for it
    advance(clock, 5)
    debouncer.debounce("short", 10, "b")  # deadline +15: the pending timer covers it
    assert debounce_timers("short") == [clock.now + 5]
    advance(clock, 6)  # +11: that timer fires early and is re-armed for +15
    wait_until(lambda: debounce_timers("short") == [clock.now + 4])
    debouncer.debounce("short", 1, "c")  # deadline +12, before the re-armed timer
    assert clock.now + 1 in debounce_timers("short")
    advance(clock, 1.5)
    assert handle.get_result() == "C"
    assert CALLS == ["c"]


def test_calls_on_one_key_arm_one_timer(clock: FakeClock) -> None:
    debouncer = Debouncer.create(debounced)
    for i in range(20):
        debouncer.debounce("hot", 10, f"v{i}")
    assert debounce_timers("hot") == [clock.now + 10]
    advance(clock, 11)
    wait_until(lambda: CALLS == ["v19"], timeout=10)


def test_simultaneous_first_calls_share_one_window(clock: FakeClock) -> None:
    debouncer = Debouncer.create(debounced)
    keys = [f"race-{n}" for n in range(5)]
    barrier = threading.Barrier(6)

    def call(key: str, value: str) -> str:
        barrier.wait(timeout=10)
        return debouncer.debounce(key, 10, value).workflow_id

    with ThreadPoolExecutor(6) as pool:
        for key in keys:
            ids = set(pool.map(call, [key] * 6, [f"{key}:{i}" for i in range(6)]))
            assert len(ids) == 1
    assert open_windows() == len(keys)
    advance(clock, 11)
    wait_until(lambda: len(CALLS) == len(keys), timeout=20)
    assert sorted(c.split(":")[0] for c in CALLS) == keys


def test_a_call_waiting_for_a_concurrent_first_call_joins_its_window(clock: FakeClock) -> None:
    """The first call's transaction commits while the second waits for its window row: the
    second must join that window (on PostgreSQL its statement cannot see the new workflow)."""
    runtime = get_scheduler().runtime
    now = runtime.now_ms()
    held = {
        "workflow_uuid": "first-call",
        "status": "ENQUEUED",
        "name": "debounced",
        "inputs": runtime.codec.encode_inputs("debounced", ("first",), {}),
        "created_at": now,
        "updated_at": now,
        "recovery_attempts": 0,
        "queue_name": DEBOUNCE_HOLD_QUEUE,
    }
    window = {
        "namespace": "debounced",
        "debounce_key": "waiting",
        "workflow_id": "first-call",
        "first_call_ms": now,
        "fire_at_ms": now + 10_000,
    }
    with ThreadPoolExecutor(1) as pool:
        with runtime.store.db.engine.begin() as other:
            other.execute(insert(workflow_status).values(**held))
            other.execute(insert(debounce_windows).values(**window))
            by_name = Debouncer.by_name("debounced")
            second = pool.submit(lambda: by_name.debounce("waiting", 10, "second").workflow_id)
            time.sleep(0.5)  # the second call now waits for the uncommitted window
        assert second.result(timeout=30) == "first-call"
    assert open_windows() == 1
    advance(clock, 11)
    assert DBOS.retrieve_workflow("first-call").get_result() == "SECOND"


def test_a_database_error_is_the_engines_and_leaves_the_pool_usable(
    clock: FakeClock, db_url: str
) -> None:
    debouncer = Debouncer.create(debounced)
    if db_url.startswith("postgresql"):
        with pytest.raises(DBOSStorageError, match="NUL"):
            debouncer.debounce("nul\x00key", 1, "x")  # PostgreSQL text cannot hold NUL
    else:
        debouncer.debounce("nul\x00key", 1, "x")
    handles = [debouncer.debounce("after", 1, v) for v in ("p", "q")]
    assert handles[0].workflow_id == handles[1].workflow_id
    advance(clock, 2)
    assert handles[0].get_result() == "Q"


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_after_the_connections_are_killed_the_next_call_reconnects(
    clock: FakeClock, db_url: str
) -> None:
    debouncer = Debouncer.create(debounced)
    first = debouncer.debounce("lost", 10, "a")
    assert kill_other_connections(db_url) >= 1
    with contextlib.suppress(DBOSConnectionLostError):
        debouncer.debounce("lost", 10, "b")  # may find a dead pooled connection
    again = debouncer.debounce("lost", 10, "c")  # not the next dead one
    assert again.workflow_id == first.workflow_id
    advance(clock, 11)
    assert again.get_result() == "C"


def test_forgetting_fired_timers() -> None:
    armed: list[tuple[str, str, int]] = []
    timers = DebounceTimers(lambda namespace, key, at: armed.append((namespace, key, at)))
    for workflow_id, at in (("fired", 5), ("due-now", 10), ("pending", 20)):
        timers.arm("ns", workflow_id, workflow_id, at, now_ms=0)
    assert len(armed) == 3
    timers.arm("ns", "pending", "pending", 25, now_ms=1)  # a later deadline: its timer stands
    assert len(armed) == 3
    timers.forget_fired(10)
    assert timers.remembered() == {"pending": 20}


@pytest.mark.parametrize(
    ("period", "key", "match"),
    [(0, "k", "debounce_period_sec"), (-1, "k", "> 0"), (1, "", "debounce_key")],
)
def test_bad_input(clock: FakeClock, period: float, key: str, match: str) -> None:
    with pytest.raises(DBOSInvalidArgumentError, match=match):
        Debouncer.create(debounced).debounce(key, period, "x")


def test_bad_creation() -> None:
    with pytest.raises(DBOSInvalidArgumentError, match="debounce_timeout_sec"):
        Debouncer.create(debounced, debounce_timeout_sec=0)
    with pytest.raises(DBOSInvalidArgumentError, match=r"@DBOS\.workflow"):
        Debouncer.create(len)


# -- processes ------------------------------------------------------------------------------------


def _worker(db_url: str, log: Path, period: float, value: str, then: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "tests.engine.scheduling_worker", "debounce", db_url]
    argv += [str(log), str(period), value, then]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_window_survives_a_crash(launch: Callable[..., None], db_url: str, tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    log.touch()
    os.environ["KEEPTIME_TEST_LOG"] = str(log)
    child = _worker(db_url, log, 1.0, "before-crash", "sleep")
    assert child.stdout is not None
    workflow_id = child.stdout.readline().strip()
    os.kill(child.pid, signal.SIGKILL)  # mid-window: the run has not started
    child.wait()
    assert log.read_text() == ""
    assert logged_debounce is not None  # registered here, so this process can run it
    launch()
    assert DBOS.retrieve_workflow(workflow_id).get_result() == "before-crash"
    assert log.read_text().split()[:2] == ["debounce", "before-crash"]
    assert len(log.read_text().splitlines()) == 1


@pytest.mark.slow
def test_two_processes_coalesce(db_url: str, tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    log.touch()
    # The first call's long period keeps the window open however slowly the second process
    # starts; the second call's own short period then sets the deadline (each call's period
    # counts from that call).
    first = _worker(db_url, log, 60.0, "one", "wait")
    assert first.stdout is not None
    first_id = first.stdout.readline().strip()
    second = _worker(db_url, log, 1.0, "two", "wait")
    out, _ = second.communicate(timeout=60)
    rest, _ = first.communicate(timeout=60)
    second_id, second_result = out.split()
    assert second_id == first_id
    assert second_result == rest.strip() == "two"
    assert len(log.read_text().splitlines()) == 1
