"""Workflows, steps, transactions, child workflows, async, classes: on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import uuid
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import Column, MetaData, String, Table, select, text

from engine import (
    DBOS,
    DBOSConfiguredInstance,
    SetWorkflowID,
    WorkflowHandleAsync,
    WorkflowStatus,
)
from engine.error import DBOSMaxStepRetriesExceeded, DBOSWorkflowConflictIDError

pytestmark = pytest.mark.usefixtures("dbos")

step_runs: Counter[str] = Counter()


class CustomError(Exception):
    pass


@DBOS.step()
def double(x: int) -> int:
    step_runs["double"] += 1
    return x * 2


@DBOS.step()
def fail_step(message: str) -> None:
    raise CustomError(message)


@DBOS.workflow()
def two_steps(x: int) -> int:
    return double(double(x))


@DBOS.workflow()
def failing_workflow(message: str) -> None:
    fail_step(message)


@DBOS.workflow()
def current_id_workflow() -> str | None:
    return DBOS.workflow_id


def test_workflow_runs_steps_and_records_them() -> None:
    with SetWorkflowID("wf-two-steps"):
        assert two_steps(3) == 12
    steps = DBOS.list_workflow_steps("wf-two-steps")
    assert [(s["function_id"], s["function_name"], s["output"]) for s in steps] == [
        (1, "double", 6),
        (2, "double", 12),
    ]
    status = DBOS.retrieve_workflow("wf-two-steps").get_status()
    assert status.status == "SUCCESS"
    assert status.output == 12
    assert status.input == {"args": (3,), "kwargs": {}}
    assert status.name == "two_steps"


def test_workflow_id_is_an_idempotency_key() -> None:
    before = step_runs["double"]
    with SetWorkflowID("idem-1"):
        assert two_steps(1) == 4
    with SetWorkflowID("idem-1"):
        assert two_steps(100) == 4  # same ID: the first run's result, nothing re-executed
    assert step_runs["double"] - before == 2


def test_concurrent_starts_with_one_id_run_once() -> None:
    before = step_runs["double"]
    results: list[int] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        with SetWorkflowID("idem-concurrent"):
            results.append(DBOS.start_workflow(two_steps, 5).get_result())

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [20] * 8
    assert step_runs["double"] - before == 2


def test_same_id_for_another_workflow_is_a_conflict() -> None:
    with SetWorkflowID("conflict-id"):
        two_steps(1)
    with (
        SetWorkflowID("conflict-id"),
        pytest.raises(DBOSWorkflowConflictIDError, match="two_steps"),
    ):
        failing_workflow("x")


def test_errors_keep_their_type_and_are_recorded() -> None:
    with SetWorkflowID("wf-fails"), pytest.raises(CustomError, match="boom"):
        failing_workflow("boom")
    handle = DBOS.retrieve_workflow("wf-fails")
    with pytest.raises(CustomError, match="boom"):
        handle.get_result()
    status = handle.get_status()
    assert status.status == "ERROR"
    assert isinstance(status.error, CustomError)
    step = DBOS.list_workflow_steps("wf-fails")[0]
    assert isinstance(step["error"], CustomError)


def test_workflow_id_context_variable() -> None:
    with SetWorkflowID("my-id"):
        assert current_id_workflow() == "my-id"
    assert DBOS.workflow_id is None


attempts: Counter[str] = Counter()


@DBOS.step(retries_allowed=True, interval_seconds=0.01, max_attempts=3, backoff_rate=1.5)
def flaky(key: str, failures: int) -> str:
    attempts[key] += 1
    if attempts[key] <= failures:
        raise ConnectionError(f"try {attempts[key]}")
    return f"ok after {attempts[key]}"


@DBOS.workflow()
def flaky_workflow(key: str, failures: int) -> str:
    return flaky(key, failures)


def test_step_retries_until_success() -> None:
    assert flaky_workflow(f"retry-ok-{uuid.uuid4()}", 2) == "ok after 3"


def test_step_retries_exhausted() -> None:
    key = f"retry-fail-{uuid.uuid4()}"
    with pytest.raises(DBOSMaxStepRetriesExceeded, match="flaky") as info:
        flaky_workflow(key, 5)
    assert attempts[key] == 3
    assert [str(e) for e in info.value.errors] == ["try 1", "try 2", "try 3"]


@DBOS.workflow()
def child(x: int) -> int:
    return double(x)


@DBOS.workflow()
def parent_workflow(x: int) -> list[int]:
    direct = child(x)
    handle = DBOS.start_workflow(child, x + 1)
    return [direct, handle.get_result()]


def test_child_workflows_are_recorded_in_parent_steps() -> None:
    with SetWorkflowID("parent-1"):
        assert parent_workflow(1) == [2, 4]
    steps = DBOS.list_workflow_steps("parent-1")
    children = [s["child_workflow_id"] for s in steps]
    assert children == ["parent-1-1", "parent-1-2"]
    for child_id in children:
        assert child_id is not None
        status = DBOS.retrieve_workflow(child_id).get_status()
        assert status.status == "SUCCESS"
        assert status.parent_workflow_id == "parent-1"


def test_start_workflow_returns_a_handle() -> None:
    handle = DBOS.start_workflow(two_steps, 2)
    assert handle.get_result() == 8
    assert handle.get_workflow_id() == handle.workflow_id
    assert handle.get_status().status == "SUCCESS"


def test_workflow_status_has_every_spec_field() -> None:
    handle = DBOS.start_workflow(two_steps, 2)
    handle.get_result()
    status = handle.get_status()
    assert isinstance(status, WorkflowStatus)
    for name in [
        "workflow_id",
        "status",
        "name",
        "recovery_attempts",
        "class_name",
        "config_name",
        "authenticated_user",
        "assumed_role",
        "authenticated_roles",
        "input",
        "output",
        "error",
        "created_at",
        "updated_at",
        "queue_name",
        "executor_id",
        "app_version",
    ]:
        assert hasattr(status, name), name
    assert status.executor_id == DBOS.executor_id == f"{socket.gethostname()}-1"
    assert status.app_version == DBOS.application_version
    assert status.created_at is not None and status.updated_at is not None
    assert status.recovery_attempts == 1


@DBOS.step()
async def async_double(x: int) -> int:
    await asyncio.sleep(0)
    return x * 2


@DBOS.workflow()
async def async_workflow(x: int) -> int:
    await DBOS.sleep_async(0.01)
    return await async_double(x) + 1


def test_async_workflow_direct_and_started() -> None:
    async def main() -> tuple[int, int, str]:
        direct = await async_workflow(2)
        handle = await DBOS.start_workflow_async(async_workflow, 5)
        assert isinstance(handle, WorkflowHandleAsync)
        result = await handle.get_result()
        status = await handle.get_status()
        return direct, result, status.status

    assert asyncio.run(main()) == (5, 11, "SUCCESS")


@DBOS.workflow()
async def async_sleeper(seconds: float) -> str:
    await DBOS.sleep_async(seconds)
    return "woke"


def test_async_durable_sleeps_hold_no_thread() -> None:
    """As many sleeping async workflows as asyncio's default executor has threads: a to_thread
    call made meanwhile must not wait for their sleeps to end."""
    sleepers = min(32, (os.cpu_count() or 1) + 4)  # ThreadPoolExecutor's default size

    async def main() -> tuple[float, list[str]]:
        handles = [await DBOS.start_workflow_async(async_sleeper, 5.0) for _ in range(sleepers)]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while not all(DBOS.list_workflow_steps(h.workflow_id) for h in handles):
            assert loop.time() < deadline, "every sleeper recorded its sleep"
            await asyncio.sleep(0.05)  # the sleepers run on this loop meanwhile
        await asyncio.sleep(0.2)  # each is past the step, into the sleep itself
        began = loop.time()
        await asyncio.wait_for(asyncio.to_thread(lambda: None), timeout=2.0)
        waited = loop.time() - began
        return waited, [await h.get_result() for h in handles]

    waited, results = asyncio.run(main())
    assert results == ["woke"] * sleepers
    assert waited < 2.0


def test_cancelling_a_workflow_ends_its_async_sleep() -> None:
    async def main() -> BaseException | None:
        handle = await DBOS.start_workflow_async(async_sleeper, 60.0)
        await asyncio.sleep(0.3)  # into its sleep (a recorded step comes first)
        await asyncio.to_thread(DBOS.cancel_workflow, handle.workflow_id)
        try:
            await asyncio.wait_for(handle.get_result(), timeout=10)
        except TimeoutError:
            raise
        except Exception as exc:
            return exc
        return None

    error = asyncio.run(main())
    assert error is not None and "cancel" in type(error).__name__.lower()


ALWAYS_FAILING_ATTEMPTS: list[str] = []


@DBOS.step(retries_allowed=True, interval_seconds=60, max_attempts=5)
def always_failing_step(mode: str) -> None:
    ALWAYS_FAILING_ATTEMPTS.append(mode)
    raise RuntimeError("down")


@DBOS.step(retries_allowed=True, interval_seconds=60, max_attempts=5)
async def always_failing_async_step(mode: str) -> None:
    ALWAYS_FAILING_ATTEMPTS.append(mode)
    raise RuntimeError("down")


@DBOS.workflow()
def retrying_workflow() -> None:
    always_failing_step("sync")


@DBOS.workflow()
async def retrying_async_workflow() -> None:
    await always_failing_async_step("async")


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_cancelling_a_workflow_ends_its_step_retry_backoff(mode: str) -> None:
    """A step waiting 60 s before its next attempt stops waiting when its workflow is cancelled,
    in a coroutine workflow as in a plain one."""
    ALWAYS_FAILING_ATTEMPTS.clear()

    async def main() -> BaseException | None:
        if mode == "sync":
            handle = await DBOS.start_workflow_async(retrying_workflow)
        else:
            handle = await DBOS.start_workflow_async(retrying_async_workflow)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while not ALWAYS_FAILING_ATTEMPTS:
            assert loop.time() < deadline, "the first attempt ran"
            await asyncio.sleep(0.05)
        await asyncio.to_thread(DBOS.cancel_workflow, handle.workflow_id)
        try:
            await asyncio.wait_for(handle.get_result(), timeout=15)  # far below the 60 s backoff
        except TimeoutError:
            raise
        except Exception as exc:
            return exc
        return None

    error = asyncio.run(main())
    assert error is not None and "cancel" in type(error).__name__.lower()
    assert ALWAYS_FAILING_ATTEMPTS.count(mode) <= 2, ALWAYS_FAILING_ATTEMPTS


class Counter_(DBOSConfiguredInstance):
    def __init__(self, name: str, base: int) -> None:
        self.base = base
        super().__init__(config_name=name)

    @DBOS.workflow()
    def add(self, x: int) -> int:
        return self.add_step(x)

    @DBOS.step()
    def add_step(self, x: int) -> int:
        return self.base + x


DBOS.dbos_class()(Counter_)
counter_a = Counter_("counter-a", 100)


def test_configured_instance_workflows_record_config_name() -> None:
    with SetWorkflowID("instance-wf"):
        assert counter_a.add(5) == 105
    status = DBOS.retrieve_workflow("instance-wf").get_status()
    assert status.class_name == "Counter_"
    assert status.config_name == "counter-a"
    assert status.input == {"args": (5,), "kwargs": {}}


greetings = Table("greetings", MetaData(), Column("name", String(50)), Column("note", String(200)))
tx_runs: Counter[str] = Counter()


@DBOS.transaction()
def insert_greeting(name: str, note: str) -> int:
    tx_runs[name] += 1
    DBOS.sql_session.execute(greetings.insert().values(name=name, note=note))
    return int(DBOS.sql_session.execute(text("SELECT COUNT(*) FROM greetings")).scalar_one())


@DBOS.transaction()
def read_greeting(name: str) -> str | None:
    row = DBOS.sql_session.execute(select(greetings.c.note).where(greetings.c.name == name)).first()
    return row[0] if row else None


@DBOS.workflow()
def greeting_workflow(name: str) -> tuple[int, str | None]:
    return insert_greeting(name, "hi"), read_greeting(name)


def test_transactions_run_exactly_once_and_are_checkpointed(launch: Any) -> None:
    from engine.dbos import _runtime
    from engine.runtime.transactions import app_database

    with app_database(_runtime()).write() as conn:
        greetings.create(conn, checkfirst=True)
    name = f"ann-{uuid.uuid4().hex[:8]}"
    with SetWorkflowID("tx-wf"):
        assert greeting_workflow(name) == (1, "hi")
    with SetWorkflowID("tx-wf"):
        assert greeting_workflow(name) == (1, "hi")
    assert tx_runs[name] == 1
    assert [s["function_name"] for s in DBOS.list_workflow_steps("tx-wf")] == [
        "insert_greeting",
        "read_greeting",
    ]


def test_sql_session_outside_a_transaction_is_an_error() -> None:
    from engine.error import DBOSNotInWorkflowError

    with pytest.raises(DBOSNotInWorkflowError, match="transaction"):
        DBOS.sql_session.execute(text("SELECT 1"))


def test_workflows_registered_after_launch_run() -> None:
    @DBOS.workflow()
    def late(x: int) -> int:
        return double(x) + 1

    assert late(4) == 9


def test_steps_outside_workflows_run_plainly() -> None:
    assert double(21) == 42


def test_logger_is_available() -> None:
    DBOS.logger.info("hello from the test")
    assert DBOS.logger.name == "keeptime.engine"


def test_configured_instance_workflow_is_recovered_by_config_name() -> None:
    from sqlalchemy import delete, update

    from engine.dbos import _runtime
    from engine.storage.schema import operation_outputs, workflow_status

    with SetWorkflowID("instance-recover"):
        assert counter_a.add(7) == 107
    runtime = _runtime()
    # Make it look like a crash right after the workflow started: PENDING, no steps recorded.
    with runtime.db.write() as conn:
        conn.execute(
            update(workflow_status)
            .where(workflow_status.c.workflow_uuid == "instance-recover")
            .values(status="PENDING", output=None)
        )
        conn.execute(
            delete(operation_outputs).where(operation_outputs.c.workflow_uuid == "instance-recover")
        )
    assert runtime.recover_pending() == ["instance-recover"]
    assert DBOS.retrieve_workflow("instance-recover").get_result() == 107


def test_reset_system_database(db_url: str) -> None:
    with SetWorkflowID("before-reset"):
        two_steps(1)
    DBOS.destroy()
    DBOS(config={"name": "test-app", "system_database_url": db_url})
    DBOS.reset_system_database()
    DBOS.launch()
    assert DBOS.list_workflows() == []
