"""Queues on SQLite and PostgreSQL: order, flow control, priority, partitions, dedup, timeouts.

Concurrency is observed with gauges that running workflows move while they are held on a
semaphore: a queue that admits too much shows it as a peak above the limit, whatever the timing.
Every queue is defined at module level (the registry is process-global) with a unique name.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from engine import (
    DBOS,
    DBOSConfiguredInstance,
    Queue,
    SetEnqueueOptions,
    SetWorkflowID,
    SetWorkflowTimeout,
)
from engine.dbos import _runtime
from engine.error import (
    DBOSAwaitedWorkflowCancelledError,
    DBOSInvalidArgumentError,
    DBOSQueueDeduplicatedError,
)
from engine.storage.store import WorkflowRow
from tests.engine import queue_mp_app

WAIT_SECONDS = 15


class Gauge:
    """Counts workflows running right now, the peak, and those finished; holds them on demand."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.running = 0
        self.peak = 0
        self.finished = 0
        self.hold = threading.Semaphore(0)

    def enter(self) -> None:
        with self.cond:
            self.running += 1
            self.peak = max(self.peak, self.running)
            self.cond.notify_all()

    def leave(self) -> None:
        with self.cond:
            self.running -= 1
            self.finished += 1
            self.cond.notify_all()

    def wait_for(self, predicate: Callable[[Gauge], bool], what: str) -> None:
        with self.cond:
            ok = self.cond.wait_for(lambda: predicate(self), WAIT_SECONDS)
            assert ok, f"timed out waiting for {what} (running={self.running}, peak={self.peak})"

    def release(self, n: int = 1) -> None:
        self.hold.release(n)


GAUGES: dict[str, Gauge] = defaultdict(Gauge)
CALLS: dict[str, list[Any]] = defaultdict(list)
_calls_lock = threading.Lock()


def _record(tag: str, value: Any) -> None:
    with _calls_lock:
        CALLS[tag].append(value)


@DBOS.workflow()
def q_held(tag: str) -> str:
    """Runs until the test releases it; moves the gauge of ``tag``."""
    gauge = GAUGES[tag]
    gauge.enter()
    try:
        assert gauge.hold.acquire(timeout=WAIT_SECONDS), "never released"
    finally:
        gauge.leave()
    return tag


@DBOS.workflow()
def q_record(tag: str, value: Any) -> Any:
    _record(tag, value)
    return value


@DBOS.workflow()
def q_other_record(tag: str, value: Any) -> Any:
    _record(tag, value)
    return value


@DBOS.step()
def q_triple(x: int) -> int:
    return x * 3


@DBOS.workflow()
def q_sleepy(seconds: float) -> str:
    DBOS.sleep(seconds)
    return "woke"


@DBOS.dbos_class()
class QInstanceOwner(DBOSConfiguredInstance):
    @DBOS.workflow()
    def q_method(self, x: int) -> int:
        return x


@DBOS.workflow()
async def q_async_double(x: int) -> int:
    await asyncio.sleep(0)
    return x * 2


fifo_queue = Queue("q_fifo", concurrency=1)
plain_queue = Queue("q_plain")
serial_queue = Queue("q_serial", concurrency=1)
conc_queue = Queue("q_conc2", concurrency=2)
worker_queue = Queue("q_worker2", worker_concurrency=2)
rate_queue = Queue("q_rate", limiter={"limit": 2, "period": 0.5})
prio_queue = Queue("q_prio", concurrency=1, priority_enabled=True)
part_queue = Queue("q_part", concurrency=1, partition_queue=True)
dedup_queue = Queue("q_dedup", concurrency=1)
dedup_other_queue = Queue("q_dedup_other")
timeout_queue = Queue("q_timeout", concurrency=1)
cancel_queue = Queue("q_cancel", concurrency=1)
resume_queue = Queue("q_resume", concurrency=1)
list_queue = Queue("q_list", concurrency=1)
idem_queue = Queue("q_idem")
async_queue = Queue("q_async")
foreign_queue = Queue("q_foreign", concurrency=1)

needs_dbos = pytest.mark.usefixtures("dbos")


@pytest.fixture(autouse=True)
def _fresh_records() -> None:
    GAUGES.clear()
    CALLS.clear()


def _hold_queue(queue: Queue, tag: str) -> Any:
    """Enqueue a held workflow and wait until it runs: the queue's one slot is now taken."""
    handle = queue.enqueue(q_held, tag)
    GAUGES[tag].wait_for(lambda g: g.running == 1, f"{tag} to start")
    return handle


