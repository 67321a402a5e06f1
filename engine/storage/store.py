"""The system store: semantic operations on the system database.

The runtime never writes SQL; it calls these methods. Each method is one transaction, and the hot
path costs one durable commit per step plus two per workflow (start and finish).
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, ParamSpec, Protocol, TypeVar, cast

from sqlalchemy import (
    BigInteger,
    Connection,
    Integer,
    Row,
    String,
    Table,
    Text,
    TextClause,
    and_,
    case,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError

from engine.error import DBOSQueueDeduplicatedError
from engine.storage.database import Database
from engine.storage.schema import operation_outputs, quoted_name, workflow_status

# Waits between attempts while the database is unavailable; the last one repeats. Capped at 1 s
# so paused work continues within about a second of the database's return (the promise is 2 s).
# How long attempts go on is decided by the caller (see database.waiting_out_outages).
RECONNECT_DELAYS_SECONDS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0)
T = TypeVar("T")
P = ParamSpec("P")


class _OnDatabase(Protocol):
    db: Database


def retry_on_connection_loss(operation: Callable[P, T]) -> Callable[P, T]:
    """Repeat a store operation while the database is unavailable (see ``Database.retrying``).

    Only for operations that are safe to repeat after a failure whose commit may or may not
    have happened: reads, ``ON CONFLICT DO NOTHING`` inserts, updates guarded by status.
    """

    @functools.wraps(operation)
    def retrying(*args: P.args, **kwargs: P.kwargs) -> T:
        owner = cast(_OnDatabase, args[0])
        return owner.db.retrying(
            operation.__name__, lambda: operation(*args, **kwargs), RECONNECT_DELAYS_SECONDS
        )

    return retrying


logger = logging.getLogger("keeptime.engine")
TERMINAL_STATUSES = ("SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED")


@dataclass(slots=True)  # slots: a burst of ticks holds thousands of these at once
class WorkflowRow:
    workflow_uuid: str
    status: str
    name: str
    class_name: str | None = None
    config_name: str | None = None
    authenticated_user: str | None = None
    assumed_role: str | None = None
    authenticated_roles: str | None = None
    inputs: str | None = None
    output: str | None = None
    error: str | None = None
    executor_id: str | None = None
    application_version: str | None = None
    application_id: str | None = None
    created_at: int = 0
    updated_at: int = 0
    recovery_attempts: int = 0
    queue_name: str | None = None
    queue_partition_key: str | None = None
    deduplication_id: str | None = None
    priority: int | None = None
    timeout_ms: int | None = None
    deadline_epoch_ms: int | None = None
    started_at_epoch_ms: int | None = None
    parent_workflow_id: str | None = None
    queue_order: int | None = None

    @classmethod
    def from_row(cls, row: Row[Any]) -> WorkflowRow:
        mapping = row._mapping
        return cls(**{name: mapping[name] for name in _WORKFLOW_FIELDS})

    def values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _WORKFLOW_FIELDS}


_WORKFLOW_FIELDS = tuple(f.name for f in fields(WorkflowRow))
# The SQL type of array elements per column type (Dialect.array_rows).
_ARRAY_TYPES: dict[type[Any], str] = {
    Text: "text",
    String: "text",
    BigInteger: "bigint",
    Integer: "integer",
}


@dataclass(frozen=True)
class StepRecord:
    function_id: int
    function_name: str
    output: str | None
    error: str | None
    child_workflow_id: str | None

    @classmethod
    def from_row(cls, row: Row[Any]) -> StepRecord:
        m = row._mapping
        return cls(
            m["function_id"], m["function_name"], m["output"], m["error"], m["child_workflow_id"]
        )


@dataclass(frozen=True)
class WorkflowOutcome:
    """A finished workflow's terminal status and its encoded result or error."""

    workflow_id: str
    status: str
    output: str | None
    error: str | None


