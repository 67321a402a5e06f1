"""PostgreSQL connections dropped under a running engine: workflows pause, reconnect, finish."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest

from engine import DBOS, SetWorkflowID
from engine.storage import database

pytestmark = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)


def kill_other_connections(db_url: str) -> int:
    dsn = db_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        killed = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    return int(killed[0]) if killed else 0


KILL_URL: list[str] = []


@DBOS.step()
def drop_connections() -> int:
    return kill_other_connections(KILL_URL[0])


@DBOS.step()
def after_drop() -> str:
    return "still here"


@DBOS.workflow()
def survives_connection_loss() -> tuple[int, str]:
    killed = drop_connections()  # its checkpoint write finds every pooled connection dead
    return killed, after_drop()


def test_a_workflow_survives_its_connections_being_killed(
    launch: Callable[..., None], db_url: str
) -> None:
    launch()
    KILL_URL[:] = [db_url]
    with SetWorkflowID("survivor"):
        killed, tail = survives_connection_loss()
    assert killed >= 1
    assert tail == "still here"
    assert DBOS.retrieve_workflow("survivor").get_status().status == "SUCCESS"
    assert [s["function_name"] for s in DBOS.list_workflow_steps("survivor")] == [
        "drop_connections",
        "after_drop",
    ]


def test_idle_connections_are_pinged_and_replaced(
    launch: Callable[..., None], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    launch()
    DBOS.list_workflows()  # fill the pool
    monkeypatch.setattr(database, "PING_AFTER_IDLE_SECONDS", 0.0)
    monkeypatch.setattr("engine.storage.store.RECONNECT_DELAYS_SECONDS", ())  # no retry: ping only
    assert kill_other_connections(db_url) >= 1
    assert DBOS.list_workflows() == []
