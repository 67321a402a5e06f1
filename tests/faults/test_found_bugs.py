"""Bugs the fault batteries found outside their own files, one test each (docs/testing.md).

Each test reproduces one finding in a few seconds. While the bug is open the test is a strict
xfail; when it is fixed the test passes, the strict xfail turns that into a failure, and the
marker must go: the test then guards the fix.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from engine import DBOS, DBOSClient, Queue, SetWorkflowID
from engine.runtime.registry import qualified_name
from tests.pgserver import PostgresServer, start_postgres

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


# -- a live executor's work taken over after a database outage ------------------------------------

TAKEOVER_TIMEOUT_SEC = 3.0
TAKEOVER_OUTAGE_SEC = 4.5  # longer than the executor timeout
# A live executor's watcher waits out an outage in its heartbeat call, retrying at most 1 s
# apart: the fake one beats again this long after the server is back. 1 s is the latest a live
# one does, give or take the connection; 2.5 s is one slowed down by a loaded machine, still
# inside the timeout.
LIVE_BEAT_AFTER_RETURN_SEC = (1.0, 2.5)


class FakeExecutor(threading.Thread):
    """A live executor of the same version, played by beating its ``executors`` row directly:
    every sixth of the timeout, except while ``quiet_until`` (epoch s) lies ahead, as a real one
    is quiet while the database is down. It never runs anything."""

    def __init__(self, server: PostgresServer, executor_id: str) -> None:
        super().__init__(daemon=True)
        self.dsn = f"host=127.0.0.1 port={server.port} user=postgres dbname=takeover"
        self.executor_id = executor_id
        self.quiet_until = 0.0
        self.stop = threading.Event()

    def beat(self) -> None:
        with psycopg.connect(self.dsn, connect_timeout=1, autocommit=True) as conn:
            conn.execute(
                "UPDATE dbos.executors SET last_heartbeat_ms = %s WHERE executor_id = %s",
                (int(time.time() * 1000), self.executor_id),
            )

    def run(self) -> None:
        while not self.stop.wait(TAKEOVER_TIMEOUT_SEC / 6):
            if time.time() >= self.quiet_until:
                # While the server is down a beat fails; the one after it comes back counts.
                with contextlib.suppress(psycopg.OperationalError):
                    self.beat()


def _owner(server: PostgresServer, workflow_id: str) -> str:
    dsn = f"host=127.0.0.1 port={server.port} user=postgres dbname=takeover"
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT executor_id FROM dbos.workflow_status WHERE workflow_uuid = %s", (workflow_id,)
        ).fetchone()
    assert row is not None
    return str(row[0])


@pytest.fixture()
def takeover_server() -> Iterator[PostgresServer]:
    server = start_postgres()  # our own: the session's server must not go down under others
    try:
        with psycopg.connect(
            f"host=127.0.0.1 port={server.port} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            conn.execute('CREATE DATABASE "takeover"')
        yield server
    finally:
        DBOS.destroy()
        server.stop()


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("beat_after_return", LIVE_BEAT_AFTER_RETURN_SEC)
def test_a_live_executors_work_is_not_taken_over_after_an_outage(
    takeover_server: PostgresServer, beat_after_return: float
) -> None:
    """Found by the PostgreSQL outage battery: after an outage longer than executor_timeout_sec,
    the first executor to look judged every other one dead by its heartbeat's wall-clock age
    (which grew while nobody could beat) and took its PENDING work over, so two live processes
    ran the same workflows and recorded steps ran again. Fixed meanwhile by the liveness rules
    (engine.core.liveness: a heartbeat must stand still while the observer watches the
    database); this guards them."""
    DBOS.destroy()
    DBOS(
        config={
            "name": "found-takeover",
            "system_database_url": takeover_server.url_for("takeover"),
            "executor_id": "found-a",
            "application_version": "found-v1",
            "executor_timeout_sec": TAKEOVER_TIMEOUT_SEC,
        }
    )
    DBOS.launch()
    with SetWorkflowID("found-2"):
        DBOS.start_workflow(found_wait_for_go)
    # Executor found-b, live and of the same version, owns the PENDING run "found-2".
    live = FakeExecutor(takeover_server, "found-b")
    with psycopg.connect(live.dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO dbos.executors (executor_id, application_version, last_heartbeat_ms) "
            "VALUES ('found-b', 'found-v1', %s)",
            (int(time.time() * 1000),),
        )
        conn.execute(
            "UPDATE dbos.workflow_status SET executor_id = 'found-b' WHERE workflow_uuid = %s",
            ("found-2",),
        )
    live.start()
    try:
        live.quiet_until = time.time() + 3600
        takeover_server.halt("fast")
        time.sleep(TAKEOVER_OUTAGE_SEC)  # the outage itself
        takeover_server.start()
        back = time.time()
        live.quiet_until = back + beat_after_return
        time.sleep(TAKEOVER_TIMEOUT_SEC + 1.0)  # found-b beat again, well inside the timeout
        # found-b never went silent for executor_timeout_sec while the database could be
        # reached: its run is still its own.
        assert _owner(takeover_server, "found-2") == "found-b"
    finally:
        live.stop.set()
        live.join(5)