def completion_sql(table: str, rows: str | None = None) -> str:
    """Finishing workflows: the one definition every path uses. A PENDING row takes its final
    status, output and error, frees its deduplication ID and is stamped ``:now_ms``; a row in
    any other status (cancelled meanwhile, finished already) is left as it is.

    Without ``rows``, one workflow, from the parameters ``:target_id``, ``:new_status``,
    ``:new_output`` and ``:new_error`` (executed once per workflow for several). With ``rows``,
    a FROM source named ``u`` with those columns: all of them at once, returning the IDs it
    finished.
    """
    ref = ":" if rows is None else "u."
    source = "" if rows is None else f"FROM {rows} "
    returning = "" if rows is None else ' RETURNING w."workflow_uuid"'
    return (
        f'UPDATE {table} AS w SET "status" = {ref}new_status, "output" = {ref}new_output, '
        f'"error" = {ref}new_error, "deduplication_id" = NULL, "updated_at" = :now_ms {source}'
        f"""WHERE w."workflow_uuid" = {ref}target_id AND w."status" = 'PENDING'{returning}"""
    )


def retried_with_recheck(db: Database, what: str, attempt: Callable[[bool], T]) -> T:
    """``db.retrying`` for an operation whose retries check whether an attempt before them
    committed after all (its connection broke before the answer came): ``attempt(again=True)``.
    """
    tries = itertools.count()
    return db.retrying(what, lambda: attempt(next(tries) > 0), RECONNECT_DELAYS_SECONDS)


def _same_insert(stored: WorkflowRow, built: WorkflowRow) -> bool:
    """Whether ``stored`` is the row ``built`` for this very call (found again on a retry).

    The creation stamp, inputs, executor and queue order (a per-process microsecond stamp for
    queued work) together tell one call's row from another call's with the same ID.
    """
    return (
        stored.created_at == built.created_at
        and stored.inputs == built.inputs
        and stored.executor_id == built.executor_id
        and stored.queue_order == built.queue_order
        and stored.name == built.name
    )


# (array parameter, element type, column of the completion_sql source)
_COMPLETION_ARRAYS = (
    ("ids", "text", "target_id"),
    ("statuses", "text", "new_status"),
    ("outputs", "text", "new_output"),
    ("errors", "text", "new_error"),
)


def _completion_params(
    workflow_id: str, status: str, output: str | None, error: str | None, now_ms: int
) -> dict[str, Any]:
    return {
        "target_id": workflow_id,
        "new_status": status,
        "new_output": output,
        "new_error": error,
        "now_ms": now_ms,
    }


@dataclass(frozen=True)
class StepWrite:
    """What recording a step found: the workflow's status, and an earlier record if one won."""

    workflow_status: str | None
    earlier: StepRecord | None


@dataclass(frozen=True)
class ListFilter:
    workflow_ids: Sequence[str] | None = None
    workflow_id_prefix: str | None = None
    statuses: Sequence[str] | None = None
    start_ms: int | None = None
    end_ms: int | None = None
    name: str | None = None
    app_version: str | None = None
    user: str | None = None
    queue_name: str | None = None
    queued_only: bool = False
    limit: int | None = None
    offset: int | None = None
    sort_desc: bool = False


