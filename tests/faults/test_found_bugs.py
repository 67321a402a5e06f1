"""Bugs the fault battery found outside the battery's own files, pinned as strict xfails.

Each test reproduces one finding in a few seconds. When the bug is fixed the test passes, the
strict xfail turns that into a failure, and the marker must go: the test then guards the fix.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from engine import DBOS, DBOSClient, Queue
from engine.runtime.registry import qualified_name

found_queue = Queue("found_q", polling_interval_sec=0.1)


@DBOS.workflow()
def found_wait_for_go() -> str:
    message: str = DBOS.recv("go", timeout_seconds=60)
    return message


def _launch(db_url: str) -> None:
    DBOS.destroy()
    DBOS(config={"name": "found", "system_database_url": db_url, "executor_id": "found-exec"})
    DBOS.launch()


def _status(workflow_id: str) -> str | None:
    status = DBOS.get_workflow_status(workflow_id)
    return status.status if status is not None else None


def _wait_for_status(workflow_id: str, wanted: str, timeout: float) -> str | None:
    deadline = time.monotonic() + timeout
    while (seen := _status(workflow_id)) != wanted and time.monotonic() < deadline:
        time.sleep(0.05)
    return seen


@pytest.fixture()
def client(db_url: str) -> Iterator[DBOSClient]:
    c = DBOSClient(system_database_url=db_url)
    yield c
    c.destroy()
    DBOS.destroy()


def test_client_enqueued_run_resumes_after_its_executor_restarts(
    db_url: str, client: DBOSClient
) -> None:
    """Fixed (the claim records the claimant's version where the row names none); guards it."""
    _launch(db_url)
    client.enqueue(
        {
            "queue_name": "found_q",
            "workflow_name": qualified_name(found_wait_for_go),
            "workflow_id": "found-1",
        }
    )
    assert _wait_for_status("found-1", "PENDING", 20) == "PENDING", "the queue claimed it"
    # A restart under the same executor ID: the run is PENDING on this executor, mid-recv.
    _launch(db_url)
    DBOS.send("found-1", "go", topic="go")
    assert _wait_for_status("found-1", "SUCCESS", 10) == "SUCCESS"
    assert DBOS.retrieve_workflow("found-1").get_result() == "go"
