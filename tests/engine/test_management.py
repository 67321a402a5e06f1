"""Durable sleep, timeouts, cancel/resume/fork, listing and DBOSClient, on both backends."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from engine import DBOS, DBOSClient, SetWorkflowID, SetWorkflowTimeout
from engine.error import (
    DBOSAwaitedWorkflowCancelledError,
    DBOSInvalidArgumentError,
    DBOSNonExistentWorkflowError,
)

pytestmark = pytest.mark.usefixtures("dbos")

runs: Counter[str] = Counter()
gates: dict[str, threading.Event] = {}


def gate(name: str) -> threading.Event:
    return gates.setdefault(name, threading.Event())


@DBOS.step()
def record(tag: str, index: int) -> int:
    runs[f"{tag}:{index}"] += 1
    return index


@DBOS.step()
def wait_for_gate(name: str) -> None:
    assert gate(name).wait(30), f"gate {name} never opened"


@DBOS.workflow()
def gated(tag: str) -> int:
    record(tag, 1)
    wait_for_gate(tag)
    record(tag, 3)
    return 3


@DBOS.workflow()
def three_steps(tag: str) -> int:
    return record(tag, 1) + record(tag, 2) + record(tag, 3)


@DBOS.workflow()
def sleepy_child() -> str:
    DBOS.sleep(30)
    record("never", 1)
    return "woke"


@DBOS.workflow()
def sleepy_parent() -> str:
    handle = DBOS.start_workflow(sleepy_child)
    return handle.get_result()


def test_sleep_records_its_wake_time() -> None:
    @DBOS.workflow()
    def nap() -> str:
        DBOS.sleep(0.05)
        return "rested"

    with SetWorkflowID("nap-1"):
        assert nap() == "rested"
    (step,) = DBOS.list_workflow_steps("nap-1")
    assert step["function_name"] == "DBOS.sleep"
    assert isinstance(step["output"], int)


def test_timeout_cancels_the_workflow_and_its_children() -> None:
    with SetWorkflowTimeout(0.5), SetWorkflowID("timeout-parent"):
        handle = DBOS.start_workflow(sleepy_parent)
    with pytest.raises(DBOSAwaitedWorkflowCancelledError, match="timeout-parent"):
        handle.get_result()
    assert handle.get_status().status == "CANCELLED"
    assert handle.get_status().workflow_deadline_epoch_ms is not None
    (child_step,) = DBOS.list_workflow_steps("timeout-parent")
    child_id = child_step["child_workflow_id"]
    assert child_id is not None
    child = DBOS.retrieve_workflow(child_id)
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        child.get_result()
    assert child.get_status().status == "CANCELLED"
    assert runs["never:1"] == 0


def test_cancel_then_resume_does_not_rerun_finished_steps() -> None:
    tag = f"cancel-{uuid.uuid4().hex[:6]}"
    with SetWorkflowID(tag):
        handle = DBOS.start_workflow(gated, tag)
    wait_steps(tag, 1)
    DBOS.cancel_workflow(tag)
    assert handle.get_status().status == "CANCELLED"
    gate(tag).set()  # the step in flight finishes; the workflow stops at the next step
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result()
    assert runs[f"{tag}:3"] == 0
    resumed = DBOS.resume_workflow(tag)
    assert resumed.get_result() == 3
    assert runs[f"{tag}:1"] == 1
    assert runs[f"{tag}:3"] == 1
    assert resumed.get_status().status == "SUCCESS"


def test_cancelling_a_finished_workflow_is_a_no_op() -> None:
    tag = f"done-{uuid.uuid4().hex[:6]}"
    with SetWorkflowID(tag):
        three_steps(tag)
    DBOS.cancel_workflow(tag)
    assert DBOS.retrieve_workflow(tag).get_status().status == "SUCCESS"
    assert DBOS.retrieve_workflow(tag).get_result() == 6


def test_fork_reruns_only_steps_from_start_step() -> None:
    tag = f"fork-{uuid.uuid4().hex[:6]}"
    with SetWorkflowID(tag):
        three_steps(tag)
    with SetWorkflowID(f"{tag}-forked"):
        forked = DBOS.fork_workflow(tag, 3)
    assert forked.workflow_id == f"{tag}-forked"
    assert forked.get_result() == 6
    assert (runs[f"{tag}:1"], runs[f"{tag}:2"], runs[f"{tag}:3"]) == (1, 1, 2)
    assert [s["function_id"] for s in DBOS.list_workflow_steps(forked.workflow_id)] == [1, 2, 3]


def test_fork_bad_input() -> None:
    with pytest.raises(DBOSNonExistentWorkflowError, match="nope"):
        DBOS.fork_workflow("nope", 1)
    with pytest.raises(DBOSInvalidArgumentError, match="start_step"):
        DBOS.fork_workflow("nope", 0)


def wait_steps(workflow_id: str, count: int) -> None:
    deadline = datetime.now(UTC) + timedelta(seconds=30)
    while len(DBOS.list_workflow_steps(workflow_id)) < count:
        assert datetime.now(UTC) < deadline, f"{workflow_id} never recorded {count} steps"
        threading.Event().wait(0.01)


@pytest.fixture()
def listed() -> Iterator[list[str]]:
    ids = []
    for i in range(5):
        wf_id = f"list-{i}"
        with SetWorkflowID(wf_id):
            three_steps(wf_id)
        ids.append(wf_id)
    gates.pop("other-0", None)  # a fresh gate: the other backend's run opened the last one
    with SetWorkflowID("other-0"):
        DBOS.start_workflow(gated, "other-0")
    yield ids
    gate("other-0").set()
    DBOS.retrieve_workflow("other-0").get_result()


def test_list_workflows_filters(listed: list[str]) -> None:
    ids = lambda statuses: [s.workflow_id for s in statuses]  # noqa: E731
    assert ids(DBOS.list_workflows(workflow_id_prefix="list-")) == listed
    assert ids(DBOS.list_workflows(workflow_ids=["list-1", "list-3"])) == ["list-1", "list-3"]
    assert ids(DBOS.list_workflows(status="PENDING")) == ["other-0"]
    assert "other-0" in ids(DBOS.list_workflows(status=["PENDING", "SUCCESS"]))
    assert ids(DBOS.list_workflows(name="gated")) == ["other-0"]
    assert ids(DBOS.list_workflows(workflow_id_prefix="list-", limit=2)) == ["list-0", "list-1"]
    assert ids(DBOS.list_workflows(workflow_id_prefix="list-", limit=2, offset=3)) == [
        "list-3",
        "list-4",
    ]
    assert ids(DBOS.list_workflows(workflow_id_prefix="list-", sort_desc=True))[0] == "list-4"
    assert len(DBOS.list_workflows(app_version=DBOS.application_version)) == 6
    assert DBOS.list_workflows(app_version="other-version") == []
    assert DBOS.list_workflows(user="nobody") == []
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert DBOS.list_workflows(start_time=future) == []
    assert len(DBOS.list_workflows(start_time=past, end_time=future)) == 6
    assert DBOS.list_workflows(end_time=past) == []


def test_list_workflows_bad_input() -> None:
    with pytest.raises(DBOSInvalidArgumentError, match="'DONE'"):
        DBOS.list_workflows(status="DONE")
    with pytest.raises(DBOSInvalidArgumentError, match="RFC 3339"):
        DBOS.list_workflows(start_time="yesterday")
    with pytest.raises(DBOSInvalidArgumentError, match="UTC offset"):
        DBOS.list_workflows(start_time="2026-01-01T00:00:00")
    with pytest.raises(DBOSInvalidArgumentError, match="limit"):
        DBOS.list_workflows(limit=-1)
    with pytest.raises(DBOSInvalidArgumentError, match="ENQUEUED"):
        DBOS.list_queued_workflows(status="SUCCESS")


def test_unknown_workflow_ids() -> None:
    with pytest.raises(DBOSNonExistentWorkflowError, match="missing-id"):
        DBOS.retrieve_workflow("missing-id")
    with pytest.raises(DBOSNonExistentWorkflowError, match="missing-id"):
        DBOS.cancel_workflow("missing-id")
    with pytest.raises(DBOSNonExistentWorkflowError, match="missing-id"):
        DBOS.resume_workflow("missing-id")
    assert DBOS.list_workflow_steps("missing-id") == []


def test_client_manages_workflows_from_outside(db_url: str) -> None:
    tag = f"client-{uuid.uuid4().hex[:6]}"
    with SetWorkflowID(tag):
        DBOS.start_workflow(gated, tag)
    client = DBOSClient(system_database_url=db_url)
    try:
        wait_steps(tag, 1)
        assert [s.workflow_id for s in client.list_workflows(workflow_ids=[tag])] == [tag]
        assert client.list_workflow_steps(tag)[0]["function_name"] == "record"
        client.cancel_workflow(tag)
        handle = client.retrieve_workflow(tag)
        assert handle.get_status().status == "CANCELLED"
        gate(tag).set()
        # The executor notices the cancel made by another process at its next step.
        with pytest.raises(DBOSAwaitedWorkflowCancelledError):
            DBOS.retrieve_workflow(tag).get_result()
        assert runs[f"{tag}:3"] == 0
        resumed = client.resume_workflow(tag)  # handed to the executor via the internal queue
        assert resumed.get_result() == 3
        assert runs[f"{tag}:1"] == 1
        forked = client.fork_workflow(tag, 2)
        assert forked.get_result() == 3
        assert runs[f"{tag}:1"] == 1
        assert runs[f"{tag}:3"] == 2
        with pytest.raises(DBOSNonExistentWorkflowError):
            client.retrieve_workflow("missing-id")
    finally:
        client.destroy()


def test_resumed_workflow_keeps_its_timeout() -> None:
    with SetWorkflowTimeout(0.3), SetWorkflowID("resume-timeout"):
        handle = DBOS.start_workflow(sleepy_child)
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result()
    resumed = DBOS.resume_workflow("resume-timeout")
    assert resumed.get_status().workflow_deadline_epoch_ms is not None
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        resumed.get_result()  # it times out again instead of sleeping its 30 s
    assert runs["never:1"] == 0