class SystemStore:
    def __init__(self, db: Database, now_ms: Callable[[], int]) -> None:
        self.db = db
        self.now_ms = now_ms
        self._statements: dict[tuple[Any, ...], TextClause] = {}

    # -- workflow lifecycle -----------------------------------------------------------------------

    def insert_workflow(
        self, row: WorkflowRow, parent_step: StepRecord | None = None, parent_id: str | None = None
    ) -> tuple[bool, WorkflowRow]:
        """Create the workflow (and the parent's step that started it) unless the ID exists.

        Returns (created, row as stored). The ID is the idempotency key: a second insert with the
        same ID changes nothing and returns the first row. Retried while the database is
        unavailable: an attempt that finds the row an earlier attempt of this call committed
        (before its connection broke) reports it as created.
        """

        def attempt(again: bool) -> tuple[bool, WorkflowRow]:
            created, stored = self._insert_workflow_once(row, parent_step, parent_id)
            return (created or (again and _same_insert(stored, row))), stored

        return retried_with_recheck(self.db, "insert_workflow", attempt)

    def _insert_workflow_once(
        self, row: WorkflowRow, parent_step: StepRecord | None, parent_id: str | None
    ) -> tuple[bool, WorkflowRow]:
        single = parent_step is None or parent_id is None
        with self.db.autocommit() if single else self.db.write() as conn:
            try:
                inserted = self.insert_ignoring_conflict(
                    conn, workflow_status, row.values(), ("workflow_uuid",), "workflow_uuid"
                )
            except IntegrityError as exc:
                if row.deduplication_id is None:
                    raise
                raise DBOSQueueDeduplicatedError(
                    f"a workflow with deduplication ID {row.deduplication_id!r} is already "
                    f"enqueued or running on queue {row.queue_name!r} (wait for it to finish, or "
                    "use another deduplication ID)",
                    row.workflow_uuid,
                    row.queue_name or "",
                    row.deduplication_id,
                ) from exc
            if parent_step is not None and parent_id is not None:
                self.insert_step(conn, parent_id, parent_step)
            if inserted:
                return True, row
            existing = conn.execute(
                select(workflow_status).where(workflow_status.c.workflow_uuid == row.workflow_uuid)
            ).one()
            return False, WorkflowRow.from_row(existing)

    def insert_workflows(self, rows: Sequence[WorkflowRow]) -> set[str]:
        """Create many workflows in one transaction; returns the IDs created by this call.

        IDs that exist already are left alone, as in ``insert_workflow``; concurrent inserts of
        the same ID from other processes are safe because the answer comes from RETURNING.
        Retried while the database is unavailable, as ``insert_workflow`` is.
        """
        if not rows:
            return set()

        def attempt(again: bool) -> set[str]:
            created = self._insert_workflows_once(rows)
            if again and len(created) < len(rows):
                created |= self._inserted_earlier(
                    [r for r in rows if r.workflow_uuid not in created]
                )
            return created

        return retried_with_recheck(self.db, "insert_workflows", attempt)

    def _inserted_earlier(self, rows: Sequence[WorkflowRow]) -> set[str]:
        """Which of these rows are stored as this call built them (an earlier attempt of it
        committed them): same creation stamp, inputs, executor and queue order."""
        wanted = {row.workflow_uuid: row for row in rows}
        with self.db.read() as conn:
            stored = conn.execute(
                select(workflow_status).where(workflow_status.c.workflow_uuid.in_(list(wanted)))
            ).all()
        found = (WorkflowRow.from_row(r) for r in stored)
        return {r.workflow_uuid for r in found if _same_insert(r, wanted[r.workflow_uuid])}

    def _insert_workflows_once(self, rows: Sequence[WorkflowRow]) -> set[str]:
        values = [row.values() for row in rows]
        # Columns NULL in every row are left out: half the bind parameters for tick rows.
        columns = [c for c in values[0] if any(v[c] is not None for v in values)]
        if self.db.dialect.batches_with_arrays:
            return self._insert_workflows_unnest(values, columns)
        stmt = (
            self.db.dialect.insert(workflow_status)
            .on_conflict_do_nothing(index_elements=["workflow_uuid"])
            .returning(workflow_status.c.workflow_uuid)
        )
        params = [{c: v[c] for c in columns} for v in values]
        with self.db.write() as conn:
            return set(conn.execute(stmt, params).scalars())

    def _insert_workflows_unnest(
        self, values: list[dict[str, Any]], columns: list[str]
    ) -> set[str]:
        """One array per column (``Dialect.array_rows``). A column with one value in every row
        (status, times, executor, version: most of a burst of ticks) is a single parameter."""
        params: dict[str, Any] = {}
        shapes: list[tuple[str, bool]] = []
        for i, column in enumerate(columns):
            first = values[0][column]
            # The IDs always form the array that unnest expands (one row: one element).
            same = column != "workflow_uuid" and all(v[column] == first for v in values)
            params[f"a{i}"] = first if same else [v[column] for v in values]
            shapes.append((column, same))
        with self.db.autocommit() as conn:
            found = conn.execute(self._insert_unnest_statement(tuple(shapes)), params)
            return set(found.scalars())

    def _complete_arrays_statement(self) -> TextClause:
        """Finish many workflows in one statement (arrays of IDs and outcomes)."""

        def build() -> str:
            rows = self.db.dialect.array_rows("u", _COMPLETION_ARRAYS)
            return completion_sql(self.table_name(workflow_status), rows)

        return self._cached(("complete_arrays",), build)

    def _insert_unnest_statement(self, shapes: tuple[tuple[str, bool], ...]) -> TextClause:
        """``shapes``: each column, and whether one value serves every row (a scalar)."""

        def build() -> str:
            sources, arrays, names = [], [], []
            for i, (column, same) in enumerate(shapes):
                sql_type = _ARRAY_TYPES[type(workflow_status.c[column].type)]
                names.append(f'"{column}"')
                if same:
                    sources.append(f"CAST(:a{i} AS {sql_type})")
                else:
                    sources.append(f"u.a{i}")
                    arrays.append((f"a{i}", sql_type, f"a{i}"))
            rows = self.db.dialect.array_rows("u", arrays)
            return (
                f"INSERT INTO {self.table_name(workflow_status)} ({', '.join(names)}) "
                f"SELECT {', '.join(sources)} FROM {rows} "
                'ON CONFLICT ("workflow_uuid") DO NOTHING RETURNING "workflow_uuid"'
            )

        return self._cached(("insert_unnest", shapes), build)

    @retry_on_connection_loss
    def record_step(self, workflow_id: str, step: StepRecord, started_ms: int | None) -> StepWrite:
        """Checkpoint a step. If another execution recorded it first, its record wins.

        One statement (inserting and reading the workflow's status back), committed by itself.
        """
        values = self._step_values(workflow_id, step, started_ms)
        with self.db.autocommit() as conn:
            recorded = self.db.dialect.first_row(conn, self._record_step_statement(), values)
        if recorded is not None:
            return StepWrite(recorded[0], None)
        with self.db.read() as conn:
            earlier_row = conn.execute(
                select(operation_outputs).where(
                    operation_outputs.c.workflow_uuid == workflow_id,
                    operation_outputs.c.function_id == step.function_id,
                )
            ).one()
            status = conn.execute(
                select(workflow_status.c.status).where(
                    workflow_status.c.workflow_uuid == workflow_id
                )
            ).scalar()
        return StepWrite(status, StepRecord.from_row(earlier_row))

    def _record_step_statement(self) -> TextClause:
        """INSERT ... ON CONFLICT DO NOTHING RETURNING the workflow's current status."""

        def build() -> str:
            columns = tuple(self._step_values("", StepRecord(0, "", None, None, None), 0))
            insert = self._insert_ignoring_sql(
                operation_outputs, columns, ("workflow_uuid", "function_id"), "function_id"
            )
            status = (
                f'(SELECT "status" FROM {self.table_name(workflow_status)} '
                'WHERE "workflow_uuid" = :workflow_uuid)'
            )
            return insert.replace('RETURNING "function_id"', f"RETURNING {status}")

        return self._cached(("record_step",), build)

    def _complete_statement(self) -> TextClause:
        """Finish one workflow (``completion_sql``)."""
        return self._cached(("complete",), lambda: completion_sql(self.table_name(workflow_status)))

    def _step_values(
        self, workflow_id: str, step: StepRecord, started_ms: int | None = None
    ) -> dict[str, Any]:
        now = self.now_ms()
        return {
            "workflow_uuid": workflow_id,
            "function_id": step.function_id,
            "function_name": step.function_name,
            "output": step.output,
            "error": step.error,
            "child_workflow_id": step.child_workflow_id,
            "started_at_epoch_ms": started_ms if started_ms is not None else now,
            "completed_at_epoch_ms": now,
        }

    def insert_step(
        self, conn: Connection, workflow_id: str, step: StepRecord, started_ms: int | None = None
    ) -> bool:
        """Record a step inside the caller's transaction; False if it was recorded already."""
        values = self._step_values(workflow_id, step, started_ms)
        key = ("workflow_uuid", "function_id")
        return self.insert_ignoring_conflict(conn, operation_outputs, values, key, "function_id")

    @retry_on_connection_loss
    def load_steps(self, workflow_id: str) -> dict[int, StepRecord]:
        with self.db.read() as conn:
            rows = conn.execute(
                select(operation_outputs).where(operation_outputs.c.workflow_uuid == workflow_id)
            ).all()
        return {r._mapping["function_id"]: StepRecord.from_row(r) for r in rows}

    @retry_on_connection_loss
    def load_steps_of(self, workflow_ids: Sequence[str]) -> dict[str, dict[int, StepRecord]]:
        """``load_steps`` for many workflows in one query (every ID gets an entry)."""
        found: dict[str, dict[int, StepRecord]] = {wf_id: {} for wf_id in workflow_ids}
        if not workflow_ids:
            return found
        with self.db.read() as conn:
            rows = conn.execute(
                select(operation_outputs).where(
                    operation_outputs.c.workflow_uuid.in_(list(workflow_ids))
                )
            ).all()
        for r in rows:
            found[r._mapping["workflow_uuid"]][r._mapping["function_id"]] = StepRecord.from_row(r)
        return found

    @retry_on_connection_loss
    def get_step(self, workflow_id: str, function_id: int) -> StepRecord | None:
        with self.db.read() as conn:
            row = conn.execute(
                select(operation_outputs).where(
                    operation_outputs.c.workflow_uuid == workflow_id,
                    operation_outputs.c.function_id == function_id,
                )
            ).first()
        return StepRecord.from_row(row) if row is not None else None

    def complete_workflow(
        self, workflow_id: str, status: str, output: str | None, error: str | None
    ) -> bool:
        """Finish a PENDING workflow. A workflow cancelled meanwhile stays CANCELLED.

        Retried while the database is unavailable; an attempt that finds the outcome an earlier
        attempt committed (before its connection broke) reports it as applied.
        """
        outcome = WorkflowOutcome(workflow_id, status, output, error)

        def attempt(again: bool) -> bool:
            if self._complete_once(workflow_id, status, output, error):
                return True
            return again and bool(self._settled_earlier([outcome]))

        return retried_with_recheck(self.db, "complete_workflow", attempt)

    def _settled_earlier(self, outcomes: Sequence[WorkflowOutcome]) -> set[str]:
        """Which of these workflows hold exactly this outcome already."""
        wanted = {o.workflow_id: o for o in outcomes}
        ws = workflow_status.c
        with self.db.read() as conn:
            rows = conn.execute(
                select(ws.workflow_uuid, ws.status, ws.output, ws.error).where(
                    ws.workflow_uuid.in_(list(wanted))
                )
            ).all()
        return {
            r[0]
            for r in rows
            if (r[1], r[2], r[3]) == (wanted[r[0]].status, wanted[r[0]].output, wanted[r[0]].error)
        }

    def _complete_once(
        self, workflow_id: str, status: str, output: str | None, error: str | None
    ) -> bool:
        params = _completion_params(workflow_id, status, output, error, self.now_ms())
        with self.db.autocommit() as conn:
            return self.db.dialect.rowcount(conn, self._complete_statement(), params) > 0

    def complete_workflows(self, outcomes: Sequence[WorkflowOutcome]) -> set[str]:
        """Finish several PENDING workflows in one commit; returns the IDs that were PENDING.

        The others (cancelled meanwhile, or finished by another execution) are left as they are.
        Retried while the database is unavailable, as ``complete_workflow`` is.
        """

        def attempt(again: bool) -> set[str]:
            applied = self._complete_many_once(outcomes)
            if again and len(applied) < len(outcomes):
                applied |= self._settled_earlier(
                    [o for o in outcomes if o.workflow_id not in applied]
                )
            return applied

        return retried_with_recheck(self.db, "complete_workflows", attempt)

    def _complete_many_once(self, outcomes: Sequence[WorkflowOutcome]) -> set[str]:
        ids = [o.workflow_id for o in outcomes]
        now = self.now_ms()
        if self.db.dialect.batches_with_arrays:
            arrays = {
                "ids": ids,
                "statuses": [o.status for o in outcomes],
                "outputs": [o.output for o in outcomes],
                "errors": [o.error for o in outcomes],
                "now_ms": now,
            }
            with self.db.autocommit() as conn:
                return set(conn.execute(self._complete_arrays_statement(), arrays).scalars())
        with self.db.write() as conn:
            pending = set(
                conn.execute(
                    select(workflow_status.c.workflow_uuid)
                    .where(
                        workflow_status.c.workflow_uuid.in_(ids),
                        workflow_status.c.status == "PENDING",
                    )
                    .with_for_update()
                ).scalars()
            )
            params = [
                _completion_params(o.workflow_id, o.status, o.output, o.error, now)
                for o in outcomes
                if o.workflow_id in pending
            ]
            if params:
                conn.execute(self._complete_statement(), params)
        return pending

    @retry_on_connection_loss
    def get_workflow(self, workflow_id: str) -> WorkflowRow | None:
        with self.db.read() as conn:
            row = conn.execute(
                select(workflow_status).where(workflow_status.c.workflow_uuid == workflow_id)
            ).first()
        return WorkflowRow.from_row(row) if row is not None else None

    @retry_on_connection_loss
    def get_outcome(self, workflow_id: str) -> tuple[str, str | None, str | None] | None:
        """(status, output, error) of a workflow, or None when no such workflow exists."""
        with self.db.read() as conn:
            row = conn.execute(
                select(
                    workflow_status.c.status, workflow_status.c.output, workflow_status.c.error
                ).where(workflow_status.c.workflow_uuid == workflow_id)
            ).first()
        return (row[0], row[1], row[2]) if row is not None else None

    # -- recovery ---------------------------------------------------------------------------------

    @retry_on_connection_loss
    def pending_workflows(
        self, executor_ids: Sequence[str], app_version: str | None
    ) -> list[WorkflowRow]:
        query = select(workflow_status).where(
            workflow_status.c.status == "PENDING",
            workflow_status.c.executor_id.in_(list(executor_ids)),
        )
        if app_version is not None:
            query = query.where(workflow_status.c.application_version == app_version)
        with self.db.read() as conn:
            rows = conn.execute(query.order_by(workflow_status.c.created_at)).all()
        return [WorkflowRow.from_row(r) for r in rows]

    def start_recovery_attempt(
        self, workflow_id: str, executor_id: str, max_attempts: int | None
    ) -> WorkflowRow | None:
        """Count one more start of this executor's PENDING workflow; past the limit, give up.

        Returns None when the workflow is no longer PENDING on ``executor_id`` (another executor
        took it over), so two executors never both resume it.
        """
        with self.db.write() as conn:
            started = conn.execute(
                update(workflow_status)
                .where(
                    workflow_status.c.workflow_uuid == workflow_id,
                    workflow_status.c.status == "PENDING",
                    workflow_status.c.executor_id == executor_id,
                )
                .values(
                    recovery_attempts=workflow_status.c.recovery_attempts + 1,
                    updated_at=self.now_ms(),
                )
            )
            if not started.rowcount:
                return None
            if max_attempts is not None:
                conn.execute(
                    update(workflow_status)
                    .where(
                        workflow_status.c.workflow_uuid == workflow_id,
                        workflow_status.c.status == "PENDING",
                        workflow_status.c.recovery_attempts > max_attempts + 1,
                    )
                    .values(status="MAX_RECOVERY_ATTEMPTS_EXCEEDED", deduplication_id=None)
                )
            row = conn.execute(
                select(workflow_status).where(workflow_status.c.workflow_uuid == workflow_id)
            ).first()
        return WorkflowRow.from_row(row) if row is not None else None

    # -- management -------------------------------------------------------------------------------

    @retry_on_connection_loss
    def cancel_workflow_tree(self, workflow_id: str) -> list[str]:
        """Cancel a workflow and every non-terminal descendant; returns the IDs cancelled."""
        cancelled: list[str] = []
        with self.db.write() as conn:
            frontier = [workflow_id]
            seen: set[str] = set()
            while frontier:
                current = frontier.pop()
                if current in seen:
                    continue
                seen.add(current)
                result = conn.execute(
                    update(workflow_status)
                    .where(
                        workflow_status.c.workflow_uuid == current,
                        workflow_status.c.status.in_(("PENDING", "ENQUEUED")),
                    )
                    .values(status="CANCELLED", deduplication_id=None, updated_at=self.now_ms())
                )
                if result.rowcount:
                    cancelled.append(current)
                children = (
                    conn.execute(
                        select(workflow_status.c.workflow_uuid).where(
                            workflow_status.c.parent_workflow_id == current
                        )
                    )
                    .scalars()
                    .all()
                )
                frontier.extend(children)
        return cancelled

    @retry_on_connection_loss
    def list_workflows(self, flt: ListFilter) -> list[WorkflowRow]:
        ws = workflow_status.c
        conditions: list[Any] = []
        if flt.workflow_ids is not None:
            conditions.append(ws.workflow_uuid.in_(list(flt.workflow_ids)))
        if flt.workflow_id_prefix is not None:
            conditions.append(ws.workflow_uuid.startswith(flt.workflow_id_prefix, autoescape=True))
        if flt.statuses is not None:
            conditions.append(ws.status.in_(list(flt.statuses)))
        if flt.start_ms is not None:
            conditions.append(ws.created_at >= flt.start_ms)
        if flt.end_ms is not None:
            conditions.append(ws.created_at <= flt.end_ms)
        if flt.name is not None:
            conditions.append(ws.name == flt.name)
        if flt.app_version is not None:
            conditions.append(ws.application_version == flt.app_version)
        if flt.user is not None:
            conditions.append(ws.authenticated_user == flt.user)
        if flt.queue_name is not None:
            conditions.append(ws.queue_name == flt.queue_name)
        if flt.queued_only:
            conditions.append(
                and_(
                    ws.queue_name.is_not(None), or_(ws.status == "ENQUEUED", ws.status == "PENDING")
                )
            )
        order = (
            (ws.created_at.desc(), ws.workflow_uuid.desc())
            if flt.sort_desc
            else (ws.created_at.asc(), ws.workflow_uuid.asc())
        )
        query = select(workflow_status).where(*conditions).order_by(*order)
        if flt.limit is not None:
            query = query.limit(flt.limit)
        if flt.offset is not None:
            query = query.offset(flt.offset)
        with self.db.read() as conn:
            rows = conn.execute(query).all()
        return [WorkflowRow.from_row(r) for r in rows]

    @retry_on_connection_loss
    def list_steps(self, workflow_id: str) -> list[StepRecord]:
        with self.db.read() as conn:
            rows = conn.execute(
                select(operation_outputs)
                .where(operation_outputs.c.workflow_uuid == workflow_id)
                .order_by(operation_outputs.c.function_id)
            ).all()
        return [StepRecord.from_row(r) for r in rows]

    @retry_on_connection_loss
    def count_workflows(self) -> int:
        with self.db.read() as conn:
            return int(
                conn.execute(select(func.count()).select_from(workflow_status)).scalar() or 0
            )

    # -- helpers ----------------------------------------------------------------------------------

    def insert_ignoring_conflict(
        self,
        conn: Connection,
        table: Table,
        values: Mapping[str, Any],
        conflict_columns: tuple[str, ...],
        returning: str,
    ) -> bool:
        """INSERT ... ON CONFLICT (cols) DO NOTHING; True when the row was inserted.

        SQLAlchemy cannot cache the compiled form of its dialect ``on_conflict`` constructs, and
        compiling costs more than the commit itself on the hot path; the same SQL text works on
        SQLite and PostgreSQL and is built once per shape.
        """
        columns = tuple(values)
        stmt = self._cached(
            (table.name, columns, conflict_columns, returning),
            lambda: self._insert_ignoring_sql(table, columns, conflict_columns, returning),
        )
        return self.db.dialect.first_row(conn, stmt, values) is not None

    def _insert_ignoring_sql(
        self, table: Table, columns: tuple[str, ...], conflict: tuple[str, ...], returning: str
    ) -> str:
        unknown = [c for c in (*columns, *conflict, returning) if c not in table.c]
        if unknown:
            raise ValueError(f"table {table.name} has no column(s) {unknown}")
        cols = ", ".join(f'"{c}"' for c in columns)
        params = ", ".join(f":{c}" for c in columns)
        target = ", ".join(f'"{c}"' for c in conflict)
        return (
            f"INSERT INTO {self.table_name(table)} ({cols}) VALUES ({params}) "
            f'ON CONFLICT ({target}) DO NOTHING RETURNING "{returning}"'
        )

    def _cached(self, key: tuple[Any, ...], build_sql: Callable[[], str]) -> TextClause:
        """Hand-written SQL text, built once per store and shape (see insert_ignoring_conflict)."""
        stmt = self._statements.get(key)
        if stmt is None:
            stmt = self._statements[key] = text(build_sql())
        return stmt

    def table_name(self, table: Table) -> str:
        """The quoted, schema-qualified name to use in hand-written SQL."""
        return quoted_name(table, self.db.schema)

    @retry_on_connection_loss
    def cancelled_among(self, workflow_ids: Sequence[str]) -> list[str]:
        """Which of these workflows are CANCELLED (the watcher's one query per interval)."""
        if not workflow_ids:
            return []
        with self.db.read() as conn:
            return list(
                conn.execute(
                    select(workflow_status.c.workflow_uuid).where(
                        workflow_status.c.workflow_uuid.in_(list(workflow_ids)),
                        workflow_status.c.status == "CANCELLED",
                    )
                ).scalars()
            )

    def resume_workflow(
        self, workflow_id: str, executor_id: str
    ) -> tuple[bool, WorkflowRow | None]:
        """Make a cancelled, given-up or still-queued workflow PENDING here, off its queue.

        Returns (changed, row). A PENDING or finished workflow is left as it is.
        """
        with self.db.write() as conn:
            result = conn.execute(
                update(workflow_status)
                .where(
                    workflow_status.c.workflow_uuid == workflow_id,
                    workflow_status.c.status.in_(
                        ("CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED", "ENQUEUED")
                    ),
                )
                .values(
                    status="PENDING",
                    executor_id=executor_id,
                    recovery_attempts=0,
                    queue_name=None,
                    deduplication_id=None,
                    # A resumed workflow gets its full timeout again, from now.
                    deadline_epoch_ms=case(
                        (
                            workflow_status.c.timeout_ms.is_not(None),
                            self.now_ms() + workflow_status.c.timeout_ms,
                        ),
                        else_=None,
                    ),
                    started_at_epoch_ms=self.now_ms(),
                    updated_at=self.now_ms(),
                )
            )
            row = conn.execute(
                select(workflow_status).where(workflow_status.c.workflow_uuid == workflow_id)
            ).first()
        return bool(result.rowcount), (WorkflowRow.from_row(row) if row is not None else None)

    def fork_workflow(self, source: WorkflowRow, new_row: WorkflowRow, start_step: int) -> None:
        """Create ``new_row`` with copies of the source's steps before ``start_step``."""
        with self.db.write() as conn:
            conn.execute(workflow_status.insert().values(**new_row.values()))
            steps = conn.execute(
                select(operation_outputs).where(
                    operation_outputs.c.workflow_uuid == source.workflow_uuid,
                    operation_outputs.c.function_id < start_step,
                )
            ).all()
            for step in steps:
                values = dict(step._mapping)
                values["workflow_uuid"] = new_row.workflow_uuid
                conn.execute(operation_outputs.insert().values(**values))

    @retry_on_connection_loss
    def requeue_workflow(self, workflow_id: str, queue_name: str) -> bool:
        """Put a cancelled, given-up or queued workflow on ``queue_name`` for any executor."""
        with self.db.write() as conn:
            result = conn.execute(
                update(workflow_status)
                .where(
                    workflow_status.c.workflow_uuid == workflow_id,
                    workflow_status.c.status.in_(
                        ("CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED", "ENQUEUED")
                    ),
                )
                .values(
                    status="ENQUEUED",
                    queue_name=queue_name,
                    queue_partition_key=None,
                    deduplication_id=None,
                    priority=None,
                    executor_id=None,
                    recovery_attempts=0,
                    started_at_epoch_ms=None,
                    deadline_epoch_ms=None,
                    updated_at=self.now_ms(),
                )
            )
        return bool(result.rowcount)
