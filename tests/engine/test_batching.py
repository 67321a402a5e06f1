"""Batched starts, group-committed completions and the run dispatcher (both backends)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from engine import DBOS
from engine.dbos import _runtime
from engine.runtime.dispatch import CORE_DRAINERS, RunDispatcher
from engine.runtime.registry import REGISTRY
from engine.runtime.starting import StartRequest, prepare_start
from engine.storage.database import Database, parse_database_url
from engine.storage.migrations import migrate_system_database
from engine.storage.store import SystemStore, WorkflowOutcome, WorkflowRow

WAIT = 10.0


def _store(db_url: str) -> SystemStore:
    db = Database(parse_database_url(db_url))
    migrate_system_database(db)
    return SystemStore(db, lambda: int(time.time() * 1000))


def _row(workflow_id: str, status: str = "PENDING") -> WorkflowRow:
    now = int(time.time() * 1000)
    return WorkflowRow(workflow_id, status, "wf", created_at=now, updated_at=now)


def test_insert_workflows_creates_only_new_ids(db_url: str) -> None:
    store = _store(db_url)
    try:
        assert store.insert_workflows([_row("a"), _row("b")]) == {"a", "b"}
        assert store.insert_workflows([_row("b"), _row("c")]) == {"c"}
        assert store.insert_workflows([]) == set()
        stored = store.get_workflow("b")
        assert stored is not None and stored.status == "PENDING"
    finally:
        store.db.dispose()


def _stored(store: SystemStore, workflow_id: str) -> WorkflowRow:
    row = store.get_workflow(workflow_id)
    assert row is not None, f"{workflow_id} was not stored"
    return row


def test_insert_workflows_stores_shared_and_varying_columns(db_url: str) -> None:
    """Columns equal in every row go as one value on PostgreSQL; each row keeps its own."""
    store = _store(db_url)
    try:
        assert store.insert_workflows([_row("solo", "ENQUEUED")]) == {"solo"}
        rows = [_row("x"), _row("y", "ENQUEUED"), _row("z")]
        rows[1].inputs, rows[2].inputs = '{"n": 2}', '{"n": 3}'
        rows[1].queue_name = "q"
        assert store.insert_workflows(rows) == {"x", "y", "z"}
        stored = {w: _stored(store, w) for w in ("solo", "x", "y", "z")}
        assert {w: r.status for w, r in stored.items()} == {
            "solo": "ENQUEUED",
            "x": "PENDING",
            "y": "ENQUEUED",
            "z": "PENDING",
        }
        assert [stored[w].inputs for w in "xyz"] == [None, '{"n": 2}', '{"n": 3}']
        assert [stored[w].queue_name for w in "xyz"] == [None, "q", None]
        assert {r.name for r in stored.values()} == {"wf"}
    finally:
        store.db.dispose()


def test_complete_workflows_leaves_cancelled_ones_alone(db_url: str) -> None:
    store = _store(db_url)
    try:
        store.insert_workflows([_row("a"), _row("b"), _row("c")])
        store.cancel_workflow_tree("b")
        outcomes = [WorkflowOutcome(w, "SUCCESS", f"out-{w}", None) for w in ("a", "b", "c")]
        assert store.complete_workflows(outcomes) == {"a", "c"}
        assert store.get_outcome("a") == ("SUCCESS", "out-a", None)
        assert store.get_outcome("b") == ("CANCELLED", None, None)
        assert store.get_outcome("c") == ("SUCCESS", "out-c", None)
    finally:
        store.db.dispose()


def test_start_many_runs_each_created_workflow_once(dbos: None) -> None:
    runs: list[str] = []
    lock = threading.Lock()

    @DBOS.workflow()
    def batched(scheduled: datetime, label: str) -> str:
        with lock:
            runs.append(label)
        return label.upper()

    fn = REGISTRY.require_workflow(batched.__qualname__)
    now = datetime.now(UTC)
    requests = [StartRequest(fn, f"batch-{i}", (now, f"r{i}"), {}) for i in range(450)]
    runtime = _runtime()
    assert len(runtime.start_many([prepare_start(runtime, r) for r in requests])) == 450
    # The same IDs again (another replica's pass): nothing new starts.
    assert runtime.start_many([prepare_start(runtime, r) for r in requests[:10]]) == []
    for i in (0, 49, 50, 449):
        assert DBOS.retrieve_workflow(f"batch-{i}").get_result() == f"R{i}"
    for i in range(450):
        assert DBOS.retrieve_workflow(f"batch-{i}").get_status().status == "SUCCESS"
    assert sorted(runs) == sorted(f"r{i}" for i in range(450))


def test_completions_of_concurrent_runs_all_land(dbos: None) -> None:
    """Many runs finishing together share commits; every outcome is still recorded."""

    @DBOS.workflow()
    def square(x: int) -> int:
        return x * x

    handles = [DBOS.start_workflow(square, i) for i in range(200)]
    assert [h.get_result() for h in handles] == [i * i for i in range(200)]
    assert {h.get_status().status for h in handles} == {"SUCCESS"}


def test_dispatcher_serves_a_burst_with_few_threads() -> None:
    pool = ThreadPoolExecutor(64)
    dispatcher = RunDispatcher(pool, 63)
    done = threading.Semaphore(0)
    threads: set[int] = set()
    try:
        for _ in range(500):

            def work() -> None:
                threads.add(threading.get_ident())
                done.release()

            dispatcher.run(work)
        for _ in range(500):
            assert done.acquire(timeout=WAIT)
        assert len(threads) <= CORE_DRAINERS + 1
    finally:
        pool.shutdown()


def test_dispatcher_does_not_queue_runs_behind_stuck_ones() -> None:
    """Runs blocked for long (sleeps, slow calls) make room: a later short run still runs."""
    pool = ThreadPoolExecutor(32)
    dispatcher = RunDispatcher(pool, 31)
    release = threading.Event()
    blocked = threading.Semaphore(0)
    quick_ran = threading.Event()
    try:
        for _ in range(CORE_DRAINERS + 2):

            def stuck() -> None:
                blocked.release()
                release.wait(WAIT)

            dispatcher.run(stuck)
        for _ in range(CORE_DRAINERS + 2):
            assert blocked.acquire(timeout=WAIT)
        dispatcher.run(quick_ran.set)
        assert quick_ran.wait(WAIT)
    finally:
        release.set()
        pool.shutdown()


@pytest.mark.parametrize("max_threads", [1, 2])
def test_dispatcher_with_tiny_pools_runs_everything(max_threads: int) -> None:
    pool = ThreadPoolExecutor(max_threads)
    dispatcher = RunDispatcher(pool, max(1, max_threads - 1))
    done = threading.Semaphore(0)
    try:
        for _ in range(50):
            dispatcher.run(done.release)
        for _ in range(50):
            assert done.acquire(timeout=WAIT)
    finally:
        pool.shutdown()


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_upgrading_a_version_1_database_installs_the_enqueue_trigger(db_url: str) -> None:
    from sqlalchemy import text

    from engine.storage.schema import EXECUTOR_PROCESS_COLUMNS, SCHEMA_VERSION, schema_version

    store = _store(db_url)
    try:
        with store.db.write() as conn:  # back to how version 1 left it
            conn.execute(text('DROP TRIGGER keeptime_enqueued ON "dbos"."workflow_status"'))
            for column in EXECUTOR_PROCESS_COLUMNS:
                conn.execute(text(f'ALTER TABLE "dbos"."executors" DROP COLUMN "{column}"'))
            conn.execute(schema_version.update().values(version=1))
        assert migrate_system_database(store.db) == 1
        with store.db.read() as conn:
            triggers = conn.execute(
                text("SELECT tgname FROM pg_trigger WHERE tgname = 'keeptime_enqueued'")
            ).all()
            version = conn.execute(schema_version.select()).scalar()
        assert len(triggers) == 1 and version == SCHEMA_VERSION
    finally:
        store.db.dispose()


def test_watermarks_advance_to_the_latest_tick_of_each_schedule(db_url: str) -> None:
    from engine.storage.schedules import FiredTick, Registration, ScheduleStore

    store = _store(db_url)
    try:
        schedules = ScheduleStore(store)
        schedules.register([Registration(n, "test", "{}", None) for n in ("a", "b")])
        start = schedules.watermark("a") or 0
        fired = [
            FiredTick("a", start + 3000, "a-3"),
            FiredTick("a", start + 1000, "a-1"),
            FiredTick("a", start + 2000, None),  # skipped (overlap): no run
            FiredTick("b", start + 5000, "b-5"),
        ]
        schedules.record_fired(fired)
        assert schedules.watermark("a") == start + 3000
        assert schedules.watermark("b") == start + 5000
        schedules.record_fired([FiredTick("a", start + 2500, "a-2.5")])  # never backwards
        assert schedules.watermark("a") == start + 3000
        states = schedules.tick_states(["a", "b"])
        assert states["a"].last_workflow_id == "a-3"
        assert states["b"].last_workflow_id == "b-5"
    finally:
        store.db.dispose()
