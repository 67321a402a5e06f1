"""Connections to SQLite and PostgreSQL behind one small interface.

SQLite runs in WAL mode with synchronous=FULL (as durable as a rollback journal with FULL, and far
faster). Writes take ``BEGIN IMMEDIATE`` so two writers never deadlock on lock upgrades, and an
in-process lock keeps this process's writers from spinning in SQLite's busy handler. Reads use a
deferred ``BEGIN`` and never block the writer.

Outages (PostgreSQL unreachable, a SQLite disk full, failing or read-only) are translated into
``OUTAGE_ERRORS``, logged once each, and ridden out by ``Database.retrying``: for as long as it
takes inside ``waiting_out_outages`` blocks (workflows, waits, the runtime's loops), for
``OUTSIDE_RETRY_SECONDS`` elsewhere. See docs/durability.md.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, DisconnectionError, SQLAlchemyError

from engine.error import (
    DBOSConfigError,
    DBOSConnectionLostError,
    DBOSStorageError,
    DBOSStorageUnavailableError,
)
from engine.storage.schema import SCHEMA_PLACEHOLDER

logger = logging.getLogger("keeptime.engine")
T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_MS = 30_000
#: The errors that mean "unavailable for now" (a server down or restarting, a dropped
#: connection, a full disk, an I/O error, a read-only file): work pauses and retries.
OUTAGE_ERRORS: tuple[type[DBOSStorageError], ...] = (
    DBOSConnectionLostError,
    DBOSStorageUnavailableError,
)
#: How long a retried call from outside any workflow (``DBOS.start_workflow``,
#: ``DBOS.list_workflows``, ``DBOSClient``, ``Queue.enqueue`` from plain code) keeps retrying an
#: unavailable database before it raises. Work inside workflows and waits are not bounded by it.
OUTSIDE_RETRY_SECONDS = 30.0
# A pooled PostgreSQL connection idle this long is pinged before use.
PING_AFTER_IDLE_SECONDS = 10.0
_SUPPORTED = "sqlite:///path/to/file.sqlite or postgresql://user:password@host:5432/dbname"


@dataclass(frozen=True)
class DatabaseUrl:
    url: URL
    is_sqlite: bool

    @property
    def masked(self) -> str:
        return self.url.render_as_string(hide_password=True)


def parse_database_url(raw: str, what: str = "system_database_url") -> DatabaseUrl:
    """Validate a database URL and pick the psycopg 3 driver for PostgreSQL."""
    try:
        url = make_url(raw)
    except ArgumentError as exc:
        raise DBOSConfigError(f"{what} {raw!r} is not a database URL (use {_SUPPORTED})") from exc
    backend, _, driver = url.drivername.partition("+")
    if backend == "sqlite" and driver in ("", "pysqlite"):
        if url.database in (None, "", ":memory:"):
            raise DBOSConfigError(
                f"{what} {url.render_as_string(hide_password=True)!r} has no file path; "
                "an in-memory database cannot be durable (use sqlite:///path/to/file.sqlite)"
            )
        return DatabaseUrl(url.set(drivername="sqlite"), True)
    if backend in ("postgresql", "postgres") and driver in ("", "psycopg"):
        return DatabaseUrl(url.set(drivername="postgresql+psycopg"), False)
    raise DBOSConfigError(
        f"{what} has unsupported scheme {url.drivername!r} in "
        f"{url.render_as_string(hide_password=True)!r} (use {_SUPPORTED})"
    )


class Database:
    """A SQLAlchemy engine plus the write discipline for its backend."""

    def __init__(
        self,
        db_url: DatabaseUrl,
        *,
        schema: str | None = "dbos",
        pool_size: int = 20,
        engine_kwargs: Mapping[str, Any] | None = None,
        engine: Engine | None = None,
    ) -> None:
        self.db_url = db_url
        self.is_sqlite = db_url.is_sqlite
        self.schema = None if self.is_sqlite else _check_schema_name(schema or "dbos")
        # Reentrant: a burst holds it across several write transactions (``exclusive_writes``).
        self._write_lock = threading.RLock() if self.is_sqlite else None
        self.engine = engine or self._create_engine(pool_size, dict(engine_kwargs or {}))
        self.engine = self.engine.execution_options(
            schema_translate_map={SCHEMA_PLACEHOLDER: self.schema}
        )
        self._outage = _OutageLog(db_url.masked)

    def _create_engine(self, pool_size: int, kwargs: dict[str, Any]) -> Engine:
        if self.is_sqlite:
            kwargs.setdefault("pool_size", pool_size)
            kwargs.setdefault("max_overflow", pool_size)
            kwargs.setdefault(
                "connect_args",
                {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            )
            engine = create_engine(self.db_url.url, **kwargs)
            _install_sqlite_hooks(engine)
            return engine
        kwargs.setdefault("pool_size", pool_size)
        kwargs.setdefault("max_overflow", 0)
        kwargs.setdefault("pool_timeout", 30)
        # The most recently used connection is the warmest (its server process is scheduled and
        # its caches hot): about 50 us less per round trip than rotating through the pool.
        kwargs.setdefault("pool_use_lifo", True)
        engine = create_engine(self.db_url.url, **kwargs)
        if not kwargs.get("pool_pre_ping"):
            _ping_idle_connections(engine)
        return engine

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction, committed on normal exit."""
        if not self.is_sqlite:
            with self._translate_errors(), self.engine.begin() as conn:
                yield conn
            return
        with (
            self._sqlite_writer(),
            self._translate_errors(),
            self.engine.connect() as conn,
            _discarded_after_fault(conn),
        ):
            # Issued here rather than from a "begin" event: any connection event makes
            # SQLAlchemy dispatch events around every statement, a third of a step's CPU.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            yield conn
            conn.commit()

    @contextlib.contextmanager
    def autocommit(self) -> Iterator[Connection]:
        """A connection on which each statement commits by itself.

        For writes that are a single statement: on PostgreSQL it saves the BEGIN and COMMIT
        round trips of ``write()``, a third of a step's time there.
        """
        if self.is_sqlite:
            # The sqlite3 module runs with isolation_level=None: autocommit already.
            with (
                self._sqlite_writer(),
                self._translate_errors(),
                self.engine.connect() as conn,
                _discarded_after_fault(conn),
            ):
                yield conn
            return
        with self._translate_errors(), self.engine.connect() as conn:
            driver = conn.connection.driver_connection
            driver.autocommit = True  # type: ignore[union-attr]
            try:
                yield conn
            finally:
                if not conn.invalidated:
                    driver.autocommit = False  # type: ignore[union-attr]

    @contextlib.contextmanager
    def _sqlite_writer(self) -> Iterator[None]:
        """This process's SQLite writers take turns, instead of spinning in the busy handler."""
        lock = self._write_lock
        if lock is None:
            yield
            return
        with lock:
            yield

    @contextlib.contextmanager
    def exclusive_writes(self) -> Iterator[None]:
        """Keep this process's other writers out across several write transactions (SQLite).

        For a burst that commits in chunks (a thousand ticks of one second): without it, the
        completions of the first chunk's runs take the writer in between, and the last chunk
        starts late. Other processes still write between the chunks. No-op on PostgreSQL.
        """
        with self._sqlite_writer():
            yield

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction (deferred on SQLite, so it never blocks the writer)."""
        with self._translate_errors(reading=True), self.engine.connect() as conn:
            if self.is_sqlite:
                conn.exec_driver_sql("BEGIN")
                with _discarded_after_fault(conn):
                    yield conn
            else:
                yield conn
            conn.rollback()

    @contextlib.contextmanager
    def _translate_errors(self, reading: bool = False) -> Iterator[None]:
        """Driver errors become DBOSStorageError (or an outage error); outages are logged.

        Any call that succeeds ends a PostgreSQL outage; a SQLite disk fault takes a write
        (reads keep working on a full or read-only disk).
        """
        try:
            yield
        except DBAPIError as exc:
            translated = self.translate(exc)
            if isinstance(translated, OUTAGE_ERRORS):
                self._outage.noticed(translated)
            raise translated from exc
        except OUTAGE_ERRORS as exc:  # translated already, by a statement run on the driver
            self._outage.noticed(exc)
            raise
        except SQLAlchemyError as exc:
            raise DBOSStorageError(f"database error on {self.db_url.masked}: {exc}") from exc
        else:
            if not (reading and self.is_sqlite):
                self._outage.over()

    def translate(self, exc: DBAPIError) -> DBOSStorageError:
        """The engine's error for a driver error raised through SQLAlchemy."""
        if self.is_sqlite:
            return self.translate_sqlite(exc.orig)
        if exc.connection_invalidated or _is_connection_problem(exc.orig):
            return DBOSConnectionLostError(
                f"cannot reach the database {self.db_url.masked}: {_first_line(exc.orig)} "
                "(check that the server runs and the URL, user and password are right)"
            )
        return DBOSStorageError(f"database error on {self.db_url.masked}: {_first_line(exc.orig)}")

    def translate_sqlite(self, exc: BaseException | None) -> DBOSStorageError:
        """The engine's error for a sqlite3 error: a disk fault is DBOSStorageUnavailableError,
        and its message names the file, the cause and the fix."""
        fault = _sqlite_fault(exc)
        if fault is None:
            return DBOSStorageError(f"database error on {self.db_url.masked}: {_first_line(exc)}")
        cause, fix = fault
        return DBOSStorageUnavailableError(
            f"{cause.format(path=self.db_url.url.database)} (SQLite says: {_first_line(exc)}); "
            f"{fix}"
        )

    def retrying(self, what: str, operation: Callable[[], T], pauses: Sequence[float]) -> T:
        """Run ``operation`` (which must be safe to repeat), repeating it while the database is
        unavailable; ``what`` names it in the error raised on giving up.

        Inside :func:`waiting_out_outages` it repeats until the database is back, the block's
        stop event is set, or its deadline passes; elsewhere for ``OUTSIDE_RETRY_SECONDS``.
        ``pauses`` are the waits between attempts (the last repeats; empty: no retry). A retried
        operation called by another one runs once: the outer one repeats the whole.
        """
        if _RETRYING.get():
            return operation()
        token = _RETRYING.set(True)
        try:
            return _retry(what, operation, pauses, _PATIENCE.get(), self._before_retry)
        finally:
            _RETRYING.reset(token)

    def _before_retry(self, exc: DBOSStorageError) -> None:
        """After a SQLite disk fault, close the idle connections: one opened while the file could
        not be written is read-only for good, and an attempt that took it after the fix would
        fail once more (a second pause of up to a second)."""
        if isinstance(exc, DBOSStorageUnavailableError):
            self.engine.dispose()

    def check_connection(self) -> None:
        with self.read() as conn:
            conn.execute(text("SELECT 1"))

    def last_outage_ended(self) -> float | None:
        """When (``time.monotonic()``) the last outage this process noticed ended; None if none."""
        return self._outage.ended_at

    def dispose(self) -> None:
        self.engine.dispose()


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


