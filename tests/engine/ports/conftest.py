"""Each storage port built on a fresh, migrated system database of each backend.

The fixtures are annotated with the port types, so the tests can use nothing but the ports'
methods (``mypy tests/engine/ports`` holds them to it). Time comes from a :class:`FakeClock` that
every store of one database shares: deadlines, rate windows and heartbeats move only when a test
moves the clock.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from engine.storage.database import Database, parse_database_url
from engine.storage.debounce import DebounceStore
from engine.storage.executors import ExecutorStore
from engine.storage.messages import MessageStore
from engine.storage.migrations import migrate_system_database
from engine.storage.ports import (
    DebouncePort,
    ExecutorPort,
    MessagePort,
    QueuePort,
    SchedulePort,
    WorkflowPort,
)
from engine.storage.queues import QueueStore
from engine.storage.schedules import ScheduleStore
from engine.storage.store import SystemStore
from tests.engine.ports.support import FakeClock


@pytest.fixture()
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture()
def system_store(db_url: str, clock: FakeClock) -> Iterator[SystemStore]:
    """The workflow store on this test's database; the other stores are built on it."""
    db = Database(parse_database_url(db_url), pool_size=4)
    migrate_system_database(db)
    try:
        yield SystemStore(db, clock.now_ms)
    finally:
        db.dispose()


@pytest.fixture()
def workflows(system_store: SystemStore) -> WorkflowPort:
    return system_store


@pytest.fixture()
def queues(system_store: SystemStore) -> QueuePort:
    return QueueStore(system_store)


@pytest.fixture()
def messages(system_store: SystemStore) -> MessagePort:
    return MessageStore(system_store)


@pytest.fixture()
def schedules(system_store: SystemStore) -> SchedulePort:
    return ScheduleStore(system_store)


@pytest.fixture()
def debounces(system_store: SystemStore) -> DebouncePort:
    return DebounceStore(system_store)


@pytest.fixture()
def executors(system_store: SystemStore) -> ExecutorPort:
    return ExecutorStore(system_store)
