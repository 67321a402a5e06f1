"""PostgreSQL through psycopg 3 (see ``PostgresDialect``)."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, Table, TextClause, create_engine, event, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, DisconnectionError

from engine.error import (
    DBOSConfigError,
    DBOSConnectionLostError,
    DBOSStorageError,
    DBOSStorageUnavailableError,
)
from engine.storage.dialect import Announcer, Dialect, first_line


class PostgresDialect(Dialect):
    """PostgreSQL through psycopg 3: schemas, LISTEN/NOTIFY, advisory locks, array batches.

    ``ping_after_idle`` gives the seconds after which an idle pooled connection is pinged
    before use; it is read at each checkout, so it can be changed while the engine runs.
    """

    notifies = True
    serializes_writers = False
    batches_with_arrays = True
    writes_in_one_statement = True
    reads_end_outages = True
    creates_databases = True

    def __init__(self, url: URL, ping_after_idle: Callable[[], float]) -> None:
        # Writers of this process need not take turns: row locks order them.
        super().__init__(url, contextlib.nullcontext())
        self._ping_after_idle = ping_after_idle
        # Connections opened before this time.monotonic() are replaced at their next checkout.
        self._lost_at = 0.0

    def system_schema(self, configured: str | None) -> str:
        name = configured or "dbos"
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", name):
            raise DBOSConfigError(
                f"dbos_system_schema {name!r} is not a plain identifier "
                "(use letters, digits and underscores, starting with a letter)"
            )
        return name

    def create_engine(self, pool_size: int, kwargs: dict[str, Any]) -> Engine:
        kwargs.setdefault("pool_size", pool_size)
        kwargs.setdefault("max_overflow", 0)
        kwargs.setdefault("pool_timeout", 30)
        # The most recently used connection is the warmest (its server process is scheduled and
        # its caches hot): about 50 us less per round trip than rotating through the pool.
        kwargs.setdefault("pool_use_lifo", True)
        engine = create_engine(self.url, **kwargs)
        self._check_at_checkout(engine, ping=not kwargs.get("pool_pre_ping"))
        return engine

    def adopt_engine(self, engine: Engine) -> None:
        self._check_at_checkout(engine, ping=False)

    def _check_at_checkout(self, engine: Engine, *, ping: bool) -> None:
        """Replace, at checkout, a pooled connection opened before a connection was lost
        (``discard_connections``) and, with ``ping``, check one that sat idle first.

        SQLAlchemy's ``pool_pre_ping`` costs a round trip on every checkout, on the hot path of
        every step. A connection in steady use is known to be alive; one that idled may have
        been dropped by the server or a proxy, and is pinged (and replaced if dead) before use.
        A connection the pool must replace is refused with DisconnectionError: the pool then
        opens a new one in its place.
        """

        @event.listens_for(engine, "connect")
        def _on_connect(_dbapi_conn: Any, record: Any) -> None:
            record.info["keeptime_opened_at"] = time.monotonic()

        @event.listens_for(engine, "checkout")
        def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
            info = record.info
            if info.get("keeptime_opened_at", 0.0) < self._lost_at:
                raise DisconnectionError("pooled connection predates a lost connection")
            if not ping:
                return
            idle_since = info.get("keeptime_idle_since")
            if idle_since is None or time.monotonic() - idle_since < self._ping_after_idle():
                return
            try:
                with dbapi_conn.cursor() as cur:
                    cur.execute("SELECT 1")
                dbapi_conn.rollback()
            except Exception as exc:
                raise DisconnectionError(f"pooled connection is dead: {exc}") from exc

        if ping:

            @event.listens_for(engine, "checkin")
            def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
                record.info["keeptime_idle_since"] = time.monotonic()

    def begin_write(self, conn: Connection) -> None:
        # No SQL: psycopg sends BEGIN with the first statement. SQLAlchemy must know, though, or
        # its commit() would not commit statements run on the driver (first_row_on_driver).
        conn.begin()

    def begin_read(self, conn: Connection) -> None:
        pass  # psycopg begins the transaction with the first statement

    def begin_autocommit(self, conn: Connection) -> None:
        # Set on the driver's connection: no round trip, and no BEGIN and COMMIT round trips
        # for the statement (a third of a step's time).
        conn.connection.driver_connection.autocommit = True  # type: ignore[union-attr]

    def end_autocommit(self, conn: Connection) -> None:
        if not conn.invalidated:
            conn.connection.driver_connection.autocommit = False  # type: ignore[union-attr]

    def after_failure(
        self, conn: Connection, exc: DBAPIError | DBOSStorageUnavailableError
    ) -> None:
        pass  # SQLAlchemy (or _on_driver) discards lost connections already

    def discard_connections(self, conn: Connection, exc: BaseException) -> None:
        # As SQLAlchemy does when it sees a connection lost: the server likely dropped every
        # connection of this generation (a restart), so each is replaced at its next checkout.
        self._lost_at = time.monotonic()
        with contextlib.suppress(Exception):
            conn.invalidate(exc)

    def translate(self, exc: DBAPIError) -> DBOSStorageError:
        if exc.connection_invalidated or is_connection_problem(exc.orig):
            return DBOSConnectionLostError(
                f"cannot reach the database {self.masked_url}: {first_line(exc.orig)} "
                "(check that the server runs and the URL, user and password are right)"
            )
        return DBOSStorageError(f"database error on {self.masked_url}: {first_line(exc.orig)}")

    def driver_sql(self, statement: str) -> str:
        return re.sub(r":([a-z_]+)", r"%(\1)s", statement)

    def first_row(
        self, conn: Connection, stmt: TextClause, params: Mapping[str, Any]
    ) -> tuple[Any, ...] | None:
        row = conn.execute(stmt, dict(params)).first()
        return None if row is None else tuple(row)

    def rowcount(self, conn: Connection, stmt: TextClause, params: Mapping[str, Any]) -> int:
        return int(conn.execute(stmt, dict(params)).rowcount)

    def insert(self, table: Table) -> postgresql.Insert:
        return postgresql.insert(table)

    def array_rows(self, alias: str, arrays: Sequence[tuple[str, str, str]]) -> str:
        """One array parameter per column (unnest), so the server parses a short statement, not
        a VALUES list of thousands of parameters."""
        casts = ", ".join(f"CAST(:{param} AS {sql_type}[])" for param, sql_type, _ in arrays)
        columns = ", ".join(column for _, _, column in arrays)
        return f"unnest({casts}) AS {alias}({columns})"

    def announcing(self, write: str, channel: str) -> str:
        # A CTE carries the notification in the write's own statement: one round trip, not two.
        # It is delivered only if the write commits.
        return f"WITH written AS ({write}) SELECT pg_notify('{channel}', :wake_key) FROM written"

    def announce(self, conn: Connection, channel: str, key: str) -> None:
        conn.execute(text("SELECT pg_notify(:channel, :key)"), {"channel": channel, "key": key})

    def lock_key(self, conn: Connection, key: str) -> None:
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key})

    def prepare_migration(self, conn: Connection, schema: str | None) -> None:
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
        conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))

    def announce_enqueues(self, conn: Connection, schema: str | None, what: Announcer) -> None:
        """A trigger covers every way work gets enqueued (the app, DBOSClient in another process,
        resume, fork, a debounce window closing), so no writer can forget the wake-up;
        PostgreSQL folds identical notifications of one transaction into one."""
        conn.execute(
            text(
                f'CREATE OR REPLACE FUNCTION "{schema}".{_NOTIFY_FUNCTION}() RETURNS trigger '
                "LANGUAGE plpgsql AS $$ BEGIN "
                f"PERFORM pg_notify('{what.channel}', '{what.payload}'); RETURN NULL; END $$"
            )
        )
        conn.execute(
            text(f'DROP TRIGGER IF EXISTS keeptime_enqueued ON "{schema}"."workflow_status"')
        )
        # Waking every worker for each held row would be pure cost.
        conn.execute(
            text(
                'CREATE TRIGGER keeptime_enqueued AFTER INSERT OR UPDATE OF "status", "queue_name" '
                f'ON "{schema}"."workflow_status" FOR EACH ROW '
                """WHEN (NEW."status" = 'ENQUEUED' """
                f"AND NEW.\"queue_name\" <> '{what.held_queue}' "
                f"AND NEW.\"queue_name\" NOT LIKE '{_like_prefix(what.held_prefix)}%') "
                f'EXECUTE FUNCTION "{schema}".{_NOTIFY_FUNCTION}()'
            )
        )

    def drop_enqueue_announcer(self, conn: Connection, schema: str | None) -> None:
        conn.execute(text(f'DROP FUNCTION IF EXISTS "{schema}".{_NOTIFY_FUNCTION}()'))


_NOTIFY_FUNCTION = "keeptime_notify_enqueued"
_MIGRATION_LOCK_KEY = 0x6B65_6570_7469_6D65 & 0x7FFF_FFFF_FFFF_FFFF  # "keeptime"


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%")


# SQLSTATEs of a server that is going away or not there yet (admin_shutdown, crash_shutdown,
# cannot_connect_now: starting up, shutting down, in recovery); class 08 is connection exceptions.
_SERVER_GOING_AWAY = ("57P01", "57P02", "57P03")


def is_connection_problem(exc: BaseException | None) -> bool:
    """A PostgreSQL error that says the server is unreachable or dropped the connection.

    libpq reports a failed or broken connection with no SQLSTATE (the text is localized), so
    every OperationalError without one counts: the cost of a wrong guess is a retry.
    """
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in _SERVER_GOING_AWAY
