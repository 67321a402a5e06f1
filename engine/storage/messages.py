"""Messages, events and streams in the system database.

Operations made from a workflow commit together with the step record that checkpoints them, so a
crash can neither lose nor repeat them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, delete, func, select

from engine.error import DBOSNonExistentWorkflowError
from engine.storage.schema import (
    notifications,
    operation_outputs,
    streams,
    workflow_events,
    workflow_status,
)
from engine.storage.store import StepRecord, SystemStore

NO_TOPIC = "__null__topic__"


class MessageStore:
    def __init__(self, store: SystemStore) -> None:
        self.store = store
        self.db = store.db

    # -- steps that write in the same transaction -------------------------------------------------

    def record_with(
        self,
        workflow_id: str,
        function_id: int,
        name: str,
        action: Callable[[Connection], Any],
        encode: Callable[[Any], str | None],
    ) -> tuple[bool, Any, StepRecord | None]:
        """Run ``action`` and checkpoint its result in one transaction.

        Returns (ran, value, earlier): when an earlier execution already recorded this step,
        nothing runs and its record is returned instead.
        """
        with self.db.write() as conn:
            earlier = conn.execute(
                select(operation_outputs).where(
                    operation_outputs.c.workflow_uuid == workflow_id,
                    operation_outputs.c.function_id == function_id,
                )
            ).first()
            if earlier is not None:
                return False, None, StepRecord.from_row(earlier)
            value = action(conn)
            now = self.store.now_ms()
            conn.execute(
                operation_outputs.insert().values(
                    workflow_uuid=workflow_id,
                    function_id=function_id,
                    function_name=name,
                    output=encode(value),
                    error=None,
                    child_workflow_id=None,
                    started_at_epoch_ms=now,
                    completed_at_epoch_ms=now,
                )
            )
            return True, value, None

    # -- messages ---------------------------------------------------------------------------------

    def send(
        self,
        conn: Connection,
        destination_id: str,
        topic: str | None,
        message: str,
        message_id: str | None,
    ) -> None:
        exists = conn.execute(
            select(workflow_status.c.workflow_uuid).where(
                workflow_status.c.workflow_uuid == destination_id
            )
        ).first()
        if exists is None:
            raise DBOSNonExistentWorkflowError(
                f"cannot send to workflow {destination_id!r}: no workflow with that ID exists"
            )
        seq = conn.execute(
            select(func.coalesce(func.max(notifications.c.seq), 0)).where(
                notifications.c.destination_uuid == destination_id
            )
        ).scalar_one()
        stmt = self.store._insert(notifications).values(
            message_id=message_id or str(uuid.uuid4()),
            destination_uuid=destination_id,
            topic=topic or NO_TOPIC,
            message=message,
            created_at_epoch_ms=self.store.now_ms(),
            seq=int(seq) + 1,
        )
        conn.execute(stmt.on_conflict_do_nothing())

    def send_now(
        self, destination_id: str, topic: str | None, message: str, message_id: str | None
    ) -> None:
        with self.db.write() as conn:
            self.send(conn, destination_id, topic, message, message_id)

    def take_message(self, conn: Connection, destination_id: str, topic: str | None) -> str | None:
        row = conn.execute(
            select(notifications.c.message_id, notifications.c.message)
            .where(
                notifications.c.destination_uuid == destination_id,
                notifications.c.topic == (topic or NO_TOPIC),
            )
            .order_by(
                notifications.c.seq, notifications.c.created_at_epoch_ms, notifications.c.message_id
            )
            .limit(1)
        ).first()
        if row is None:
            return None
        conn.execute(delete(notifications).where(notifications.c.message_id == row[0]))
        return str(row[1])

    def has_message(self, destination_id: str, topic: str | None) -> bool:
        with self.db.read() as conn:
            return (
                conn.execute(
                    select(notifications.c.message_id)
                    .where(
                        notifications.c.destination_uuid == destination_id,
                        notifications.c.topic == (topic or NO_TOPIC),
                    )
                    .limit(1)
                ).first()
                is not None
            )

    # -- events -----------------------------------------------------------------------------------

    def set_event(self, conn: Connection, workflow_id: str, key: str, value: str) -> None:
        stmt = self.store._insert(workflow_events).values(
            workflow_uuid=workflow_id, key=key, value=value
        )
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["workflow_uuid", "key"], set_={"value": value}
            )
        )

    def set_event_now(self, workflow_id: str, key: str, value: str) -> None:
        with self.db.write() as conn:
            self.set_event(conn, workflow_id, key, value)

    def get_event(self, workflow_id: str, key: str) -> str | None:
        with self.db.read() as conn:
            value = conn.execute(
                select(workflow_events.c.value).where(
                    workflow_events.c.workflow_uuid == workflow_id, workflow_events.c.key == key
                )
            ).scalar()
        return None if value is None else str(value)

    def all_events(self, workflow_id: str) -> dict[str, str]:
        with self.db.read() as conn:
            rows = conn.execute(
                select(workflow_events.c.key, workflow_events.c.value).where(
                    workflow_events.c.workflow_uuid == workflow_id
                )
            ).all()
        return {str(k): str(v) for k, v in rows}

    # -- streams ----------------------------------------------------------------------------------

    def append_stream(
        self, conn: Connection, workflow_id: str, key: str, value: str | None, closed: bool
    ) -> None:
        last = conn.execute(
            select(func.max(streams.c.offset)).where(
                streams.c.workflow_uuid == workflow_id, streams.c.key == key
            )
        ).scalar()
        already_closed = conn.execute(
            select(streams.c.offset).where(
                streams.c.workflow_uuid == workflow_id, streams.c.key == key, streams.c.closed == 1
            )
        ).first()
        if already_closed is not None:
            if closed:
                return
            from engine.error import DBOSInvalidArgumentError

            raise DBOSInvalidArgumentError(f"stream {key!r} of workflow {workflow_id!r} is closed")
        conn.execute(
            streams.insert().values(
                workflow_uuid=workflow_id,
                key=key,
                offset=0 if last is None else int(last) + 1,
                value=value,
                closed=1 if closed else 0,
            )
        )

    def append_stream_now(
        self, workflow_id: str, key: str, value: str | None, closed: bool
    ) -> None:
        with self.db.write() as conn:
            self.append_stream(conn, workflow_id, key, value, closed)

    def read_stream(
        self, workflow_id: str, key: str, from_offset: int
    ) -> list[tuple[int, str | None, bool]]:
        with self.db.read() as conn:
            rows = conn.execute(
                select(streams.c.offset, streams.c.value, streams.c.closed)
                .where(
                    streams.c.workflow_uuid == workflow_id,
                    streams.c.key == key,
                    streams.c.offset >= from_offset,
                )
                .order_by(streams.c.offset)
            ).all()
        return [(int(o), v, bool(c)) for o, v, c in rows]
