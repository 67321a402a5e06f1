"""@DBOS.transaction: a step that runs as one transaction on the application database.

Its checkpoint is written inside that same transaction (``transaction_outputs``), so a crash
between commit and the system-database record never runs the transaction twice.
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select

from engine.error import DBOSNotInWorkflowError
from engine.runtime.context import current_workflow
from engine.runtime.registry import RegisteredFunction
from engine.runtime.steps import Replayed, replay_or_check
from engine.storage.database import Database, is_outage, parse_database_url
from engine.storage.migrations import create_application_tables, drop_application_tables
from engine.storage.schema import transaction_outputs
from engine.storage.store import RECONNECT_DELAYS_SECONDS, StepRecord

if TYPE_CHECKING:
    from engine.runtime.executor import Runtime

_session: contextvars.ContextVar[Connection | None] = contextvars.ContextVar(
    "keeptime_sql_session", default=None
)


def current_session() -> Connection:
    conn = _session.get()
    if conn is None:
        raise DBOSNotInWorkflowError(
            "DBOS.sql_session is only available inside a @DBOS.transaction function"
        )
    return conn


def app_database(runtime: Runtime) -> Database:
    if runtime.app_db is None:
        cfg = runtime.config
        url = cfg.application_database_url or cfg.system_database_url
        db = Database(
            parse_database_url(url, "application_database_url"),
            schema=cfg.system_schema,
            pool_size=cfg.sys_db_pool_size,
            engine_kwargs=cfg.db_engine_kwargs,
        )
        create_application_tables(db)
        runtime.app_db = db
    db_: Database = runtime.app_db
    return db_


def reset_application_database(runtime: Runtime) -> None:
    if runtime.config.application_database_url:
        db = app_database(runtime)
        drop_application_tables(db)
        create_application_tables(db)


def call_transaction(
    runtime: Runtime, fn: RegisteredFunction, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    ctx = current_workflow()
    db = app_database(runtime)
    if ctx is None or ctx.in_step:
        with db.write() as conn:
            return _run_in(conn, fn, args, kwargs)
    function_id = ctx.take_function_id()
    replayed = replay_or_check(runtime, ctx, function_id, fn.name)
    if replayed is not None:
        return replayed.value()
    started = runtime.now_ms()
    workflow_id = ctx.workflow_id

    def attempt() -> tuple[str, Any]:
        with db.write() as conn:
            done = conn.execute(
                select(transaction_outputs.c.output).where(
                    transaction_outputs.c.workflow_uuid == workflow_id,
                    transaction_outputs.c.function_id == function_id,
                )
            ).first()
            if done is not None:  # an earlier attempt committed before its connection broke
                return done[0], runtime.codec.decode(
                    done[0], f"the output of transaction {fn.name!r}"
                )
            value = _run_in(conn, fn, args, kwargs)
            encoded = runtime.codec.encode(value, f"the output of transaction {fn.name!r}")
            conn.execute(
                transaction_outputs.insert().values(
                    workflow_uuid=workflow_id,
                    function_id=function_id,
                    output=encoded,
                    created_at=runtime.now_ms(),
                )
            )
            return encoded, value

    output: str | None = None
    error: str | None = None
    result: Any = None
    failure: BaseException | None = None
    try:
        # The transaction and its checkpoint commit together, so repeating it while the
        # application database is unavailable cannot apply it twice; a workflow waits out an
        # outage of any length here (see database.waiting_out_outages).
        output, result = db.retrying(f"transaction {fn.name!r}", attempt, RECONNECT_DELAYS_SECONDS)
    except Exception as exc:
        if is_outage(exc):
            # Gave up (a shutdown): no outcome. Recovery reruns it from the last checkpoint.
            raise
        failure = exc
        error = runtime.codec.encode_error(exc)
    write = runtime.store.record_step(
        ctx.workflow_id, StepRecord(function_id, fn.name, output, error, None), started
    )
    if write.earlier is not None:
        return Replayed(runtime, write.earlier).value()
    if failure is not None:
        raise failure
    return result


def _run_in(
    conn: Connection, fn: RegisteredFunction, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    token = _session.set(conn)
    try:
        return fn.func(*args, **kwargs)
    finally:
        _session.reset(token)
