"""DBOSClient: manage and feed workflows from a process that does not run them."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Generator
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypedDict

from sqlalchemy import Engine

from engine import schedules_api as sa
from engine.error import DBOSInvalidArgumentError
from engine.handles import WorkflowHandle, WorkflowHandleAsync
from engine.runtime import management, messaging, results
from engine.runtime.context import SetWorkflowID
from engine.runtime.internal_queue import INTERNAL_QUEUE_NAME
from engine.runtime.message_waits import Messaging, check_in_own_runtime
from engine.runtime.schedule_admin import ScheduleAdmin
from engine.serialization import Codec, PickleSerializer, Serializer
from engine.status import StepInfo, WorkflowStatus
from engine.storage.database import Database, parse_database_url
from engine.storage.migrations import migrate_system_database
from engine.storage.store import SystemStore, WorkflowRow

if TYPE_CHECKING:
    pass


class EnqueueOptions(TypedDict, total=False):
    """What ``DBOSClient.enqueue`` needs to know about the workflow, as the client has no code.

    ``queue_name`` and ``workflow_name`` (the registered name: by default the function's
    ``__qualname__``) are required. ``workflow_id``, ``workflow_timeout`` (seconds, from dequeue),
    ``deduplication_id``, ``priority`` and ``queue_partition_key`` are those of ``SetWorkflowID``,
    ``SetWorkflowTimeout`` and ``SetEnqueueOptions``; ``app_version`` tags the workflow for the
    executors of that version.
    """

    queue_name: str
    workflow_name: str
    workflow_id: str
    app_version: str
    workflow_timeout: float
    deduplication_id: str
    priority: int
    queue_partition_key: str


class DBOSClient:
    """Manages and feeds an application's workflows through its system database, from a process that
    runs none (an API server, a script, the daemon).

    ``system_database_url`` (or ``database_url``) is the application's system database; it is
    migrated when the client is created. ``serializer`` must be the application's (default: pickle).
    Call ``destroy()`` when done.
    """

    def __init__(
        self,
        system_database_url: str | None = None,
        *,
        database_url: str | None = None,
        system_database_engine: Engine | None = None,
        dbos_system_schema: str = "dbos",
        serializer: Serializer | None = None,
    ) -> None:
        url = system_database_url or database_url
        if url is None:
            raise DBOSInvalidArgumentError(
                "DBOSClient needs system_database_url (the application's system database)"
            )
        self.clock = time.time
        self.db = Database(
            parse_database_url(url), schema=dbos_system_schema, engine=system_database_engine
        )
        migrate_system_database(self.db)
        self.store = SystemStore(self.db, self.now_ms)
        self.codec = Codec(serializer or PickleSerializer())
        self.stopping = threading.Event()
        # Waits for messages and events from the client; inside a workflow, the workflow's own
        # runtime decides whether it may go on.
        self.messaging = Messaging(self.store, self.stopping, check_in_own_runtime)

    def now_ms(self) -> int:
        """The client's clock in epoch milliseconds. Keeptime: read by the storage and messaging
        helpers the client shares with the runtime."""
        return int(self.clock() * 1000)

    def destroy(self) -> None:
        """Close the client's database connections and end its waits."""
        self.stopping.set()
        self.db.dispose()

    def wait_result(self, workflow_id: str, timeout: float | None = None) -> Any:
        """Block until the workflow ends and return its result or raise its error (what the client's
        handles call).

        Raises TimeoutError if ``timeout`` seconds pass first, and DBOSNonExistentWorkflowError for
        an unknown ID.
        """
        results.wait_done(self.store, workflow_id, self.stopping, timeout=timeout)
        return results.stored_outcome(self.store, self.codec, workflow_id)

    # -- enqueueing --------------------------------------------------------------------------------

    def enqueue(self, options: EnqueueOptions, *args: Any, **kwargs: Any) -> WorkflowHandle[Any]:
        """Enqueue the workflow named in ``options`` with ``args`` and ``kwargs``; returns its
        handle. An executor serving the queue runs it.

        Raises DBOSInvalidArgumentError for a missing name or a bad ``workflow_timeout``, and
        DBOSQueueDeduplicatedError if the deduplication ID is in use on the queue.
        """
        row = self._enqueue_row(options, args, kwargs)
        self.store.insert_workflow(row)
        return WorkflowHandle(self, row.workflow_uuid)

    async def enqueue_async(
        self, options: EnqueueOptions, *args: Any, **kwargs: Any
    ) -> WorkflowHandleAsync[Any]:
        """Async ``enqueue``; returns a ``WorkflowHandleAsync``."""
        handle = await asyncio.to_thread(lambda: self.enqueue(options, *args, **kwargs))
        return WorkflowHandleAsync(self, handle.workflow_id)

    def _enqueue_row(
        self, options: EnqueueOptions, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> WorkflowRow:
        queue_name = options.get("queue_name")
        workflow_name = options.get("workflow_name")
        if not queue_name or not workflow_name:
            raise DBOSInvalidArgumentError(
                "EnqueueOptions needs 'queue_name' and 'workflow_name' (the workflow's "
                "registered name, e.g. its function's qualified name)"
            )
        timeout = options.get("workflow_timeout")
        if timeout is not None and (not isinstance(timeout, int | float) or timeout <= 0):
            raise DBOSInvalidArgumentError(f"workflow_timeout must be > 0 seconds, got {timeout!r}")
        now = self.now_ms()
        return WorkflowRow(
            workflow_uuid=options.get("workflow_id") or str(uuid.uuid4()),
            status="ENQUEUED",
            name=workflow_name,
            inputs=self.codec.encode_inputs(workflow_name, args, kwargs),
            application_version=options.get("app_version"),
            created_at=now,
            updated_at=now,
            queue_name=queue_name,
            queue_partition_key=options.get("queue_partition_key"),
            deduplication_id=options.get("deduplication_id"),
            priority=options.get("priority"),
            timeout_ms=int(timeout * 1000) if timeout is not None else None,
        )

    # -- handles and messages ----------------------------------------------------------------------

    def retrieve_workflow(self, workflow_id: str) -> WorkflowHandle[Any]:
        """A handle to the workflow ``workflow_id``; raises DBOSNonExistentWorkflowError if it does
        not exist."""
        management.require_row(self, workflow_id)
        return WorkflowHandle(self, workflow_id)

    async def retrieve_workflow_async(self, workflow_id: str) -> WorkflowHandleAsync[Any]:
        """Async ``retrieve_workflow``; returns a ``WorkflowHandleAsync``."""
        await asyncio.to_thread(management.require_row, self, workflow_id)
        return WorkflowHandleAsync(self, workflow_id)

    def send(
        self,
        destination_id: str,
        message: Any,
        topic: str | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        """Send ``message`` to the workflow ``destination_id`` under ``topic`` (see ``DBOS.send``).

        With ``idempotency_key`` the message is sent exactly once per key.
        """
        if idempotency_key is None:
            messaging.send(self, destination_id, message, topic)
            return
        with SetWorkflowID(idempotency_key):
            messaging.send(self, destination_id, message, topic)

    def get_event(self, workflow_id: str, key: str, timeout_seconds: float = 60) -> Any:
        """The latest value of event ``key`` of workflow ``workflow_id``, waiting up to
        ``timeout_seconds``; None on timeout."""
        return messaging.get_event(self, workflow_id, key, timeout_seconds)

    def read_stream(self, workflow_id: str, key: str) -> Generator[Any, Any, None]:
        """Yield the values of stream ``key`` of workflow ``workflow_id`` until it is closed or the
        workflow ends (see ``DBOS.read_stream``)."""
        return messaging.read_stream(self, workflow_id, key)

    # -- management --------------------------------------------------------------------------------

    def list_workflows(
        self,
        *,
        workflow_ids: list[str] | None = None,
        status: str | list[str] | None = None,
        start_time: str | None = None,
        end_time: str | None = None,
        name: str | None = None,
        app_version: str | None = None,
        user: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
        sort_desc: bool = False,
        workflow_id_prefix: str | None = None,
        load_input: bool = True,
        load_output: bool = True,
    ) -> list[WorkflowStatus]:
        """``DBOS.list_workflows``, from the client."""
        flt = management.workflow_filter(
            workflow_ids=workflow_ids,
            status=status,
            start_time=start_time,
            end_time=end_time,
            name=name,
            app_version=app_version,
            user=user,
            limit=limit,
            offset=offset,
            sort_desc=sort_desc,
            workflow_id_prefix=workflow_id_prefix,
        )
        return management.list_workflows(self, flt, load_input, load_output)

    def list_queued_workflows(
        self,
        *,
        queue_name: str | None = None,
        status: str | list[str] | None = None,
        start_time: str | None = None,
        end_time: str | None = None,
        name: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
        sort_desc: bool = False,
        load_input: bool = True,
    ) -> list[WorkflowStatus]:
        """``DBOS.list_queued_workflows``, from the client."""
        flt = management.queued_filter(
            queue_name=queue_name,
            status=status,
            start_time=start_time,
            end_time=end_time,
            name=name,
            limit=limit,
            offset=offset,
            sort_desc=sort_desc,
        )
        return management.list_workflows(self, flt, load_input)

    def list_workflow_steps(self, workflow_id: str) -> list[StepInfo]:
        """``DBOS.list_workflow_steps``, from the client."""
        return management.list_steps(self, workflow_id)

    def get_workflow_status(self, workflow_id: str) -> WorkflowStatus | None:
        """The workflow's ``WorkflowStatus``, or None if no workflow has this ID."""
        return management.status_of(self, workflow_id)

    def cancel_workflow(self, workflow_id: str) -> None:
        """Cancel the workflow and its children; running executors notice within about a second.
        Raises DBOSNonExistentWorkflowError for an unknown ID."""
        management.require_row(self, workflow_id)
        self.store.cancel_workflow_tree(workflow_id)

    def resume_workflow(self, workflow_id: str) -> WorkflowHandle[Any]:
        """Hand the workflow to any live executor through the internal queue (the client runs
        nothing itself); returns its handle. Raises DBOSNonExistentWorkflowError for an unknown
        ID."""
        management.require_row(self, workflow_id)
        self.store.requeue_workflow(workflow_id, INTERNAL_QUEUE_NAME)
        return WorkflowHandle(self, workflow_id)

    def fork_workflow(
        self, workflow_id: str, start_step: int, *, application_version: str | None = None
    ) -> WorkflowHandle[Any]:
        """``DBOS.fork_workflow``, from the client: the fork is ENQUEUED on the internal queue for
        any live executor to run."""
        new_id = management.fork_row(
            self, workflow_id, start_step, application_version, queue_name=INTERNAL_QUEUE_NAME
        )
        return WorkflowHandle(self, new_id)

    # -- the schedule registry (engine/schedules_api.py) -------------------------------------------
    # Writes go to the database only: a running DBOS installs a schedule created here at its next
    # registry change (docs/scheduling.md). Pause, resume, trigger and backfill act at once.

    def create_schedule(
        self,
        *,
        schedule_name: str,
        workflow_name: str,
        schedule: str,
        context: Any = None,
        automatic_backfill: bool = False,
        cron_timezone: str | None = None,
        queue_name: str | None = None,
        **options: Any,
    ) -> None:
        """``DBOS.create_schedule`` with the workflow named by ``workflow_name``; raises
        DBOSInvalidArgumentError if the name exists."""
        definition = sa.build(
            schedule_name=schedule_name,
            workflow_name=workflow_name,
            schedule=schedule,
            context=context,
            automatic_backfill=automatic_backfill,
            cron_timezone=cron_timezone,
            queue_name=queue_name,
            **options,
        )
        sa.client_create(self, definition)

    async def create_schedule_async(self, **kwargs: Any) -> None:
        """Async ``create_schedule``."""
        await asyncio.to_thread(lambda: self.create_schedule(**kwargs))

    def list_schedules(
        self,
        *,
        status: str | list[str] | None = None,
        workflow_name: str | list[str] | None = None,
        schedule_name_prefix: str | list[str] | None = None,
    ) -> list[sa.WorkflowSchedule]:
        """``DBOS.list_schedules``, from the client."""
        admin = ScheduleAdmin.from_client(self)
        return sa.list_schedules(admin, status, workflow_name, schedule_name_prefix)

    async def list_schedules_async(self, **kwargs: Any) -> list[sa.WorkflowSchedule]:
        """Async ``list_schedules``."""
        return await asyncio.to_thread(lambda: self.list_schedules(**kwargs))

    def get_schedule(self, name: str) -> sa.WorkflowSchedule | None:
        """``DBOS.get_schedule``, from the client."""
        return sa.get_schedule(ScheduleAdmin.from_client(self), name)

    async def get_schedule_async(self, name: str) -> sa.WorkflowSchedule | None:
        """Async ``get_schedule``."""
        return await asyncio.to_thread(self.get_schedule, name)

    def delete_schedule(self, name: str) -> None:
        """``DBOS.delete_schedule``, from the client (running schedulers drop it at their next
        schedule change)."""
        sa.client_delete(self, name)

    async def delete_schedule_async(self, name: str) -> None:
        """Async ``delete_schedule``."""
        await asyncio.to_thread(self.delete_schedule, name)

    def pause_schedule(self, name: str) -> None:
        """``DBOS.pause_schedule``, from the client: running schedulers see it at the next tick."""
        sa.pause(name, self)

    async def pause_schedule_async(self, name: str) -> None:
        """Async ``pause_schedule``."""
        await asyncio.to_thread(self.pause_schedule, name)

    def resume_schedule(self, name: str) -> None:
        """``DBOS.resume_schedule``, from the client."""
        sa.resume(name, self)

    async def resume_schedule_async(self, name: str) -> None:
        """Async ``resume_schedule``."""
        await asyncio.to_thread(self.resume_schedule, name)

    def apply_schedules(self, schedules: list[sa.ClientScheduleInput]) -> None:
        """``DBOS.apply_schedules`` with ``workflow_name`` instead of ``workflow_fn``: one write,
        nothing changes if an entry is invalid."""
        sa.client_apply(self, sa.from_entries(schedules, ("workflow_name",), sa.build))

    async def apply_schedules_async(self, schedules: list[sa.ClientScheduleInput]) -> None:
        """Async ``apply_schedules``."""
        await asyncio.to_thread(self.apply_schedules, schedules)

    def backfill_schedule(
        self, schedule_name: str, start: datetime, end: datetime
    ) -> list[WorkflowHandle[None]]:
        """``DBOS.backfill_schedule``, from the client: the runs are ENQUEUED for an executor."""
        ids = sa.backfill(schedule_name, start, end, self)
        return [WorkflowHandle(self, i) for i in ids]

    async def backfill_schedule_async(
        self, schedule_name: str, start: datetime, end: datetime
    ) -> list[WorkflowHandleAsync[None]]:
        """Async ``backfill_schedule``."""
        ids = await asyncio.to_thread(sa.backfill, schedule_name, start, end, self)
        return [WorkflowHandleAsync(self, i) for i in ids]

    def trigger_schedule(self, schedule_name: str) -> WorkflowHandle[None]:
        """``DBOS.trigger_schedule``, from the client: the run is ENQUEUED for an executor."""
        return WorkflowHandle(self, sa.trigger(schedule_name, self))

    async def trigger_schedule_async(self, schedule_name: str) -> WorkflowHandleAsync[None]:
        """Async ``trigger_schedule``."""
        workflow_id = await asyncio.to_thread(sa.trigger, schedule_name, self)
        return WorkflowHandleAsync(self, workflow_id)