def _row(workflow_id: str) -> WorkflowRow:
    row = _runtime().store.get_workflow(workflow_id)
    assert row is not None
    return row


def _drive(gauge: Gauge, items: int, limit: int) -> None:
    """Release held workflows one at a time, each time once the queue has refilled its slots."""
    for done in range(items):
        expected = min(limit, items - done)
        gauge.wait_for(
            lambda g, d=done, e=expected: g.finished == d and g.running == e,
            f"{expected} running after {done} finished",
        )
        gauge.release()


# -- order and results ----------------------------------------------------------------------------


@needs_dbos
def test_fifo_order() -> None:
    handles = [fifo_queue.enqueue(q_record, "fifo", i) for i in range(12)]
    assert [h.get_result() for h in handles] == list(range(12))
    assert CALLS["fifo"] == list(range(12))
    starts = [_row(h.workflow_id).started_at_epoch_ms or 0 for h in handles]
    assert starts == sorted(starts)


@needs_dbos
def test_enqueue_workflow_and_bare_step_return_results() -> None:
    wf = plain_queue.enqueue(q_record, "plain", 7)
    step = plain_queue.enqueue(q_triple, 5)
    assert wf.get_result() == 7
    assert step.get_result() == 15
    status = step.get_status()
    assert status.queue_name == "q_plain"
    assert status.status == "SUCCESS"


@needs_dbos
def test_enqueue_async() -> None:
    async def go() -> int:
        handle = await async_queue.enqueue_async(q_async_double, 21)
        return await handle.get_result()

    assert asyncio.run(go()) == 42


@needs_dbos
def test_same_workflow_id_enqueues_once() -> None:
    with SetWorkflowID("q-idem-1"):
        first = idem_queue.enqueue(q_record, "idem", 1)
    with SetWorkflowID("q-idem-1"):
        second = idem_queue.enqueue(q_record, "idem", 1)
    assert first.workflow_id == second.workflow_id == "q-idem-1"
    assert first.get_result() == second.get_result() == 1
    assert CALLS["idem"] == [1]


# -- flow control ---------------------------------------------------------------------------------


@needs_dbos
@pytest.mark.parametrize(
    ("queue", "limit"), [(serial_queue, 1), (conc_queue, 2), (worker_queue, 2)]
)
def test_peak_concurrency_equals_limit(queue: Queue, limit: int) -> None:
    tag = queue.name
    handles = [queue.enqueue(q_held, tag) for _ in range(5)]
    _drive(GAUGES[tag], 5, limit)
    assert [h.get_result() for h in handles] == [tag] * 5
    assert GAUGES[tag].peak == limit


@needs_dbos
def test_rate_limiter_windows() -> None:
    handles = [rate_queue.enqueue(q_record, "rate", i) for i in range(6)]
    assert sorted(h.get_result() for h in handles) == list(range(6))
    starts = sorted(_row(h.workflow_id).started_at_epoch_ms or 0 for h in handles)
    # No 0.5 s window holds more than 2 starts.
    for first, third in zip(starts, starts[2:], strict=False):
        assert third - first >= 500, starts


@needs_dbos
def test_priority_order() -> None:
    blocker = _hold_queue(prio_queue, "prio-block")
    plan = [(5, "a"), (1, "b"), (None, "c"), (5, "d"), (None, "e"), (1, "f")]
    handles = []
    for priority, value in plan:
        with SetEnqueueOptions(priority=priority):
            handles.append(prio_queue.enqueue(q_record, "prio", value))
    GAUGES["prio-block"].release()
    blocker.get_result()
    for h in handles:
        h.get_result()
    # No priority first (FIFO), then lower numbers first, FIFO within one priority.
    assert CALLS["prio"] == ["c", "e", "b", "f", "a", "d"]


@needs_dbos
def test_priority_needs_priority_enabled_queue() -> None:
    with (
        SetEnqueueOptions(priority=3),
        pytest.raises(DBOSInvalidArgumentError, match="priority_enabled=True"),
    ):
        plain_queue.enqueue(q_record, "never", 1)


@pytest.mark.parametrize("priority", [0, -1, 2_147_483_648, True, "1"])
def test_priority_out_of_range(priority: Any) -> None:
    with pytest.raises(DBOSInvalidArgumentError, match="priority must be an integer from 1"):
        SetEnqueueOptions(priority=priority)


