"""SQLite: one file, WAL, one writer at a time, disk faults that pass (see ``SqliteDialect``)."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, Table, TextClause, create_engine, event
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from engine.error import DBOSStorageError, DBOSStorageUnavailableError
from engine.storage.dialect import Announcer, Dialect, first_line

SQLITE_BUSY_TIMEOUT_MS = 30_000


class SqliteDialect(Dialect):
    """SQLite in WAL mode with synchronous=FULL (as durable as a rollback journal with FULL,
    and far faster). Writes take ``BEGIN IMMEDIATE`` so two writers never deadlock on lock
    upgrades, and an in-process lock (``write_turn``) keeps this process's writers from spinning
    in SQLite's busy handler. Reads use a deferred ``BEGIN`` and never block the writer."""

    notifies = False
    serializes_writers = True
    batches_with_arrays = False
    writes_in_one_statement = False
    reads_end_outages = False
    creates_databases = False

    def __init__(self, url: URL) -> None:
        # Reentrant: a burst holds it across several write transactions (exclusive_writes).
        super().__init__(url, threading.RLock())

    def system_schema(self, configured: str | None) -> None:
        return None

    def create_engine(self, pool_size: int, kwargs: dict[str, Any]) -> Engine:
        kwargs.setdefault("pool_size", pool_size)
        kwargs.setdefault("max_overflow", pool_size)
        kwargs.setdefault(
            "connect_args",
            {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        )
        engine = create_engine(self.url, **kwargs)
        _install_sqlite_hooks(engine)
        return engine

    def adopt_engine(self, engine: Engine) -> None:
        pass  # the caller's engine is used as it is

    def begin_write(self, conn: Connection) -> None:
        # Issued here rather than from a "begin" event: any connection event makes SQLAlchemy
        # dispatch events around every statement, a third of a step's CPU.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    def begin_read(self, conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN")

    def begin_autocommit(self, conn: Connection) -> None:
        pass  # the sqlite3 module runs with isolation_level=None: autocommit already

    def end_autocommit(self, conn: Connection) -> None:
        pass

    def after_failure(
        self, conn: Connection, exc: DBAPIError | DBOSStorageUnavailableError
    ) -> None:
        """Close, rather than pool, SQLite connections once one hit a disk fault.

        SQLite opens a file it may not write read-only, and such a connection stays read-only
        after the file becomes writable again. Any pooled connection may have been opened
        meanwhile, so all are replaced, and the first attempt after the fault is fixed succeeds.
        """
        orig = exc.orig if isinstance(exc, DBAPIError) else None
        if orig is None or sqlite_fault(orig) is not None:
            self.discard_connections(conn, exc)

    def discard_connections(self, conn: Connection, exc: BaseException) -> None:
        with contextlib.suppress(Exception):
            conn.invalidate(exc)
            # A new pool: the idle connections are closed now, those in use are dropped when
            # they come back. SQLite connections are cheap to open again.
            conn.engine.dispose()

    def translate(self, exc: DBAPIError) -> DBOSStorageError:
        return sqlite_error(self.url, exc.orig)

    def first_row(
        self, conn: Connection, stmt: TextClause, params: Mapping[str, Any]
    ) -> tuple[Any, ...] | None:
        # The driver directly: SQLAlchemy's per-statement work (execution context, result
        # object) costs more than the statement. Same SQL text, same errors.
        row: tuple[Any, ...] | None = self.first_row_on_driver(conn, stmt.text, params)
        return row

    def rowcount(self, conn: Connection, stmt: TextClause, params: Mapping[str, Any]) -> int:
        return self.rowcount_on_driver(conn, stmt.text, params)

    def insert(self, table: Table) -> sqlite.Insert:
        return sqlite.insert(table)

    def driver_sql(self, statement: str) -> str:
        return statement  # sqlite3 takes ``:name`` parameters as they are

    def array_rows(self, alias: str, arrays: Sequence[tuple[str, str, str]]) -> str:
        raise NotImplementedError("SQLite has no array parameters (see batches_with_arrays)")

    def announcing(self, write: str, channel: str) -> str:
        return write  # nobody listens: other processes poll

    def announce(self, conn: Connection, channel: str, key: str) -> None:
        pass  # nobody listens: other processes poll

    def lock_key(self, conn: Connection, key: str) -> None:
        pass  # the write transaction holds the whole database already

    def prepare_migration(self, conn: Connection, schema: str | None) -> None:
        pass  # BEGIN IMMEDIATE serializes migrations; there are no schemas

    def announce_enqueues(self, conn: Connection, schema: str | None, what: Announcer) -> None:
        pass  # queue workers poll

    def drop_enqueue_announcer(self, conn: Connection, schema: str | None) -> None:
        pass


def _install_sqlite_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module so BEGIN IMMEDIATE is ours.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        _enable_wal(cur)
        cur.execute("PRAGMA synchronous=FULL")
        cur.close()


def _enable_wal(cur: Any) -> None:
    """Switch to WAL. The switch needs a moment alone with the file, and SQLite reports "locked"
    at once (without its busy handler) while another process is mid-transaction; retry."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


# Primary SQLite result codes of a disk that cannot take writes for now, with what to tell the
# operator. An extended code (SQLITE_IOERR_WRITE...) carries its primary one in the low byte.
_SQLITE_FAULTS: dict[int, tuple[str, str]] = {
    sqlite3.SQLITE_FULL: (
        "the disk holding the database file {path!r} is full",
        "free space on that filesystem; paused workflows continue by themselves",
    ),
    sqlite3.SQLITE_IOERR: (
        "the database file {path!r} (or its -wal or -shm file) could not be read or written",
        "check that the files are writable (ls -l, lsattr: no immutable flag), that their "
        "filesystem is mounted read-write (findmnt) and that the disk works (dmesg); paused "
        "workflows continue once it is fixed",
    ),
    sqlite3.SQLITE_READONLY: (
        "the database file {path!r} cannot be written",
        "make the file, its -wal and -shm files and their directory writable by this process's "
        "user, on a filesystem mounted read-write; paused workflows continue by themselves",
    ),
}


def sqlite_fault(exc: BaseException | None) -> tuple[str, str] | None:
    """(cause, fix) when a sqlite3 error says the disk cannot take writes for now."""
    code = getattr(exc, "sqlite_errorcode", None)
    if not isinstance(code, int):
        return None
    return _SQLITE_FAULTS.get(code & 0xFF)


def sqlite_error(url: URL, exc: BaseException | None) -> DBOSStorageError:
    """The engine's error for a sqlite3 error: a disk fault is DBOSStorageUnavailableError,
    and its message names the file, the cause and the fix."""
    fault = sqlite_fault(exc)
    if fault is None:
        masked = url.render_as_string(hide_password=True)
        return DBOSStorageError(f"database error on {masked}: {first_line(exc)}")
    cause, fix = fault
    return DBOSStorageUnavailableError(
        f"{cause.format(path=url.database)} (SQLite says: {first_line(exc)}); {fix}"
    )
