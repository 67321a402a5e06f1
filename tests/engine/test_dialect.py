"""The dialect objects: what each backend does its own way, on real SQLite files and PostgreSQL."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from engine.error import DBOSConnectionLostError, DBOSStorageError, DBOSStorageUnavailableError
from engine.storage.database import Database, parse_database_url
from engine.storage.migrations import migrate_system_database
from engine.storage.postgres_dialect import PostgresDialect
from engine.storage.sqlite_dialect import SqliteDialect
from engine.storage.store import SystemStore, WorkflowOutcome, WorkflowRow


@pytest.fixture()
def db(db_url: str) -> Iterator[Database]:
    database = Database(parse_database_url(db_url), pool_size=4)
    migrate_system_database(database)
    try:
        yield database
    finally:
        database.dispose()


def test_the_dialect_is_chosen_from_the_url(db: Database) -> None:
    dialect = db.dialect
    if isinstance(dialect, SqliteDialect):
        assert db.schema is None
        assert dialect.serializes_writers and not dialect.notifies
        assert not dialect.batches_with_arrays and not dialect.writes_in_one_statement
    else:
        assert isinstance(dialect, PostgresDialect)
        assert db.schema == "dbos"
        assert dialect.notifies and not dialect.serializes_writers
        assert dialect.batches_with_arrays and dialect.writes_in_one_statement


def test_statements_on_the_driver_take_named_parameters(db: Database) -> None:
    statement = db.dialect.driver_sql("SELECT :a || :b_c")
    with db.read() as conn:
        row = db.dialect.first_row_on_driver(conn, statement, {"a": "x", "b_c": "y"})
    assert row[0] == "xy"


def test_a_driver_error_comes_out_as_from_sqlalchemy(db: Database) -> None:
    statement = db.dialect.driver_sql("SELECT * FROM no_such_table WHERE x = :x")
    with pytest.raises(DBOSStorageError, match="no_such_table") as caught, db.read() as conn:
        db.dialect.first_row_on_driver(conn, statement, {"x": 1})
    assert isinstance(caught.value.__cause__, DBAPIError)
    assert not isinstance(caught.value, DBOSConnectionLostError)


def test_completion_is_one_definition_for_one_and_for_many(db: Database) -> None:
    store = SystemStore(db, lambda: 1_000)
    ids = ["one", "two", "three", "cancelled"]
    store.insert_workflows([WorkflowRow(i, "PENDING", "wf", created_at=1) for i in ids])
    store.cancel_workflow_tree("cancelled")
    assert store.complete_workflow("one", "SUCCESS", '"1"', None)
    assert not store.complete_workflow("one", "ERROR", None, "late")
    finished = store.complete_workflows(
        [
            WorkflowOutcome("two", "SUCCESS", '"2"', None),
            WorkflowOutcome("three", "ERROR", None, "boom"),
            WorkflowOutcome("cancelled", "SUCCESS", '"x"', None),
        ]
    )
    assert finished == {"two", "three"}
    outcomes = {i: store.get_outcome(i) for i in ids}
    assert outcomes == {
        "one": ("SUCCESS", '"1"', None),
        "two": ("SUCCESS", '"2"', None),
        "three": ("ERROR", None, "boom"),
        "cancelled": ("CANCELLED", None, None),
    }


def test_a_connection_lost_on_the_driver_retires_the_pooled_ones(pg_url: str) -> None:
    db = Database(parse_database_url(pg_url), pool_size=4)
    try:
        held = [db.engine.connect() for _ in range(3)]
        for conn in held:
            conn.execute(text("SELECT 1"))
            conn.close()  # three live connections in the pool
        with psycopg.connect(pg_url.replace("+psycopg", ""), autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        with pytest.raises(DBOSConnectionLostError), db.autocommit() as conn:
            db.dialect.first_row_on_driver(conn, "SELECT 1", {})
        # The other pooled connections died with it: each is replaced at checkout, so calls
        # that take them (three at once) succeed instead of finding them dead one by one.
        with db.read() as one, db.read() as two, db.read() as three:
            for conn in (one, two, three):
                assert conn.execute(text("SELECT 1")).scalar() == 1
    finally:
        db.dispose()


def test_a_sqlite_disk_fault_replaces_every_pooled_connection(sqlite_url: str) -> None:
    db = Database(parse_database_url(sqlite_url), pool_size=4)
    try:
        with db.read() as conn:
            conn.execute(text("SELECT 1"))
        pool = db.engine.pool
        fault = sqlite3.OperationalError("database or disk is full")
        fault.sqlite_errorcode = sqlite3.SQLITE_FULL
        with pytest.raises(DBOSStorageUnavailableError, match="is full"), db.write():
            raise DBAPIError("INSERT ...", None, fault)
        assert db.engine.pool is not pool  # connections opened before the fault are dropped
        with db.write() as conn:  # and the outage is over at the first write that succeeds
            conn.execute(text("CREATE TABLE after_the_fault (x INTEGER)"))
        assert db.last_outage_ended() is not None
    finally:
        db.dispose()


def test_postgres_errors_that_mean_an_unreachable_server(pg_url: str) -> None:
    db = Database(parse_database_url(pg_url), pool_size=1)
    try:
        lost = DBAPIError("SELECT 1", None, psycopg.OperationalError("server closed"))
        assert isinstance(db.dialect.translate(lost), DBOSConnectionLostError)
        other = DBAPIError("SELECT 1", None, psycopg.errors.UniqueViolation("duplicate"))
        translated = db.dialect.translate(other)
        assert type(translated) is DBOSStorageError
        assert "duplicate" in translated.message
    finally:
        db.dispose()