def _ping_idle_connections(engine: Engine) -> None:
    """Check a pooled connection before use only when it sat idle ``PING_AFTER_IDLE_SECONDS``.

    SQLAlchemy's ``pool_pre_ping`` costs a round trip on every checkout, on the hot path of
    every step. A connection in steady use is known to be alive; one that idled may have been
    dropped by the server or a proxy, and is pinged (and replaced if dead) before use.
    """

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["keeptime_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("keeptime_idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            with dbapi_conn.cursor() as cur:
                cur.execute("SELECT 1")
            dbapi_conn.rollback()
        except Exception as exc:
            # The pool discards this connection and retries the checkout with a new one.
            raise DisconnectionError(f"pooled connection is dead: {exc}") from exc


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


# SQLSTATEs of a server that is going away or not there yet (admin_shutdown, crash_shutdown,
# cannot_connect_now: starting up, shutting down, in recovery); class 08 is connection exceptions.
_SERVER_GOING_AWAY = ("57P01", "57P02", "57P03")


def _is_connection_problem(exc: BaseException | None) -> bool:
    """A PostgreSQL error that says the server is unreachable or dropped the connection.

    libpq reports a failed or broken connection with no SQLSTATE (the text is localized), so
    every OperationalError without one counts: the cost of a wrong guess is a retry.
    """
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in _SERVER_GOING_AWAY


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


def _sqlite_fault(exc: BaseException | None) -> tuple[str, str] | None:
    code = getattr(exc, "sqlite_errorcode", None)
    if not isinstance(code, int):
        return None
    return _SQLITE_FAULTS.get(code & 0xFF)


@contextlib.contextmanager
def _discarded_after_fault(conn: Connection) -> Iterator[None]:
    """Close, rather than pool, SQLite connections once one hit a disk fault.

    SQLite opens a file it may not write read-only, and such a connection stays read-only after
    the file becomes writable again. Any pooled connection may have been opened meanwhile, so
    all are replaced at their next checkout (as SQLAlchemy does after a lost connection), and
    the first attempt after the fault is fixed succeeds.
    """
    try:
        yield
    except (DBAPIError, DBOSStorageUnavailableError) as exc:
        orig = exc.orig if isinstance(exc, DBAPIError) else None
        if orig is None or _sqlite_fault(orig) is not None:
            with contextlib.suppress(Exception):
                conn.engine.pool._invalidate(conn.connection, exc)
                conn.invalidate(exc)
        raise


# -- riding out outages ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Patience:
    stop: threading.Event
    deadline: float | None  # time.monotonic()


_PATIENCE: contextvars.ContextVar[_Patience | None] = contextvars.ContextVar(
    "keeptime_outage_patience", default=None
)
_RETRYING: contextvars.ContextVar[bool] = contextvars.ContextVar("keeptime_retrying", default=False)


@contextlib.contextmanager
def waiting_out_outages(stop: threading.Event, deadline: float | None = None) -> Iterator[None]:
    """Retried storage calls in this block wait out a database outage of any length.

    They repeat until the database is back, until ``stop`` is set (a shutdown: the work stays
    PENDING for recovery), or until ``deadline`` (a ``time.monotonic()`` value: a timeout the
    caller chose) passes, and then raise the outage error. Work inside workflows, waits for
    results, and the runtime's own loops run in such blocks; other calls give up after
    ``OUTSIDE_RETRY_SECONDS``.
    """
    token = _PATIENCE.set(_Patience(stop, deadline))
    try:
        yield
    finally:
        _PATIENCE.reset(token)


def is_outage(exc: BaseException | None) -> bool:
    """True for an error that means the database is unavailable for now."""
    return isinstance(exc, OUTAGE_ERRORS)


def _retry(
    what: str,
    operation: Callable[[], T],
    pauses: Sequence[float],
    patience: _Patience | None,
    before_retry: Callable[[DBOSStorageError], None],
) -> T:
    if patience is None:
        give_up_at: float | None = time.monotonic() + OUTSIDE_RETRY_SECONDS
    else:
        give_up_at = patience.deadline
    attempt = 0
    while True:
        try:
            return operation()
        except OUTAGE_ERRORS as exc:
            pause = _next_pause(pauses, attempt, give_up_at)
            if pause is None:
                raise _gave_up(exc, what, patience) from exc
            if patience is None:
                time.sleep(pause)
            elif patience.stop.wait(pause):
                raise
            before_retry(exc)
            attempt += 1


def _next_pause(pauses: Sequence[float], attempt: int, give_up_at: float | None) -> float | None:
    """The wait before the next attempt, or None when it is time to give up."""
    if not pauses:
        return None
    pause = pauses[min(attempt, len(pauses) - 1)]
    if give_up_at is None:
        return pause
    left = give_up_at - time.monotonic()
    return None if left <= 0 else min(pause, left)


def _gave_up(exc: DBOSStorageError, what: str, patience: _Patience | None) -> DBOSStorageError:
    if patience is not None:
        return exc  # the caller's own deadline passed: it reports that in its own terms
    return type(exc)(
        f"{exc.message}. Gave up on {what} after retrying for {OUTSIDE_RETRY_SECONDS:g} s; call "
        "again once that is fixed (workflows already running are paused, not failed, and "
        "continue when the database is back)"
    )


class _OutageLog:
    """One warning when the database becomes unavailable and one info line when it is back,
    however many calls fail and retry in between."""

    def __init__(self, masked_url: str) -> None:
        self._masked_url = masked_url
        self._lock = threading.Lock()
        self._since: float | None = None
        self.ended_at: float | None = None

    def noticed(self, exc: DBOSStorageError) -> None:
        with self._lock:
            if self._since is not None:
                return
            self._since = time.monotonic()
        logger.warning(
            "database unavailable: %s. Workflows pause and continue when it is back; calls "
            "from outside workflows raise after %g s of retrying",
            exc.message,
            OUTSIDE_RETRY_SECONDS,
        )

    def over(self) -> None:
        if self._since is None:  # the common case, on every transaction: no lock
            return
        with self._lock:
            since, self._since = self._since, None
        if since is not None:
            self.ended_at = time.monotonic()
            logger.info(
                "database %s is back after %.1f s; paused work continues",
                self._masked_url,
                time.monotonic() - since,
            )


def _first_line(exc: BaseException | None) -> str:
    return str(exc).strip().splitlines()[0] if exc is not None and str(exc).strip() else repr(exc)


def _check_schema_name(name: str) -> str:
    import re

    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", name):
        raise DBOSConfigError(
            f"dbos_system_schema {name!r} is not a plain identifier "
            "(use letters, digits and underscores, starting with a letter)"
        )
    return name
