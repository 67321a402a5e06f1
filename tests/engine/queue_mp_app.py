"""A worker process for the multi-process queue test (run with ``python -m``).

The test process imports this module too, so it can enqueue ``qmp_task`` on ``qmp_queue``. Each
run records itself in ``qmp_runs`` and moves a gauge in ``qmp_gauge``; both tables live in the
system database, so the test sees every process's work in one place.

Usage: python -m tests.engine.queue_mp_app DB_URL EXECUTOR_ID ITEMS PROCESSES
"""

from __future__ import annotations

import sys
import time

from sqlalchemy import Engine, create_engine, event, text

from engine import DBOS, Queue

APP_VERSION = "qmp-v1"
CONCURRENCY = 3
# Each worker may hold at most 2 of the 3 global slots, so reaching the peak of 3 takes two
# processes at once, and no single worker can drain the queue alone.
qmp_queue = Queue(
    "qmp_queue", concurrency=CONCURRENCY, worker_concurrency=2, polling_interval_sec=0.2
)

_engine: Engine | None = None


def gauge_engine(db_url: str) -> Engine:
    """An engine for the side tables; SQLite writers take BEGIN IMMEDIATE so updates serialize."""
    engine = create_engine(db_url, connect_args={"timeout": 30} if "sqlite" in db_url else {})
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn: object, _record: object) -> None:
            dbapi_conn.isolation_level = None  # type: ignore[attr-defined]

        @event.listens_for(engine, "begin")
        def _begin(conn: object) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # type: ignore[attr-defined]

    return engine


def create_side_tables(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE qmp_runs (item INTEGER NOT NULL, executor TEXT NOT NULL)"))
        conn.execute(
            text("CREATE TABLE qmp_gauge (running INTEGER NOT NULL, peak INTEGER NOT NULL)")
        )
        conn.execute(text("INSERT INTO qmp_gauge VALUES (0, 0)"))
        conn.execute(text("CREATE TABLE qmp_ready (executor TEXT NOT NULL)"))


def _side() -> Engine:
    assert _engine is not None, "the worker process sets the gauge engine before launch"
    return _engine


@DBOS.step()
def qmp_enter(item: int) -> None:
    greatest = "max" if _side().dialect.name == "sqlite" else "greatest"
    with _side().begin() as conn:
        conn.execute(
            text(
                f"UPDATE qmp_gauge SET running = running + 1, peak = {greatest}(peak, running + 1)"
            )
        )
        conn.execute(
            text("INSERT INTO qmp_runs VALUES (:item, :executor)"),
            {"item": item, "executor": DBOS.executor_id},
        )


@DBOS.step()
def qmp_leave() -> None:
    with _side().begin() as conn:
        conn.execute(text("UPDATE qmp_gauge SET running = running - 1"))


@DBOS.workflow()
def qmp_task(item: int) -> int:
    qmp_enter(item)
    time.sleep(0.005)  # a little work, so runs overlap and the limit is exercised
    qmp_leave()
    return item


def _finished(items: int) -> bool:
    table = "workflow_status" if _side().dialect.name == "sqlite" else "dbos.workflow_status"
    with _side().connect() as conn:
        done = conn.execute(
            text(
                f"SELECT count(*) FROM {table} WHERE queue_name = 'qmp_queue' "
                "AND status = 'SUCCESS'"
            )
        ).scalar_one()
    return int(done) >= items


def _wait_for_everyone(executor_id: str, processes: int) -> None:
    """Launch together, so every worker gets a share of the queue."""
    with _side().begin() as conn:
        conn.execute(text("INSERT INTO qmp_ready VALUES (:e)"), {"e": executor_id})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with _side().connect() as conn:
            if conn.execute(text("SELECT count(*) FROM qmp_ready")).scalar_one() >= processes:
                return
        time.sleep(0.01)


def main(db_url: str, executor_id: str, items: int, processes: int) -> None:
    global _engine
    _engine = gauge_engine(db_url)
    _wait_for_everyone(executor_id, processes)
    DBOS(
        config={
            "name": "qmp-app",
            "system_database_url": db_url,
            "executor_id": executor_id,
            "application_version": APP_VERSION,
        }
    )
    DBOS.launch()
    try:
        deadline = time.monotonic() + 60
        while not _finished(items) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        DBOS.destroy()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
