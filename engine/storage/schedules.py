"""Schedules in the system database: definitions, pause flags, catch-up watermarks, held ticks.

Every method is one transaction. The scheduler thread reads the state of all due schedules in one
query and records the ticks it handled in one transaction per wake-up, so the per-tick cost is the
workflow insert itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Connection,
    String,
    TextClause,
    bindparam,
    case,
    delete,
    func,
    or_,
    select,
    text,
    update,
)

from engine.core.catchup import previous_run_verdict
from engine.storage.schema import executors, schedules, workflow_status
from engine.storage.store import SystemStore, WorkflowRow

sc = schedules.c
ws = workflow_status.c
ex = executors.c

ACTIVE_STATUSES = ("PENDING", "ENQUEUED")
#: Held (buffered) ticks wait as ENQUEUED rows on this per-schedule queue, which no worker serves.
HOLD_QUEUE_PREFIX = "_keeptime_hold:"


def hold_queue_name(schedule_name: str) -> str:
    return HOLD_QUEUE_PREFIX + schedule_name


@dataclass(frozen=True)
class ScheduleRow:
    name: str
    source: str
    definition: str
    inputs: str | None
    paused: bool
    last_tick_ms: int | None
    last_workflow_id: str | None
    last_status: str | None
    updated_at: int


@dataclass(frozen=True, slots=True)
class TickState:
    """What firing one tick needs to know: the pause flag, the watermark, and the previous run
    with what decides whether it still goes (its queue, its executor and that executor's
    heartbeat and version, ``owner_*``: None when the executor has no row)."""

    paused: bool
    last_tick_ms: int | None
    last_workflow_id: str | None
    last_status: str | None
    last_queue: str | None = None
    last_executor: str | None = None
    last_version: str | None = None
    owner_version: str | None = None
    owner_heartbeat_ms: int | None = None

    @property
    def unfinished(self) -> bool:
        """The previous run is PENDING or ENQUEUED (whether or not anyone will finish it)."""
        return self.last_status in ACTIVE_STATUSES

    def previous_run(
        self, *, now_ms: int, stale_after_ms: int, me: str, my_version: str
    ) -> tuple[bool, str | None]:
        """Whether the previous run counts as running for the overlap policy, and if it is
        unfinished but not waited on, why (see :func:`engine.core.catchup.previous_run_verdict`).
        """
        queue = self.last_queue
        on_hold = queue is not None and queue.startswith(HOLD_QUEUE_PREFIX)
        if self.last_status == "ENQUEUED" and on_hold:
            return False, None  # a buffered tick waiting its turn, not a run
        return previous_run_verdict(
            self.last_status,
            queued=queue is not None,
            executor_id=self.last_executor,
            run_version=self.last_version,
            owner_version=self.owner_version,
            owner_heartbeat_ms=self.owner_heartbeat_ms,
            now_ms=now_ms,
            stale_after_ms=stale_after_ms,
            me=me,
            my_version=my_version,
        )


@dataclass(frozen=True)
class Registration:
    name: str
    source: str
    definition: str
    inputs: str | None


@dataclass(frozen=True, slots=True)
class FiredTick:
    name: str
    tick_ms: int
    workflow_id: str | None  # None when the tick was skipped


# One statement for every schedule fired in a pass (executemany): compiled once, cached.
_ADVANCE_WATERMARK = (
    update(schedules)
    .where(
        schedules.c.name == bindparam("target"),
        or_(
            schedules.c.last_tick_epoch_ms.is_(None),
            schedules.c.last_tick_epoch_ms < bindparam("tick_ms"),
        ),
    )
    .values(
        last_tick_epoch_ms=bindparam("tick_ms"),
        last_workflow_id=func.coalesce(
            bindparam("workflow_id", type_=String()), schedules.c.last_workflow_id
        ),
        updated_at=bindparam("now"),
    )
)


class ScheduleStore:
    def __init__(self, store: SystemStore) -> None:
        self.store = store
        self.db = store.db
        self._advance_sql: TextClause | None = None

    # -- definitions ------------------------------------------------------------------------------

    def register(self, regs: Sequence[Registration], replace_source: str | None = None) -> None:
        """Upsert these schedules; with ``replace_source``, delete others of that source.

        A new schedule's watermark starts at now: downtime after it was created is caught up,
        history before it is not. Pause flags and watermarks of existing schedules are kept.
        """
        if not regs and replace_source is None:
            return
        now = self.store.now_ms()
        with self.db.write() as conn:
            for reg in regs:
                self._upsert(conn, reg, now)
            if replace_source is not None:
                keep = [r.name for r in regs]
                conn.execute(
                    delete(schedules).where(sc.source == replace_source, sc.name.not_in(keep))
                )

    def _upsert(self, conn: Connection, reg: Registration, now: int) -> None:
        stmt = self.db.dialect.insert(schedules).values(
            name=reg.name,
            source=reg.source,
            definition=reg.definition,
            inputs=reg.inputs,
            paused=0,
            last_tick_epoch_ms=now,
            updated_at=now,
        )
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["name"],
                set_={
                    "source": reg.source,
                    "definition": reg.definition,
                    "inputs": reg.inputs,
                    "updated_at": now,
                },
            )
        )

    def delete(self, name: str) -> bool:
        with self.db.write() as conn:
            return bool(conn.execute(delete(schedules).where(sc.name == name)).rowcount)

    def set_paused(self, name: str, paused: bool) -> bool:
        """Pause or resume; False if no such schedule. Resuming moves the watermark to now, so
        ticks that came due while paused are not caught up."""
        now = self.store.now_ms()
        values: dict[str, Any] = {"paused": int(paused), "updated_at": now}
        if not paused:
            behind = or_(sc.last_tick_epoch_ms.is_(None), sc.last_tick_epoch_ms < now)
            values["last_tick_epoch_ms"] = case((behind, now), else_=sc.last_tick_epoch_ms)
        with self.db.write() as conn:
            result = conn.execute(update(schedules).where(sc.name == name).values(**values))
            return bool(result.rowcount)

    # -- reading ----------------------------------------------------------------------------------

    def _rows_query(self) -> Any:
        return select(
            sc.name,
            sc.source,
            sc.definition,
            sc.inputs,
            sc.paused,
            sc.last_tick_epoch_ms,
            sc.last_workflow_id,
            ws.status,
            sc.updated_at,
        ).select_from(schedules.outerjoin(workflow_status, ws.workflow_uuid == sc.last_workflow_id))

    def list_all(self, source: str | None = None) -> list[ScheduleRow]:
        """Every schedule, by name; only those of ``source`` when given."""
        query = self._rows_query()
        if source is not None:
            query = query.where(sc.source == source)
        with self.db.read() as conn:
            rows = conn.execute(query.order_by(sc.name)).all()
        return [ScheduleRow(r[0], r[1], r[2], r[3], bool(r[4]), *r[5:]) for r in rows]

    def get(self, name: str) -> ScheduleRow | None:
        with self.db.read() as conn:
            r = conn.execute(self._rows_query().where(sc.name == name)).first()
        return None if r is None else ScheduleRow(r[0], r[1], r[2], r[3], bool(r[4]), *r[5:])

    def watermark(self, name: str) -> int | None:
        with self.db.read() as conn:
            value = conn.execute(select(sc.last_tick_epoch_ms).where(sc.name == name)).scalar()
        return int(value) if value is not None else None

    def tick_states(self, names: Iterable[str], previous_runs: bool = True) -> dict[str, TickState]:
        """Pause flag, watermark and previous run (with its executor's heartbeat) of each named
        schedule, in one query. Without ``previous_runs``, only the schedules table is read
        (the ``last_*``/``owner_*`` facts but ``last_workflow_id`` are None): enough for ticks
        that never look at the previous run (overlap ``allow``) and for catch-up decisions."""
        wanted = sorted(set(names))
        if not wanted:
            return {}
        if not previous_runs:
            query = select(sc.name, sc.paused, sc.last_tick_epoch_ms, sc.last_workflow_id)
            with self.db.read() as conn:
                rows = conn.execute(query.where(sc.name.in_(wanted))).all()
            return {r[0]: TickState(bool(r[1]), r[2], r[3], None) for r in rows}
        with self.db.read() as conn:
            rows = conn.execute(_tick_state_query().where(sc.name.in_(wanted))).all()
        return {r[0]: _tick_state(r) for r in rows}

    def held_count(self, name: str) -> int:
        with self.db.read() as conn:
            value = conn.execute(
                select(func.count())
                .select_from(workflow_status)
                .where(ws.queue_name == hold_queue_name(name), ws.status == "ENQUEUED")
            ).scalar()
        return int(value or 0)

    # -- writing ticks ----------------------------------------------------------------------------

    def record_fired(self, fired: Sequence[FiredTick]) -> None:
        """Advance each schedule's watermark (never backwards) and its last workflow, at once."""
        if not fired:
            return
        now = self.store.now_ms()
        if self.db.dialect.batches_with_arrays:
            # One source row per schedule (catch-up fires several ticks of one schedule, and an
            # UPDATE ... FROM applies only one of them): its latest tick and latest run.
            latest: dict[str, tuple[int, str | None]] = {}
            for t in sorted(fired, key=lambda t: t.tick_ms):
                previous_run = latest.get(t.name, (0, None))[1]
                latest[t.name] = (t.tick_ms, t.workflow_id or previous_run)
            arrays = {
                "names": list(latest),
                "ticks": [tick for tick, _ in latest.values()],
                "workflow_ids": [run for _, run in latest.values()],
                "now": now,
            }
            with self.db.autocommit() as conn:
                conn.execute(self._advance_unnest(), arrays)
            return
        params = [
            {"target": t.name, "tick_ms": t.tick_ms, "workflow_id": t.workflow_id, "now": now}
            for t in fired
        ]
        with self.db.write() as conn:
            conn.execute(_ADVANCE_WATERMARK, params)

    def _advance_unnest(self) -> TextClause:
        """``_ADVANCE_WATERMARK`` over arrays: one statement, not N executions."""
        if self._advance_sql is None:
            table = self.store.table_name(schedules)
            rows = self.db.dialect.array_rows(
                "u",
                (
                    ("names", "text", "name"),
                    ("ticks", "bigint", "tick_ms"),
                    ("workflow_ids", "text", "workflow_id"),
                ),
            )
            self._advance_sql = text(
                f'UPDATE {table} AS s SET "last_tick_epoch_ms" = u.tick_ms, '
                '"last_workflow_id" = coalesce(u.workflow_id, s."last_workflow_id"), '
                f'"updated_at" = :now FROM {rows} '
                'WHERE s."name" = u.name AND (s."last_tick_epoch_ms" IS NULL '
                'OR s."last_tick_epoch_ms" < u.tick_ms)'
            )
        return self._advance_sql

    def set_last_workflow(self, name: str, workflow_id: str) -> None:
        with self.db.write() as conn:
            conn.execute(
                update(schedules)
                .where(sc.name == name)
                .values(last_workflow_id=workflow_id, updated_at=self.store.now_ms())
            )

    def release_held(
        self,
        name: str,
        target_queue: str | None,
        executor_id: str,
        app_version: str,
        still_running: Callable[[str, TickState], bool],
    ) -> WorkflowRow | None:
        """Start the oldest held tick unless ``still_running(name, state)`` says the schedule's
        previous run still goes.

        One transaction, with the schedule row locked (SQLite serializes writers instead),
        so two processes never release two ticks of one schedule at once. With ``target_queue``
        the tick moves to that queue; otherwise it becomes PENDING on ``executor_id``.
        """
        now = self.store.now_ms()
        with self.db.write() as conn:
            # SQLite leaves FOR UPDATE out (its writers are serialized).
            query = _tick_state_query().where(sc.name == name).with_for_update(of=schedules)
            last = conn.execute(query).first()
            if last is None or still_running(name, _tick_state(last)):
                return None
            oldest = conn.execute(
                select(ws.workflow_uuid)
                .where(ws.queue_name == hold_queue_name(name), ws.status == "ENQUEUED")
                .order_by(ws.workflow_uuid)
                .limit(1)
            ).scalar()
            if oldest is None:
                return None
            conn.execute(
                update(workflow_status)
                .where(ws.workflow_uuid == oldest)
                .values(**release_values(target_queue, executor_id, app_version, now))
            )
            conn.execute(
                update(schedules)
                .where(sc.name == name)
                .values(last_workflow_id=oldest, updated_at=now)
            )
            row = conn.execute(select(workflow_status).where(ws.workflow_uuid == oldest)).one()
        return WorkflowRow.from_row(row)

    def insert_enqueued(self, rows: Sequence[WorkflowRow]) -> list[str]:
        """Insert ENQUEUED rows in one transaction; returns the IDs that were new."""
        created: list[str] = []
        with self.db.write() as conn:
            for row in rows:
                inserted = conn.execute(
                    self.db.dialect.insert(workflow_status)
                    .values(**row.values())
                    .on_conflict_do_nothing(index_elements=["workflow_uuid"])
                    .returning(ws.workflow_uuid)
                ).first()
                if inserted is not None:
                    created.append(row.workflow_uuid)
        return created


def _tick_state_query() -> Any:
    """Each schedule with its previous run and that run's executor: one round trip, however many
    schedules (LEFT JOINs: a schedule may have no run yet, a run's executor may have no row)."""
    return select(
        sc.name,
        sc.paused,
        sc.last_tick_epoch_ms,
        sc.last_workflow_id,
        ws.status,
        ws.queue_name,
        ws.executor_id,
        ws.application_version,
        ex.application_version,
        ex.last_heartbeat_ms,
    ).select_from(
        schedules.outerjoin(workflow_status, ws.workflow_uuid == sc.last_workflow_id).outerjoin(
            executors, ex.executor_id == ws.executor_id
        )
    )


def _tick_state(row: Any) -> TickState:
    return TickState(bool(row[1]), *row[2:])


def release_values(
    target_queue: str | None, executor_id: str, app_version: str, now: int
) -> dict[str, Any]:
    if target_queue is not None:
        return {"queue_name": target_queue, "updated_at": now}
    return {
        "status": "PENDING",
        "queue_name": None,
        "executor_id": executor_id,
        "application_version": app_version,
        "recovery_attempts": 1,
        "started_at_epoch_ms": now,
        "updated_at": now,
    }
