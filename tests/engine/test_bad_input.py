"""Bad input gets clear errors that name the problem and the fix."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import engine
from engine import DBOS, JsonSerializer, SetWorkflowID, SetWorkflowTimeout
from engine.error import (
    DBOSConfigError,
    DBOSException,
    DBOSInvalidArgumentError,
    DBOSNotInWorkflowError,
    DBOSNotLaunchedError,
    DBOSSchemaVersionError,
    DBOSSerializationError,
    DBOSStorageError,
)
from engine.storage.database import Database, parse_database_url
from engine.storage.migrations import migrate_system_database
from engine.storage.schema import SCHEMA_VERSION, schema_version


@DBOS.workflow()
def echo(value: Any) -> Any:
    return value


@DBOS.workflow()
def returns_lock() -> Any:
    return threading.Lock()


def test_public_api_is_pinned() -> None:
    assert engine.__all__ == sorted(engine.__all__)
    assert set(engine.__all__) >= {
        "DBOS",
        "DBOSClient",
        "DBOSConfig",
        "DBOSConfiguredInstance",
        "Queue",
        "Serializer",
        "SetEnqueueOptions",
        "SetWorkflowID",
        "SetWorkflowTimeout",
        "WorkflowHandle",
        "WorkflowHandleAsync",
        "WorkflowStatus",
        "error",
    }
    for name in engine.__all__:
        assert hasattr(engine, name), name


def test_every_error_derives_from_one_root() -> None:
    errors = [getattr(engine.error, n) for n in dir(engine.error) if n.startswith("DBOS")]
    assert all(issubclass(e, DBOSException) for e in errors if isinstance(e, type))
    assert "DBOSQueueDeduplicatedError" in dir(engine.error)


@pytest.mark.usefixtures("dbos")
def test_unserializable_argument_names_workflow_and_argument() -> None:
    with pytest.raises(DBOSSerializationError, match=r"argument 0 of workflow 'echo'"):
        echo(threading.Lock())


@pytest.mark.usefixtures("dbos")
def test_unserializable_result_fails_the_workflow_clearly() -> None:
    with SetWorkflowID("bad-result"), pytest.raises(DBOSSerializationError, match="returns_lock"):
        returns_lock()
    assert DBOS.retrieve_workflow("bad-result").get_status().status == "ERROR"


def test_json_serializer_names_the_bad_keyword_argument(launch: Callable[..., None]) -> None:
    launch(serializer=JsonSerializer())
    with pytest.raises(DBOSSerializationError, match=r"argument 'value' of workflow 'echo'"):
        echo(value={1, 2})
    assert echo(value={"ok": [1, 2]}) == {"ok": [1, 2]}


@pytest.mark.usefixtures("dbos")
def test_workflow_only_calls_outside_a_workflow() -> None:
    with pytest.raises(DBOSNotInWorkflowError, match="recv"):
        DBOS.recv()
    with pytest.raises(DBOSNotInWorkflowError, match="set_event"):
        DBOS.set_event("k", 1)


def test_unknown_url_scheme() -> None:
    with pytest.raises(DBOSConfigError, match=r"unsupported scheme 'mysql'.*postgresql://"):
        parse_database_url("mysql://u:secret@host/db")


def test_in_memory_sqlite_is_refused() -> None:
    with pytest.raises(DBOSConfigError, match="in-memory"):
        parse_database_url("sqlite:///:memory:")


def test_unreachable_database_masks_the_password() -> None:
    DBOS.destroy()
    DBOS(
        config={
            "name": "unreachable",
            "system_database_url": "postgresql://u:hunter2@127.0.0.1:1/x",
        }
    )
    try:
        with pytest.raises(DBOSStorageError) as info:
            DBOS.launch()
        assert "hunter2" not in str(info.value)
        assert "cannot reach the database" in str(info.value)
        assert "***" in str(info.value)
    finally:
        DBOS.destroy()


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"name": "x", "bogus": 1}, "unknown DBOSConfig key"),
        ({"name": "bad name!"}, "'name'"),
        ({}, "'name'"),
        ({"name": "x", "log_level": "LOUD"}, "log_level"),
        ({"name": "x", "sys_db_pool_size": 0}, "sys_db_pool_size"),
        ({"name": "x", "serializer": "json"}, "Serializer instance"),
    ],
)
def test_bad_config(config: dict[str, Any], match: str) -> None:
    DBOS.destroy()
    with pytest.raises(DBOSConfigError, match=match):
        DBOS(config=config)  # type: ignore[arg-type]


def test_using_dbos_before_launch() -> None:
    DBOS.destroy()
    with pytest.raises(DBOSNotLaunchedError, match=r"DBOS\.launch\(\)"):
        echo(1)


@pytest.mark.parametrize("bad", [0, -1, "10", True])
def test_bad_timeout(bad: Any) -> None:
    with pytest.raises(DBOSInvalidArgumentError, match="SetWorkflowTimeout"):
        SetWorkflowTimeout(bad)


def test_bad_step_options() -> None:
    with pytest.raises(DBOSInvalidArgumentError, match="max_attempts"):
        DBOS.step(retries_allowed=True, max_attempts=0)
    with pytest.raises(DBOSInvalidArgumentError, match="backoff_rate"):
        DBOS.step(backoff_rate=0.5)


def test_starting_a_plain_function_is_an_error(launch: Callable[..., None]) -> None:
    launch()

    def plain() -> None:
        pass

    with pytest.raises(DBOSInvalidArgumentError, match=r"@DBOS\.workflow"):
        DBOS.start_workflow(plain)


def test_newer_schema_is_refused(db_url: str) -> None:
    db = Database(parse_database_url(db_url))
    try:
        migrate_system_database(db)
        with db.write() as conn:
            conn.execute(schema_version.update().values(version=SCHEMA_VERSION + 1))
        with pytest.raises(DBOSSchemaVersionError, match="upgrade keeptime"):
            migrate_system_database(db)
    finally:
        db.dispose()


def test_concurrent_migrations_are_safe(db_url: str) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def migrate() -> None:
        db = Database(parse_database_url(db_url))
        try:
            barrier.wait()
            migrate_system_database(db)
        except BaseException as exc:
            errors.append(exc)
        finally:
            db.dispose()

    threads = [threading.Thread(target=migrate) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    db = Database(parse_database_url(db_url))
    with db.read() as conn:
        assert conn.execute(schema_version.select()).all() == [(SCHEMA_VERSION,)]
    db.dispose()


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    db = Database(parse_database_url(f"sqlite:///{tmp_path / 'wal.sqlite'}"))
    with db.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    db.dispose()