@needs_dbos
def test_partitions_run_in_parallel_but_serially_within_one() -> None:
    parts = ["user-a", "user-b"]
    handles = []
    for key in parts:
        for _ in range(3):
            with SetEnqueueOptions(queue_partition_key=key):
                handles.append(part_queue.enqueue(q_held, f"part-{key}"))
    for round_ in range(3):
        for key in parts:
            GAUGES[f"part-{key}"].wait_for(
                lambda g, r=round_: g.finished == r and g.running == 1, f"{key} round {round_}"
            )
        if round_ == 0:  # both partitions run at once, despite concurrency=1
            assert all(GAUGES[f"part-{k}"].running == 1 for k in parts)
        for key in parts:
            GAUGES[f"part-{key}"].release()
    for h in handles:
        h.get_result()
    assert [GAUGES[f"part-{k}"].peak for k in parts] == [1, 1]
    keys = sorted(_row(h.workflow_id).queue_partition_key or "" for h in handles)
    assert keys == ["user-a"] * 3 + ["user-b"] * 3


@needs_dbos
def test_partition_key_required_and_only_on_partitioned_queues() -> None:
    with pytest.raises(DBOSInvalidArgumentError, match="queue_partition_key"):
        part_queue.enqueue(q_record, "never", 1)
    with (
        SetEnqueueOptions(queue_partition_key="k"),
        pytest.raises(DBOSInvalidArgumentError, match="partition_queue=True"),
    ):
        plain_queue.enqueue(q_record, "never", 1)


# -- deduplication --------------------------------------------------------------------------------


@needs_dbos
def test_deduplication_while_enqueued_or_pending() -> None:
    block_tag, held_tag = "dedup-block", "dedup-held"
    blocker = _hold_queue(dedup_queue, block_tag)
    with SetEnqueueOptions(deduplication_id="user-1"):
        first = dedup_queue.enqueue(q_held, held_tag)
        assert first.get_status().status == "ENQUEUED"
        with pytest.raises(DBOSQueueDeduplicatedError, match="user-1") as info:
            dedup_queue.enqueue(q_record, "dedup", "dup-while-enqueued")
        assert info.value.deduplication_id == "user-1"
        assert info.value.queue_name == "q_dedup"
        # The same ID on another queue is independent.
        dedup_other_queue.enqueue(q_record, "dedup", "other-queue").get_result()

    GAUGES[block_tag].release()
    blocker.get_result()
    GAUGES[held_tag].wait_for(lambda g: g.running == 1, "the deduplicated workflow to run")
    assert first.get_status().status == "PENDING"
    with (
        SetEnqueueOptions(deduplication_id="user-1"),
        pytest.raises(DBOSQueueDeduplicatedError),
    ):
        dedup_queue.enqueue(q_record, "dedup", "dup-while-pending")

    GAUGES[held_tag].release()
    first.get_result()
    with SetEnqueueOptions(deduplication_id="user-1"):
        again = dedup_queue.enqueue(q_record, "dedup", "after-finish")
    assert again.get_result() == "after-finish"
    assert CALLS["dedup"] == ["other-queue", "after-finish"]


# -- timeouts, cancel, resume ---------------------------------------------------------------------


@needs_dbos
def test_timeout_starts_at_dequeue() -> None:
    blocker = _hold_queue(timeout_queue, "timeout-block")
    with SetWorkflowTimeout(0.2):
        waited = timeout_queue.enqueue(q_record, "timeout", "ran")
    created = _row(waited.workflow_id).created_at
    while _runtime().now_ms() < created + 400:  # queued for twice its timeout
        time.sleep(0.05)
    GAUGES["timeout-block"].release()
    blocker.get_result()
    assert waited.get_result() == "ran"
    row = _row(waited.workflow_id)
    assert row.started_at_epoch_ms is not None
    assert row.started_at_epoch_ms - row.created_at >= 400
    assert row.deadline_epoch_ms == row.started_at_epoch_ms + 200


@needs_dbos
def test_timeout_cancels_long_running_queued_workflow() -> None:
    with SetWorkflowTimeout(0.3):
        handle = timeout_queue.enqueue(q_sleepy, 30)
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result()
    assert handle.get_status().status == "CANCELLED"


