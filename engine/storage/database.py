"""Connections to SQLite and PostgreSQL behind one small interface.

Every difference between the two backends (transactions, the SQLite single-writer lock, error
translation, discarding broken connections) lives in the ``Database``'s dialect
(engine/storage/dialect.py); this module holds what both share.

Outages (PostgreSQL unreachable, a SQLite disk full, failing or read-only) are translated into
``OUTAGE_ERRORS``, logged once each, and ridden out by ``Database.retrying``: for as long as it
takes inside ``waiting_out_outages`` blocks (workflows, waits, the runtime's loops), for
``OUTSIDE_RETRY_SECONDS`` elsewhere. See docs/durability.md.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

from engine.error import (
    DBOSConfigError,
    DBOSConnectionLostError,
    DBOSStorageError,
    DBOSStorageUnavailableError,
)
from engine.storage.dialect import Dialect
from engine.storage.postgres_dialect import PostgresDialect
from engine.storage.schema import SCHEMA_PLACEHOLDER
from engine.storage.sqlite_dialect import SQLITE_BUSY_TIMEOUT_MS, SqliteDialect, sqlite_error

__all__ = [
    "OUTAGE_ERRORS",
    "OUTSIDE_RETRY_SECONDS",
    "PING_AFTER_IDLE_SECONDS",
    "SQLITE_BUSY_TIMEOUT_MS",
    "Database",
    "DatabaseUrl",
    "is_outage",
    "parse_database_url",
    "waiting_out_outages",
]

logger = logging.getLogger("keeptime.engine")
T = TypeVar("T")

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


def dialect_for(db_url: DatabaseUrl) -> Dialect:
    """The dialect of a validated URL's backend."""
    if db_url.is_sqlite:
        return SqliteDialect(db_url.url)
    # Read at each checkout: PING_AFTER_IDLE_SECONDS may change while the engine runs.
    return PostgresDialect(db_url.url, lambda: PING_AFTER_IDLE_SECONDS)


# What a failed statement may raise that can mean the connection should not be reused.
_FAILURES = (DBAPIError, DBOSStorageUnavailableError)


class Database:
    """A SQLAlchemy engine plus the write discipline of its backend (``dialect``)."""

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
        #: Every SQLite/PostgreSQL difference; chosen once, here.
        self.dialect = dialect_for(db_url)
        self.schema = self.dialect.system_schema(schema)
        if engine is None:
            engine = self.dialect.create_engine(pool_size, dict(engine_kwargs or {}))
        else:
            self.dialect.adopt_engine(engine)
        self.engine = engine.execution_options(
            schema_translate_map={SCHEMA_PLACEHOLDER: self.schema}
        )
        self._outage = _OutageLog(db_url.masked)

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction, committed on normal exit."""
        dialect = self.dialect
        with dialect.write_turn, self._translate_errors(), self.engine.connect() as conn:
            try:
                dialect.begin_write(conn)
                yield conn
                conn.commit()
            except _FAILURES as exc:
                dialect.after_failure(conn, exc)
                raise

    @contextlib.contextmanager
    def autocommit(self) -> Iterator[Connection]:
        """A connection on which each statement commits by itself.

        For writes that are a single statement: on PostgreSQL it saves the BEGIN and COMMIT
        round trips of ``write()``, a third of a step's time there.
        """
        dialect = self.dialect
        with dialect.write_turn, self._translate_errors(), self.engine.connect() as conn:
            dialect.begin_autocommit(conn)
            try:
                yield conn
            except _FAILURES as exc:
                dialect.after_failure(conn, exc)
                raise
            finally:
                dialect.end_autocommit(conn)

    @contextlib.contextmanager
    def exclusive_writes(self) -> Iterator[None]:
        """Keep this process's other writers out across several write transactions (SQLite).

        For a burst that commits in chunks (a thousand ticks of one second): without it, the
        completions of the first chunk's runs take the writer in between, and the last chunk
        starts late. Other processes still write between the chunks. No-op on PostgreSQL.
        """
        with self.dialect.write_turn:
            yield

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction (deferred on SQLite, so it never blocks the writer)."""
        dialect = self.dialect
        with self._translate_errors(reading=True), self.engine.connect() as conn:
            dialect.begin_read(conn)
            try:
                yield conn
            except _FAILURES as exc:
                dialect.after_failure(conn, exc)
                raise
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
            if self.dialect.reads_end_outages or not reading:
                self._outage.over()

    def translate(self, exc: DBAPIError) -> DBOSStorageError:
        """The engine's error for a driver error raised through SQLAlchemy."""
        return self.dialect.translate(exc)

    def translate_sqlite(self, exc: BaseException | None) -> DBOSStorageError:
        """The engine's error for a sqlite3 error: a disk fault is DBOSStorageUnavailableError,
        and its message names the file, the cause and the fix."""
        return sqlite_error(self.db_url.url, exc)

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
