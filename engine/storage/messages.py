"""Messages, events and streams in the system database.

Operations made from a workflow commit together with the step record that checkpoints them, so a
crash can neither lose nor repeat them. On PostgreSQL every write also ``pg_notify``s a wake-up
key in the same transaction; the notification is delivered only if the write commits.

The hot statements (send, take, set_event) are SQL text built once per store: each is one round
trip, with the notification folded in on PostgreSQL, and SQLAlchemy need not compile them per call.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import Connection, TextClause, select, text

from engine.error import DBOSInvalidArgumentError, DBOSNonExistentWorkflowError
from engine.storage.schema import (
    notifications,
    operation_outputs,
    streams,
    workflow_events,
    workflow_status,
)
from engine.storage.store import StepRecord, SystemStore, retry_on_connection_loss

NO_TOPIC = "__null__topic__"
WAKEUP_CHANNEL = "keeptime_wakeup"
SEND_PSEUDO_WORKFLOW = "DBOS.send"

T = TypeVar("T")


class _StepTaken(Exception):
    """Another execution of the workflow recorded this step first: roll back our writes."""


@dataclass(frozen=True)
class WaitTry:
    """What one try of a waiting step (recv, or get_event in a workflow) came to."""

    done: bool  # the step is recorded: ``value`` by this try, or ``earlier`` by another execution
    value: str | None = None
    earlier: StepRecord | None = None
    earlier_deadline: StepRecord | None = None  # the deadline another execution recorded first


class MessageStore:
    def __init__(self, store: SystemStore) -> None:
        self.store = store
        self.db = store.db
        self._scope = self.db.schema or ""
        messages = store.table_name(notifications)
        events = store.table_name(workflow_events)
        workflows = store.table_name(workflow_status)
        self._send_sql = self._announcing(
            f"INSERT INTO {messages} "
            '("message_id", "destination_uuid", "topic", "message", "created_at_epoch_ms", "seq") '
            "SELECT :message_id, :destination, :topic, :message, :now, "
            f'(SELECT coalesce(max("seq"), 0) + 1 FROM {messages} '
            'WHERE "destination_uuid" = :destination) '
            f'FROM {workflows} WHERE "workflow_uuid" = :destination '
            'ON CONFLICT ("message_id") DO NOTHING RETURNING "message_id"'
        )
        self._take_sql = text(
            f'DELETE FROM {messages} WHERE "message_id" = ('
            f'SELECT "message_id" FROM {messages} '
            'WHERE "destination_uuid" = :destination AND "topic" = :topic '
            'ORDER BY "seq", "created_at_epoch_ms", "message_id" LIMIT 1) RETURNING "message"'
        )
        self._set_event_sql = self._announcing(
            f'INSERT INTO {events} ("workflow_uuid", "key", "value") '
            "VALUES (:workflow_id, :key, :value) "
            'ON CONFLICT ("workflow_uuid", "key") DO UPDATE SET "value" = excluded."value" '
            'RETURNING "key"'
        )

    def _announcing(self, write: str) -> TextClause:
        """``write`` (which returns a row per row written), announcing ``:wake_key`` where the
        dialect notifies, in the write's own statement."""
        return text(self.db.dialect.announcing(write, WAKEUP_CHANNEL))

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
        self.db.dialect.announce(conn, WAKEUP_CHANNEL, key)

    # -- steps that write in the same transaction -------------------------------------------------

    @retry_on_connection_loss
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
        this step first; then ``action``'s writes are rolled back. Safe to repeat (and retried
        while the database is unavailable): a repeat after a commit whose answer was lost finds
        its own step recorded, and rolls ``action`` back.
        """
        try:
            with self.db.write() as conn:
                value = action(conn)
                step = StepRecord(function_id, name, encode(value), None, None)
                if not self.store.insert_step(conn, workflow_id, step):
                    raise _StepTaken
                return value, None
        except _StepTaken:
            earlier = self.store.get_step(workflow_id, function_id)
            assert earlier is not None
            return None, earlier

    @retry_on_connection_loss
    def try_wait_step(
        self,
        workflow_id: str,
        function_id: int,
        name: str,
        find: Callable[[Connection], str | None],
        *,
        final: bool,
        deadline: StepRecord | None = None,
    ) -> WaitTry:
        """One try of a waiting step: run ``find`` and checkpoint what it found, in one transaction.

        When ``find`` finds nothing (and then it must have written nothing) and this is not the
        ``final`` try, the step is not recorded, so the wait goes on; ``deadline``, the wait's
        deadline step, is recorded instead. The first try of a wait thus probes, and either
        finishes the step or starts the wait, in one transaction. Safe to repeat, as
        ``record_with`` is (``find``'s writes are rolled back when the step exists).
        """
        try:
            with self.db.write() as conn:
                value = find(conn)
                if value is None and not final:
                    earlier_deadline = None
                    if deadline is not None and not self.store.insert_step(
                        conn, workflow_id, deadline
                    ):
                        earlier_deadline = self._step_in(conn, workflow_id, deadline.function_id)
                    return WaitTry(False, earlier_deadline=earlier_deadline)
                if not self.store.insert_step(
                    conn, workflow_id, StepRecord(function_id, name, value, None, None)
                ):
                    raise _StepTaken  # roll back what ``find`` took
                return WaitTry(True, value)
        except _StepTaken:
            earlier = self.store.get_step(workflow_id, function_id)
            assert earlier is not None
            return WaitTry(True, earlier=earlier)

    def _step_in(self, conn: Connection, workflow_id: str, function_id: int) -> StepRecord:
        row = conn.execute(
            select(operation_outputs).where(
                operation_outputs.c.workflow_uuid == workflow_id,
                operation_outputs.c.function_id == function_id,
            )
        ).one()
        return StepRecord.from_row(row)

    # -- messages ---------------------------------------------------------------------------------

    def send(
        self,
        conn: Connection,
        destination_id: str,
        topic: str | None,
        message: str,
        message_id: str | None,
    ) -> None:
        """Queue a message; a ``message_id`` already used makes this a no-op (idempotency).

        One statement checks the destination, numbers the message, inserts and notifies.
        """
        params = {
            "message_id": message_id or str(uuid.uuid4()),
            "destination": destination_id,
            "topic": topic or NO_TOPIC,
            "message": message,
            "now": self.store.now_ms(),
            "wake_key": self.message_key(destination_id, topic),
        }
        if conn.execute(self._send_sql, params).first() is not None:
            return
        # Nothing inserted: the message ID was used before, or the destination does not exist.
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

    def send_now(
        self, destination_id: str, topic: str | None, message: str, idempotency_key: str | None
    ) -> bool:
        """Send from outside a workflow; False when ``idempotency_key`` was used before.

        The key is claimed as a workflow ID (a finished pseudo-workflow named ``DBOS.send``) in
        the same transaction, so it still deduplicates after the message has been consumed.
        """
        # The message ID is chosen once, so a retry after a lost answer cannot send it twice.
        return self._send_once(destination_id, topic, message, idempotency_key, str(uuid.uuid4()))

    @retry_on_connection_loss
    def _send_once(
        self,
        destination_id: str,
        topic: str | None,
        message: str,
        idempotency_key: str | None,
        message_id: str,
    ) -> bool:
        with self.db.write() as conn:
            if idempotency_key is not None and not self._claim_id(conn, idempotency_key):
                return False
            self.send(conn, destination_id, topic, message, message_id)
            return True

    def _claim_id(self, conn: Connection, workflow_id: str) -> bool:
        now = self.store.now_ms()
        row = {
            "workflow_uuid": workflow_id,
            "status": "SUCCESS",
            "name": SEND_PSEUDO_WORKFLOW,
            "created_at": now,
            "updated_at": now,
            "recovery_attempts": 0,
        }
        key = ("workflow_uuid",)
        return self.store.insert_ignoring_conflict(conn, workflow_status, row, key, "workflow_uuid")

    def take_message(self, conn: Connection, destination_id: str, topic: str | None) -> str | None:
        """Remove and return the oldest message of this topic queue, or None.

        On PostgreSQL, a message another transaction took meanwhile is not returned (None).
        """
        params = {"destination": destination_id, "topic": topic or NO_TOPIC}
        value = conn.execute(self._take_sql, params).scalar()
        return None if value is None else str(value)

    @retry_on_connection_loss
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
        params = {
            "workflow_id": workflow_id,
            "key": key,
            "value": value,
            "wake_key": self.event_key(workflow_id, key),
        }
        conn.execute(self._set_event_sql, params).close()

    @retry_on_connection_loss
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

    @retry_on_connection_loss
    def get_event(self, workflow_id: str, key: str) -> str | None:
        with self.db.read() as conn:
            return self.event_in(conn, workflow_id, key)

    @retry_on_connection_loss
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

    @retry_on_connection_loss
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