@needs_dbos
def test_cancel_enqueued_workflow_removes_it_from_the_queue() -> None:
    blocker = _hold_queue(cancel_queue, "cancel-block")
    victim = cancel_queue.enqueue(q_record, "cancel", "victim")
    DBOS.cancel_workflow(victim.workflow_id)
    assert victim.get_status().status == "CANCELLED"
    queued = DBOS.list_queued_workflows(queue_name="q_cancel")
    assert victim.workflow_id not in [s.workflow_id for s in queued]
    marker = cancel_queue.enqueue(q_record, "cancel", "marker")
    GAUGES["cancel-block"].release()
    blocker.get_result()
    marker.get_result()  # FIFO with concurrency 1: the victim would have run before this
    assert CALLS["cancel"] == ["marker"]
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        victim.get_result()


@needs_dbos
def test_resume_enqueued_workflow_starts_it_now() -> None:
    blocker = _hold_queue(resume_queue, "resume-block")
    waiting = resume_queue.enqueue(q_record, "resume", "jumped")
    assert waiting.get_status().status == "ENQUEUED"
    assert DBOS.resume_workflow(waiting.workflow_id).get_result() == "jumped"
    assert GAUGES["resume-block"].running == 1  # the queue's only slot is still taken
    GAUGES["resume-block"].release()
    blocker.get_result()
    assert CALLS["resume"] == ["jumped"]


# -- listing --------------------------------------------------------------------------------------


@needs_dbos
def test_list_queued_workflows_filters() -> None:
    tag = "list-block"
    blocker = _hold_queue(list_queue, tag)
    others = [list_queue.enqueue(q_other_record, "list", i) for i in range(2)]

    def ids(**filters: Any) -> set[str]:
        return {s.workflow_id for s in DBOS.list_queued_workflows(**filters)}

    other_ids = {h.workflow_id for h in others}
    assert ids(queue_name="q_list") == other_ids | {blocker.workflow_id}
    assert ids(queue_name="q_list", status="ENQUEUED") == other_ids
    assert ids(queue_name="q_list", status="PENDING") == {blocker.workflow_id}
    assert ids(queue_name="q_list", name="q_other_record") == other_ids
    assert ids(queue_name="q_no_such_queue") == set()
    with pytest.raises(DBOSInvalidArgumentError, match="SUCCESS"):
        DBOS.list_queued_workflows(status="SUCCESS")
    GAUGES[tag].release()
    for h in [blocker, *others]:
        h.get_result()
    assert ids(queue_name="q_list") == set()


# -- what this process must not claim -------------------------------------------------------------


@needs_dbos
def test_unrunnable_work_is_left_on_the_queue() -> None:
    """Work of another application version, or of a function this process lacks, stays ENQUEUED."""
    runtime = _runtime()
    now = runtime.now_ms()
    unknown = WorkflowRow(
        workflow_uuid="q-foreign-unknown",
        status="ENQUEUED",
        name="no.such.workflow",
        inputs=runtime.codec.encode_inputs("no.such.workflow", (), {}),
        application_version=runtime.app_version,
        created_at=now - 10,
        updated_at=now - 10,
        queue_name="q_foreign",
    )
    runtime.store.insert_workflow(unknown)
    # Registered function, but no instance with this config_name: claimed, then handed back.
    no_instance = WorkflowRow(
        workflow_uuid="q-foreign-no-instance",
        status="ENQUEUED",
        name="QInstanceOwner.q_method",
        class_name="QInstanceOwner",
        config_name="no-such-instance",
        inputs=runtime.codec.encode_inputs("QInstanceOwner.q_method", (1,), {}),
        application_version=runtime.app_version,
        created_at=now - 5,
        updated_at=now - 5,
        queue_name="q_foreign",
    )
    runtime.store.insert_workflow(no_instance)
    with SetEnqueueOptions(app_version="some-other-version"):
        other_version = foreign_queue.enqueue(q_record, "foreign", "other-version")
    mine = foreign_queue.enqueue(q_record, "foreign", "mine")
    assert mine.get_result() == "mine"  # not blocked behind work it cannot run
    assert _row("q-foreign-unknown").status == "ENQUEUED"
    handed_back = _row("q-foreign-no-instance")
    assert (handed_back.status, handed_back.executor_id) == ("ENQUEUED", None)
    assert handed_back.recovery_attempts == 0
    assert other_version.get_status().status == "ENQUEUED"
    assert CALLS["foreign"] == ["mine"]


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": ""}, "non-empty string name"),
        ({"concurrency": 0}, "concurrency must be a positive integer.*got 0"),
        ({"concurrency": 1.5}, "concurrency must be a positive integer.*got 1.5"),
        ({"worker_concurrency": -2}, "worker_concurrency must be a positive integer.*got -2"),
        ({"concurrency": 2, "worker_concurrency": 3}, r"worker_concurrency \(3\) cannot exceed"),
        ({"limiter": {"limit": 0, "period": 1}}, "limiter 'limit' must be a positive integer"),
        ({"limiter": {"limit": 5, "period": 0}}, "limiter 'period' must be a number of seconds"),
        ({"limiter": {"limit": 5}}, "limiter must be"),
        ({"limiter": {"limit": 5, "period": 1, "burst": 2}}, "limiter must be"),
        ({"polling_interval_sec": 0}, "polling_interval_sec must be a number of seconds > 0"),
    ],
)
def test_bad_queue_arguments(kwargs: dict[str, Any], message: str) -> None:
    args = {"name": "q_bad", **kwargs}
    with pytest.raises(DBOSInvalidArgumentError, match=message):
        Queue(**args)


