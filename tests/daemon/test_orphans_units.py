"""The engine extensions the daemon's restart handling stands on, in one process on both backends:
``DBOS.list_unrecoverable_workflows`` and ``DBOS.count_other_version_workflows``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from engine import DBOS, JsonSerializer, SetWorkflowID
from engine.runtime.registry import STEP_WORKFLOW_PREFIX

IDS = ("gone", "temp-step", "no-instance", "other-version", "held-old", "queued-old", "fine")


@DBOS.step()
def orphans_unit_step() -> int:
    return 1


@DBOS.workflow()
def orphans_unit_waiter() -> str:
    DBOS.recv("never", timeout_seconds=60)
    return "done"


def _launch(db_url: str) -> None:
    DBOS.destroy()
    DBOS(
        config={
            "name": "orphans-unit",
            "system_database_url": db_url,
            "serializer": JsonSerializer(),
            "application_version": "keeptime",
        }
    )
    DBOS.launch()


def _update(db_url: str, workflow_id: str, **values: object) -> None:
    """Change a stored run, as an older config, older code or another version left it."""
    engine = sa.create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    table = "workflow_status" if engine.dialect.name == "sqlite" else "dbos.workflow_status"
    assignments = ", ".join(f"{key} = :{key}" for key in values)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(f"UPDATE {table} SET {assignments} WHERE workflow_uuid = :id"),
                {**values, "id": workflow_id},
            )
    finally:
        engine.dispose()


@pytest.fixture()
def left_over(db_url: str) -> Iterator[str]:
    """Runs left PENDING by a stopped process, then edited into each case."""
    _launch(db_url)
    for workflow_id in IDS:
        with SetWorkflowID(workflow_id):
            DBOS.start_workflow(orphans_unit_waiter)
    DBOS.destroy()
    _update(db_url, "gone", name="removed_from_the_config")
    _update(db_url, "temp-step", name=STEP_WORKFLOW_PREFIX + "orphans_unit_step")
    _update(db_url, "no-instance", class_name="Missing", config_name="cfg")
    _update(db_url, "other-version", application_version="v0")
    hold = {"status": "ENQUEUED", "executor_id": None, "application_version": "v0"}
    _update(db_url, "held-old", queue_name="_keeptime_hold:nightly", **hold)
    _update(db_url, "queued-old", queue_name="reports", **hold)
    _launch(db_url)
    yield db_url
    DBOS.destroy()


def test_unrecoverable_runs_are_those_recovery_leaves_for_want_of_code(left_over: str) -> None:
    found = {u.status.workflow_id: u for u in DBOS.list_unrecoverable_workflows()}
    # Not "temp-step": an enqueued bare step of a registered step counts as runnable (the queue
    # worker builds its workflow when it claims it); not "other-version": another version's.
    assert set(found) == {"gone", "no-instance"}
    assert found["gone"].reason == (
        "no workflow named 'removed_from_the_config' is registered in this process"
    )
    assert found["no-instance"].reason == "no Missing instance with config_name 'cfg' exists"
    assert found["gone"].status.status == "PENDING"
    assert found["gone"].status.executor_id == DBOS.executor_id
    fine = DBOS.get_workflow_status("fine")
    assert fine is not None and fine.status == "PENDING"  # resumed, waiting in DBOS.recv

    DBOS.cancel_workflow("gone")
    assert {u.status.workflow_id for u in DBOS.list_unrecoverable_workflows()} == {"no-instance"}


def test_other_versions_are_counted_without_held_work(left_over: str) -> None:
    assert DBOS.count_other_version_workflows() == {"v0": 2}
    DBOS.cancel_workflow("queued-old")
    assert DBOS.count_other_version_workflows() == {"v0": 1}
