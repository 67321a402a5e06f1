"""Connections to SQLite and PostgreSQL behind one small interface.

SQLite runs in WAL mode with synchronous=FULL (as durable as a rollback journal with FULL, and far
faster). Writes take ``BEGIN IMMEDIATE`` so two writers never deadlock on lock upgrades, and an
in-process lock keeps this process's writers from spinning in SQLite's busy handler. Reads use a
deferred ``BEGIN`` and never block the writer.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, DisconnectionError, SQLAlchemyError

from engine.error import DBOSConfigError, DBOSConnectionLostError, DBOSStorageError
from engine.storage.schema import SCHEMA_PLACEHOLDER

SQLITE_BUSY_TIMEOUT_MS = 30_000
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
        with self._sqlite_writer(), self._translate_errors(), self.engine.connect() as conn:
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
            with self._sqlite_writer(), self._translate_errors(), self.engine.connect() as conn:
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
        with self._translate_errors(), self.engine.connect() as conn:
            if self.is_sqlite:
                conn.exec_driver_sql("BEGIN")
            yield conn
            conn.rollback()

    @contextlib.contextmanager
    def _translate_errors(self) -> Iterator[None]:
        try:
            yield
        except DBAPIError as exc:
            if exc.connection_invalidated or _is_connect_error(exc):
                raise DBOSConnectionLostError(
                    f"cannot reach the database {self.db_url.masked}: {_first_line(exc.orig)} "
                    "(check that the server runs and the URL, user and password are right)"
                ) from exc
            raise DBOSStorageError(
                f"database error on {self.db_url.masked}: {_first_line(exc.orig)}"
            ) from exc
        except SQLAlchemyError as exc:
            raise DBOSStorageError(f"database error on {self.db_url.masked}: {exc}") from exc

    def check_connection(self) -> None:
        with self.read() as conn:
            conn.execute(text("SELECT 1"))

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


def _is_connect_error(exc: DBAPIError) -> bool:
    name = type(exc.orig).__name__
    return name in ("OperationalError",) and "connect" in str(exc.orig).lower()


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
