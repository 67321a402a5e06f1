"""Every difference between SQLite and PostgreSQL, in one small object per backend.

``Database`` picks the dialect once, from the URL, and exposes it as ``Database.dialect``. The
stores never ask which backend they run on: they use a named capability (``notifies``,
``serializes_writers``, ``batches_with_arrays``, ``writes_in_one_statement``) or call a method
that each dialect implements its own way:

* connections: creating the engine, beginning a transaction, the SQLite single-writer lock,
  discarding connections after a lost connection or a disk fault, translating driver errors;
* statements: the raw-driver fast path and its parameter style, upserts, array batches,
  LISTEN/NOTIFY announcements;
* schema: the PostgreSQL schema, the migration lock, the enqueue-announcing trigger.

Row locks (``FOR UPDATE [SKIP LOCKED]``) need no dialect method: SQLAlchemy's SQLite compiler
leaves them out, and SQLite needs none (its writers are serialized).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, ClassVar

from sqlalchemy import Connection, Engine, Table, TextClause
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from engine.error import (
    DBOSStorageError,
    DBOSStorageUnavailableError,
)

#: An INSERT that can also say what to do on a conflict (``on_conflict_do_nothing/update``).
UpsertInsert = sqlite.Insert | postgresql.Insert


class Dialect(ABC):
    """What one backend does its own way; one instance per ``Database``."""

    #: Other processes' writes are announced through LISTEN/NOTIFY, so a waiter can be woken
    #: instead of only polling (PostgreSQL). Polling stays the backstop either way.
    notifies: ClassVar[bool]
    #: Writers take turns, one at a time (SQLite): a write that finds nothing to do still holds
    #: every other writer up, so a failed write-try costs more than a read; look with a read first.
    serializes_writers: ClassVar[bool]
    #: A batch is one statement over array parameters (``array_rows``); otherwise the one-row
    #: statement is executed once per row.
    batches_with_arrays: ClassVar[bool]
    #: Several writes can be one statement (data-modifying CTEs): one round trip, one commit.
    writes_in_one_statement: ClassVar[bool]
    #: A read that succeeds proves the database is back after an outage. Not on SQLite, where a
    #: full or read-only disk still serves reads.
    reads_end_outages: ClassVar[bool]
    #: Databases live on a server and a missing one must be created (SQLite creates its file on
    #: first connection).
    creates_databases: ClassVar[bool]

    def __init__(self, url: URL, write_turn: AbstractContextManager[Any]) -> None:
        self.url = url
        self.masked_url = url.render_as_string(hide_password=True)
        #: Held around every write transaction of this process.
        self.write_turn = write_turn

    # -- connections ------------------------------------------------------------------------------

    @abstractmethod
    def system_schema(self, configured: str | None) -> str | None:
        """The schema the tables live in (None: the database has no schemas)."""

    @abstractmethod
    def create_engine(self, pool_size: int, kwargs: dict[str, Any]) -> Engine:
        """A new SQLAlchemy engine with this backend's pool settings and connection hooks."""

    @abstractmethod
    def adopt_engine(self, engine: Engine) -> None:
        """Prepare an engine the caller created (``Database(engine=...)``)."""

    @abstractmethod
    def begin_write(self, conn: Connection) -> None:
        """Start a write transaction on a fresh connection (the write turn is held)."""

    @abstractmethod
    def begin_read(self, conn: Connection) -> None:
        """Start a read-only transaction on a fresh connection."""

    @abstractmethod
    def begin_autocommit(self, conn: Connection) -> None:
        """Make each statement on ``conn`` commit by itself (undone by ``end_autocommit``)."""

    @abstractmethod
    def end_autocommit(self, conn: Connection) -> None:
        """Undo ``begin_autocommit`` before the pool gets ``conn`` back."""

    @abstractmethod
    def after_failure(
        self, conn: Connection, exc: DBAPIError | DBOSStorageUnavailableError
    ) -> None:
        """A statement on ``conn`` failed: drop connections that cannot be trusted any more."""

    @abstractmethod
    def discard_connections(self, conn: Connection, exc: BaseException) -> None:
        """Never reuse ``conn`` nor any pooled connection opened before now (``conn`` was lost,
        or its file faulted); new ones are opened on demand."""

    @abstractmethod
    def translate(self, exc: DBAPIError) -> DBOSStorageError:
        """The engine's error for a driver error raised through SQLAlchemy."""

    # -- statements -------------------------------------------------------------------------------

    @abstractmethod
    def driver_sql(self, statement: str) -> str:
        """``statement``, written with ``:name`` parameters, in the driver's parameter style."""

    def first_row_on_driver(
        self, conn: Connection, statement: str, params: Mapping[str, Any]
    ) -> Any:
        """The first row of ``statement`` (in ``driver_sql`` style) run on the driver's
        connection, or None (see ``_on_driver``)."""
        return self._on_driver(conn, statement, params, True)

    def rowcount_on_driver(
        self, conn: Connection, statement: str, params: Mapping[str, Any]
    ) -> int:
        """How many rows ``statement`` (in ``driver_sql`` style) changed, run on the driver's
        connection (see ``_on_driver``)."""
        return int(self._on_driver(conn, statement, params, False))

    def _on_driver(
        self, conn: Connection, statement: str, params: Mapping[str, Any], first_row: bool
    ) -> Any:
        """Run ``statement`` on the driver's connection; its first row, or its row count.

        SQLAlchemy's execution machinery costs about 50 us of CPU per statement, a third of a
        whole hot-path call. Errors come out as from SQLAlchemy, fetching included (sqlite3
        runs the rest of a statement as its rows are fetched): wrapped in its exceptions, and a
        lost connection discards the connections of its generation, so the next call
        reconnects instead of finding the next dead one.
        """
        driver = conn.connection.driver_connection
        try:
            cursor = driver.execute(statement, params)  # type: ignore[union-attr]
            return cursor.fetchone() if first_row else cursor.rowcount
        except conn.dialect.loaded_dbapi.Error as exc:
            lost = conn.dialect.is_disconnect(exc, driver, None)
            if lost:
                self.discard_connections(conn, exc)
            raise DBAPIError.instance(
                statement,
                dict(params),
                exc,
                conn.dialect.loaded_dbapi.Error,
                connection_invalidated=lost,
            ) from exc

    @abstractmethod
    def first_row(
        self, conn: Connection, stmt: TextClause, params: Mapping[str, Any]
    ) -> tuple[Any, ...] | None:
        """The first row of a hand-written statement (``:name`` parameters), or None."""

    @abstractmethod
    def rowcount(self, conn: Connection, stmt: TextClause, params: Mapping[str, Any]) -> int:
        """How many rows a hand-written statement (``:name`` parameters) changed."""

    @abstractmethod
    def insert(self, table: Table) -> UpsertInsert:
        """An INSERT into ``table`` that supports ``on_conflict_do_nothing/update``."""

    @abstractmethod
    def array_rows(self, alias: str, arrays: Sequence[tuple[str, str, str]]) -> str:
        """A FROM source of rows made of array parameters: ``(parameter, SQL type, column)``
        each. Only where ``batches_with_arrays``."""

    @abstractmethod
    def announcing(self, write: str, channel: str) -> str:
        """``write`` (which returns a row per row written), made to announce ``:wake_key`` on
        ``channel`` when it commits and wrote something."""

    @abstractmethod
    def announce(self, conn: Connection, channel: str, key: str) -> None:
        """Announce ``key`` on ``channel`` when ``conn``'s transaction commits."""

    @abstractmethod
    def lock_key(self, conn: Connection, key: str) -> None:
        """Serialize the transactions that lock ``key`` until ``conn``'s transaction ends."""

    # -- schema -----------------------------------------------------------------------------------

    @abstractmethod
    def prepare_migration(self, conn: Connection, schema: str | None) -> None:
        """Make concurrent migrations take turns, and create the schema if it is missing."""

    @abstractmethod
    def announce_enqueues(self, conn: Connection, schema: str | None, what: Announcer) -> None:
        """Install a trigger that announces every row becoming ENQUEUED (see ``Announcer``)."""

    @abstractmethod
    def drop_enqueue_announcer(self, conn: Connection, schema: str | None) -> None:
        """Remove what ``announce_enqueues`` installed."""


@dataclass(frozen=True)
class Announcer:
    """What the enqueue trigger announces: ``payload`` on ``channel``, for every row becoming
    ENQUEUED on a queue other than ``held_queue`` and those starting with ``held_prefix`` (rows
    parked there wait for the scheduler, not a queue worker)."""

    channel: str
    payload: str
    held_queue: str
    held_prefix: str


def first_line(exc: BaseException | None) -> str:
    """The first line of an error's message (drivers append context lines), or its repr."""
    return str(exc).strip().splitlines()[0] if exc is not None and str(exc).strip() else repr(exc)
