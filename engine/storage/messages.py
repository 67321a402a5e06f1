"""Messages, events and streams in the system database.

Operations made from a workflow commit together with the step record that checkpoints them, so a
crash can neither lose nor repeat them. On PostgreSQL every write also ``pg_notify``s a wake-up
key in the same transaction; the notification is delivered only if the write commits.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Connection, delete, func, select

from engine.error import DBOSInvalidArgumentError, DBOSNonExistentWorkflowError
from engine.storage.schema import (
    notifications,
    operation_outputs,
    streams,
    workflow_events,
    workflow_status,
)
from engine.storage.store import StepRecord, SystemStore

NO_TOPIC = "__null__topic__"
WAKEUP_CHANNEL = "keeptime_wakeup"
SEND_PSEUDO_WORKFLOW = "DBOS.send"

T = TypeVar("T")


class _StepTaken(Exception):
    """Another execution of the workflow recorded this step first: roll back our writes."""


class MessageStore:
    def __init__(self, store: SystemStore) -> None:
        self.store = store
        self.db = store.db
        self._scope = self.db.schema or ""

    # -- wake-up keys -----------------------------------------------------------------------------

    def message_key(self, destination_id: str, topic: str | None) -> str:
        return self._key("msg", destination_id, topic or NO_TOPIC)

    def event_key(self, workflow_id: str, key: str) -> str:
        return self._key("event", workflow_id, key)

    def stream_key(self, workflow_id: str, key: str) -> str:
        return self._key("stream", workflow_id, key)

    def _key(self, kind: str, workflow_id: str, name: str) -> str:
        # A fixed-size digest fits NOTIFY's payload limit whatever the IDs' length.
        raw = "\x00".join((self._scope, kind, workflow_id, name)).encode()
        return hashlib.blake2b(raw, digest_size=16).hexdigest()

    def _announce(self, conn: Connection, key: str) -> None:
        if not self.db.is_sqlite:
            conn.execute(select(func.pg_notify(WAKEUP_CHANNEL, key)))

    # -- steps that write in the same transaction -------------------------------------------------

    def record_with(
        self,
        workflow_id: str,
        function_id: int,
        name: str,
        action: Callable[[Connection], T],
        encode: Callable[[T], str | None],
    ) -> tuple[T | None, StepRecord | None]:
        """Run ``action`` and checkpoint its result as step ``function_id``, in one transaction.

        Returns (value, None), or (None, earlier) when another execution of the workflow recorded
        this step first; then ``action``'s writes are rolled back.
        """
        try:
            with self.db.write() as conn:
                value = action(conn)
                now = self.store.now_ms()
                step = {
                    "workflow_uuid": workflow_id,
                    "function_id": function_id,
                    "function_name": name,
                    "output": encode(value),
                    "error": None,
                    "child_workflow_id": None,
                    "started_at_epoch_ms": now,
                    "completed_at_epoch_ms": now,
                }
                key = ("workflow_uuid", "function_id")
                if not self.store.insert_ignoring_conflict(
                    conn, operation_outputs, step, key, "function_id"
                ):
                    raise _StepTaken
                return value, None
        except _StepTaken:
            earlier = self.store.get_step(workflow_id, function_id)
            assert earlier is not None
            return None, earlier

    # -- messages ---------------------------------------------------------------------------------

    def send(
        self,
        conn: Connection,
        destination_id: str,
        topic: str | None,
        message: str,
        message_id: str | None,
    ) -> None:
        """Queue a message; a ``message_id`` already used makes this a no-op (idempotency)."""
        exists = conn.execute(
            select(workflow_status.c.workflow_uuid).where(
                workflow_status.c.workflow_uuid == destination_id
            )
        ).first()
        if exists is None:
            raise DBOSNonExistentWorkflowError(
                f"cannot send to workflow {destination_id!r}: no workflow with that ID exists "
                "(start the workflow first, or check the ID)"
            )
        seq = conn.execute(
            select(func.coalesce(func.max(notifications.c.seq), 0)).where(
                notifications.c.destination_uuid == destination_id
            )
        ).scalar_one()
        row = {
            "message_id": message_id or str(uuid.uuid4()),
            "destination_uuid": destination_id,
            "topic": topic or NO_TOPIC,
            "message": message,
            "created_at_epoch_ms": self.store.now_ms(),
            "seq": int(seq) + 1,
        }
        self.store.insert_ignoring_conflict(conn, notifications, row, ("message_id",), "message_id")
        self._announce(conn, self.message_key(destination_id, topic))

    def send_now(
        self, destination_id: str, topic: str | None, message: str, idempotency_key: str | None
    ) -> bool:
        """Send from outside a workflow; False when ``idempotency_key`` was used before.

        The key is claimed as a workflow ID (a finished pseudo-workflow named ``DBOS.send``) in
        the same transaction, so it still deduplicates after the message has been consumed.
        """
        with self.db.write() as conn:
            if idempotency_key is not None and not self._claim_id(conn, idempotency_key):
                return False
            self.send(conn, destination_id, topic, message, None)
            return True

    def _claim_id(self, conn: Connection, workflow_id: str) -> bool:
        now = self.store.now_ms()
        inserted = conn.execute(
            self.store._insert(workflow_status)
            .values(
                workflow_uuid=workflow_id,
                status="SUCCESS",
                name=SEND_PSEUDO_WORKFLOW,
                created_at=now,
                updated_at=now,
                recovery_attempts=0,
            )
            .on_conflict_do_nothing(index_elements=["workflow_uuid"])
            .returning(workflow_status.c.workflow_uuid)
        ).first()
        return inserted is not None

    def take_message(self, conn: Connection, destination_id: str, topic: str | None) -> str | None:
        """Remove and return the oldest message of this topic queue, or None."""
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
            found = conn.execute(
                select(notifications.c.message_id)
                .where(
                    notifications.c.destination_uuid == destination_id,
                    notifications.c.topic == (topic or NO_TOPIC),
                )
                .limit(1)
            ).first()
        return found is not None

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
        self._announce(conn, self.event_key(workflow_id, key))

    def set_event_now(self, workflow_id: str, key: str, value: str) -> None:
        with self.db.write() as conn:
            self.set_event(conn, workflow_id, key, value)

    def event_in(self, conn: Connection, workflow_id: str, key: str) -> str | None:
        value = conn.execute(
            select(workflow_events.c.value).where(
                workflow_events.c.workflow_uuid == workflow_id, workflow_events.c.key == key
            )
        ).scalar()
        return None if value is None else str(value)

    def get_event(self, workflow_id: str, key: str) -> str | None:
        with self.db.read() as conn:
            return self.event_in(conn, workflow_id, key)

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
        """Append a value or the close marker. Closing again is a no-op; writing after, an error."""
        last = conn.execute(
            select(streams.c.offset, streams.c.closed)
            .where(streams.c.workflow_uuid == workflow_id, streams.c.key == key)
            .order_by(streams.c.offset.desc())
            .limit(1)
        ).first()
        if last is not None and last[1]:
            if closed:
                return
            raise DBOSInvalidArgumentError(
                f"stream {key!r} of workflow {workflow_id!r} is closed; nothing more can be "
                "written to it (write to another key)"
            )
        conn.execute(
            streams.insert().values(
                workflow_uuid=workflow_id,
                key=key,
                offset=0 if last is None else int(last[0]) + 1,
                value=value,
                closed=1 if closed else 0,
            )
        )
        self._announce(conn, self.stream_key(workflow_id, key))

    def append_stream_now(
        self, workflow_id: str, key: str, value: str | None, closed: bool
    ) -> None:
        with self.db.write() as conn:
            self.append_stream(conn, workflow_id, key, value, closed)

    def read_stream(
        self, workflow_id: str, key: str, from_offset: int
    ) -> list[tuple[int, str | None, bool]]:
        """(offset, value, is_close_marker) rows from ``from_offset`` on, in order."""
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
