"""The system store: semantic operations on the system database.

The runtime never writes SQL; it calls these methods. Each method is one transaction, and the hot
path costs one durable commit per step plus two per workflow (start and finish).
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ParamSpec, Protocol, TypeVar, cast

from sqlalchemy import Connection, Table, TextClause, select, text
from sqlalchemy.exc import IntegrityError

from engine.error import DBOSQueueDeduplicatedError
from engine.storage.database import Database
from engine.storage.rows import (
    TERMINAL_STATUSES,
    ListFilter,
    StepRecord,
    StepWrite,
    WorkflowOutcome,
    WorkflowRow,
)
from engine.storage.schema import operation_outputs, quoted_name, workflow_status
from engine.storage.statements import (
    COMPLETION_ARRAYS,
    completion_sql,
    insert_arrays_sql,
    insert_ignoring_sql,
    record_step_sql,
)
from engine.storage.workflow_management import WorkflowManagement

# Importers of these names from here (the runtime, the client, the daemon, tests) keep working.
__all__ = [
    "RECONNECT_DELAYS_SECONDS",
    "TERMINAL_STATUSES",
    "ListFilter",
    "StepRecord",
    "StepWrite",
    "SystemStore",
    "WorkflowOutcome",
    "WorkflowRow",
    "completion_sql",
    "retried_with_recheck",
    "retry_on_connection_loss",
]

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


class SystemStore:
    """Workflow rows and their step checkpoints: starting, finishing, recovery, management.

    The hot path (starting, checkpointing and finishing workflows) is here; the listing and
    management queries are in ``WorkflowManagement``, retried from here as they were.
    """

    def __init__(self, db: Database, now_ms: Callable[[], int]) -> None:
        self.db = db
        self.now_ms = now_ms
        self._statements: dict[tuple[Any, ...], TextClause] = {}
        self._management = WorkflowManagement(db, now_ms)

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
            rows = self.db.dialect.array_rows("u", COMPLETION_ARRAYS)
            return completion_sql(self.table_name(workflow_status), rows)

        return self._cached(("complete_arrays",), build)

    def _insert_unnest_statement(self, shapes: tuple[tuple[str, bool], ...]) -> TextClause:
        """``shapes``: each column, and whether one value serves every row (a scalar)."""

        def build() -> str:
            name = self.table_name(workflow_status)
            return insert_arrays_sql(workflow_status, name, self.db.dialect, shapes)

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
            steps, workflows = operation_outputs, workflow_status
            return record_step_sql(
                steps, self.table_name(steps), self.table_name(workflows), columns
            )

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
        """PENDING workflows of these executors (of ``app_version`` when given), oldest first."""
        return self._management.pending_workflows(executor_ids, app_version)

    def start_recovery_attempt(
        self, workflow_id: str, executor_id: str, max_attempts: int | None
    ) -> WorkflowRow | None:
        """Count one more start of this executor's PENDING workflow; past the limit, give up.

        Returns None when the workflow is no longer PENDING on ``executor_id`` (another executor
        took it over), so two executors never both resume it.
        """
        return self._management.start_recovery_attempt(workflow_id, executor_id, max_attempts)

    # -- management -------------------------------------------------------------------------------

    @retry_on_connection_loss
    def cancel_workflow_tree(self, workflow_id: str) -> list[str]:
        """Cancel a workflow and every non-terminal descendant; returns the IDs cancelled."""
        return self._management.cancel_workflow_tree(workflow_id)

    @retry_on_connection_loss
    def list_workflows(self, flt: ListFilter) -> list[WorkflowRow]:
        """Rows matching every set field of ``flt``, by creation time (then ID), paged."""
        return self._management.list_workflows(flt)

    @retry_on_connection_loss
    def list_steps(self, workflow_id: str) -> list[StepRecord]:
        """The workflow's recorded steps in function ID order."""
        return self._management.list_steps(workflow_id)

    @retry_on_connection_loss
    def count_workflows(self) -> int:
        """How many workflow rows there are."""
        return self._management.count_workflows()

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
            lambda: insert_ignoring_sql(
                table, self.table_name(table), columns, conflict_columns, returning
            ),
        )
        return self.db.dialect.first_row(conn, stmt, values) is not None

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
        return self._management.cancelled_among(workflow_ids)

    def resume_workflow(
        self, workflow_id: str, executor_id: str
    ) -> tuple[bool, WorkflowRow | None]:
        """Make a cancelled, given-up or still-queued workflow PENDING here, off its queue.

        Returns (changed, row). A PENDING or finished workflow is left as it is.
        """
        return self._management.resume_workflow(workflow_id, executor_id)

    def fork_workflow(self, source: WorkflowRow, new_row: WorkflowRow, start_step: int) -> None:
        """Create ``new_row`` with copies of the source's steps before ``start_step``."""
        self._management.fork_workflow(source, new_row, start_step)

    @retry_on_connection_loss
    def requeue_workflow(self, workflow_id: str, queue_name: str) -> bool:
        """Put a cancelled, given-up or queued workflow on ``queue_name`` for any executor."""
        return self._management.requeue_workflow(workflow_id, queue_name)