# -- several processes ----------------------------------------------------------------------------


@needs_dbos
@pytest.mark.timeout(120)
def test_two_processes_drain_one_queue(db_url: str) -> None:
    _drain_in_processes(db_url, items=150, processes=2)


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.skipif(
    not os.environ.get("KEEPTIME_SLOW_TESTS"), reason="set KEEPTIME_SLOW_TESTS=1 to run"
)
@pytest.mark.usefixtures("dbos")
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_three_processes_drain_2000(db_url: str) -> None:
    _drain_in_processes(db_url, items=2000, processes=3)


def _drain_in_processes(db_url: str, items: int, processes: int) -> None:
    """Worker processes drain one queue: each item runs once, global concurrency holds."""
    side = queue_mp_app.gauge_engine(db_url)
    queue_mp_app.create_side_tables(side)
    # This process runs another application version, so only the workers claim these.
    with SetEnqueueOptions(app_version=queue_mp_app.APP_VERSION):
        handles = [queue_mp_app.qmp_queue.enqueue(queue_mp_app.qmp_task, i) for i in range(items)]
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.engine.queue_mp_app",
                db_url,
                f"w{n}",
                str(items),
                str(processes),
            ],
            cwd=root,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(processes)
    ]
    try:
        for worker in workers:
            _, err = worker.communicate(timeout=240)
            assert worker.returncode == 0, err
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    assert sorted(h.get_result() for h in handles) == list(range(items))
    with side.connect() as conn:
        runs = conn.execute(text("SELECT item, executor FROM qmp_runs")).all()
        running, peak = conn.execute(text("SELECT running, peak FROM qmp_gauge")).one()
    side.dispose()
    twice = [item for item, n in Counter(r[0] for r in runs).items() if n > 1]
    assert twice == [], f"items run more than once: {twice}"
    assert sorted(r[0] for r in runs) == list(range(items))  # each ran exactly once
    assert {r[1] for r in runs} == {f"w{n}" for n in range(processes)}  # both processes took part
    assert running == 0
    assert peak == queue_mp_app.CONCURRENCY


notify_queue = Queue("notify-q", polling_interval_sec=120.0)


@DBOS.workflow()
def notified(tag: str) -> str:
    return f"ran {tag}"


@pytest.mark.usefixtures("dbos")
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_enqueue_from_another_process_wakes_the_worker_via_notify(db_url: str) -> None:
    """The queue polls every 120 s; a run well before that proves the NOTIFY reached us."""

    listener = _runtime().messaging.listener
    assert listener is not None and listener.connected.wait(30), "the queue worker never listened"
    enqueue = (
        "import sys; from engine import DBOSClient; "
        "c = DBOSClient(system_database_url=sys.argv[1]); "
        "c.enqueue({'queue_name': 'notify-q', 'workflow_name': sys.argv[2], "
        "'workflow_id': 'notified-1'}, 'x'); c.destroy()"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run(
        [sys.executable, "-c", enqueue, db_url, notified.__qualname__],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        check=True,
        timeout=60,
    )
    started = time.monotonic()
    assert DBOS.retrieve_workflow("notified-1").get_result() == "ran x"
    assert time.monotonic() - started < 60


def test_declaring_a_queue_wakes_running_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A queue declared after launch has its backlog looked at now, not at the worker's next
    poll of the other queues (up to their polling interval later)."""
    from engine.runtime import queue_worker

    class Worker:
        def __init__(self) -> None:
            self.event = threading.Event()

    workers = [Worker(), Worker()]
    monkeypatch.setattr(queue_worker, "_LIVE_WORKERS", set(workers))
    Queue("declared-late")
    assert all(worker.event.is_set() for worker in workers)
