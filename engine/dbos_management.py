"""``DBOS``'s workflow management and schedule registry methods (a part of the ``DBOS`` facade)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

from engine import schedules_api as sa
from engine.error import DBOSInvalidArgumentError
from engine.handles import WorkflowHandle, WorkflowHandleAsync
from engine.runtime import management
from engine.runtime.current import current_runtime as _runtime
from engine.runtime.registry import RegisteredFunction, qualified_name
from engine.runtime.schedule_admin import ScheduleDefinition
from engine.status import StepInfo, WorkflowStatus


class ManagementMethods:
    """``DBOS.list_workflows`` and the other management methods, and the schedule registry;
    ``DBOS`` inherits them."""

    # -- management -------------------------------------------------------------------------------

    @classmethod
    def list_workflows(
        cls,
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
        """The ``WorkflowStatus`` of every workflow matching all the given filters, oldest first
        (``sort_desc``: newest first).

        ``status`` is one status name or a list; ``start_time`` and ``end_time`` are RFC 3339
        timestamps with an offset, compared with the creation time. ``load_input`` and
        ``load_output`` set to False skip decoding inputs, and outputs and errors. Bad filters raise
        DBOSInvalidArgumentError.
        """
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
        return management.list_workflows(_runtime(), flt, load_input, load_output)

    @classmethod
    def list_queued_workflows(
        cls,
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
        """Like ``list_workflows``, for the workflows currently on a queue (by default ENQUEUED or
        PENDING), optionally on ``queue_name`` only."""
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
        return management.list_workflows(_runtime(), flt, load_input)

    @classmethod
    def list_workflow_steps(cls, workflow_id: str) -> list[StepInfo]:
        """The recorded steps of the workflow, in ``function_id`` order; empty for an unknown ID."""
        return management.list_steps(_runtime(), workflow_id)

    @classmethod
    def get_workflow_status(cls, workflow_id: str) -> WorkflowStatus | None:
        """The workflow's ``WorkflowStatus``, or None if no workflow has this ID."""
        return management.status_of(_runtime(), workflow_id)

    @classmethod
    def cancel_workflow(cls, workflow_id: str) -> None:
        """Cancel the workflow and all its children: CANCELLED and off its queue.

        A running one stops at its next step (in another process, within about a second); a finished
        one is left as it is. Raises DBOSNonExistentWorkflowError for an unknown ID.
        """
        runtime = _runtime()
        management.require_row(runtime, workflow_id)
        runtime.cancel(workflow_id)

    @classmethod
    def resume_workflow(cls, workflow_id: str) -> WorkflowHandle[Any]:
        """Run a CANCELLED, MAX_RECOVERY_ATTEMPTS_EXCEEDED or ENQUEUED workflow now, in this
        process, from its last recorded step (an ENQUEUED one skips its queue); returns its
        handle.

        A PENDING or finished workflow is left as it is. Raises DBOSNonExistentWorkflowError for an
        unknown ID.
        """
        runtime = _runtime()
        return WorkflowHandle(runtime, management.resume(runtime, workflow_id))

    @classmethod
    def fork_workflow(
        cls, workflow_id: str, start_step: int, *, application_version: str | None = None
    ) -> WorkflowHandle[Any]:
        """Start a new workflow that copies the steps of ``workflow_id`` before ``start_step`` (a
        ``function_id`` from ``list_workflow_steps``) and runs the rest; returns its handle.

        The new ID comes from ``SetWorkflowID``, else a UUID. With ``application_version`` the fork
        is tagged with that version and waits for an executor of it, unless it is this process's.
        """
        runtime = _runtime()
        return WorkflowHandle(
            runtime, management.fork(runtime, workflow_id, start_step, application_version)
        )

    @classmethod
    def list_unrecoverable_workflows(cls) -> list[management.UnrecoverableWorkflow]:
        """Keeptime extension: the PENDING workflows of this executor and application version
        that this process cannot run, each with the reason (``.status``, ``.reason``).

        Recovery at launch (and a takeover) skips such a workflow with a warning and leaves it
        PENDING: its function is not registered in this process (code or config that defined
        it was removed), or its ``DBOSConfiguredInstance`` does not exist. Nothing resumes it
        until a process that has the code does; cancel it (``cancel_workflow``) to resolve it
        for good. Only this executor's work of this version: other executors recover their own,
        and work of other versions waits for an executor of its version.
        """
        return management.unrecoverable_workflows(_runtime())

    @classmethod
    def count_other_version_workflows(cls) -> dict[str, int]:
        """Keeptime extension: ``{application_version: count}`` of PENDING and ENQUEUED
        workflows tagged with another application version than this process's.

        This process neither recovers nor dequeues them (see "Workflow Versioning and
        Recovery"); an executor of their version does, or an operator cancels or forks them
        (``fork_workflow(..., application_version=DBOS.application_version)``). Ticks and
        debounce windows still held by the scheduler are not counted: releasing them gives them
        the releasing process's version. Reads every unfinished workflow: call it rarely (once
        after launch).
        """
        return management.other_version_counts(_runtime())

    @classmethod
    async def cancel_workflow_async(cls, workflow_id: str) -> None:
        """Async ``cancel_workflow``."""
        await asyncio.to_thread(cls.cancel_workflow, workflow_id)

    @classmethod
    async def resume_workflow_async(cls, workflow_id: str) -> WorkflowHandleAsync[Any]:
        """Async ``resume_workflow``; returns a ``WorkflowHandleAsync``."""
        runtime = _runtime()
        wf_id = await asyncio.to_thread(management.resume, runtime, workflow_id)
        return WorkflowHandleAsync(runtime, wf_id)

    @classmethod
    async def fork_workflow_async(
        cls, workflow_id: str, start_step: int, *, application_version: str | None = None
    ) -> WorkflowHandleAsync[Any]:
        """Async ``fork_workflow``; returns a ``WorkflowHandleAsync``."""
        runtime = _runtime()
        wf_id = await asyncio.to_thread(
            management.fork, runtime, workflow_id, start_step, application_version
        )
        return WorkflowHandleAsync(runtime, wf_id)

    # -- the schedule registry (engine/schedules_api.py; docs/scheduling.md) -----------------------

    @classmethod
    def create_schedule(
        cls,
        *,
        schedule_name: str,
        workflow_fn: Callable[..., Any],
        schedule: str,
        context: Any = None,
        automatic_backfill: bool = False,
        cron_timezone: str | None = None,
        queue_name: str | None = None,
        **options: Any,
    ) -> None:
        """Create a durable cron schedule running ``workflow_fn(scheduled_time, context)`` at
        each tick; every launched process installs it, also after a restart. Keeptime options:
        ``catchup``, ``catchup_window_seconds``, ``max_catchup``, ``overlap``,
        ``jitter_seconds``, ``timeout_seconds``. Raises
        DBOSInvalidArgumentError if the name exists, the function is no workflow or an option is
        invalid (DBOSInvalidCrontabError for a bad cron)."""
        options.update(context=context, automatic_backfill=automatic_backfill)
        options.update(cron_timezone=cron_timezone, queue_name=queue_name)
        sa.create(_schedule(schedule_name, workflow_fn, schedule, options))

    @classmethod
    async def create_schedule_async(cls, **kwargs: Any) -> None:
        """Async ``create_schedule`` (same keyword arguments)."""
        await asyncio.to_thread(lambda: cls.create_schedule(**kwargs))

    @classmethod
    def list_schedules(
        cls,
        *,
        status: str | list[str] | None = None,
        workflow_name: str | list[str] | None = None,
        schedule_name_prefix: str | list[str] | None = None,
    ) -> list[sa.WorkflowSchedule]:
        """Every stored schedule (``@DBOS.scheduled`` ones included) as ``WorkflowSchedule``
        dicts, filtered by status (``ACTIVE``/``PAUSED``), workflow name or name prefix."""
        return sa.list_schedules(sa.running_admin(), status, workflow_name, schedule_name_prefix)

    @classmethod
    async def list_schedules_async(cls, **kwargs: Any) -> list[sa.WorkflowSchedule]:
        """Async ``list_schedules``."""
        return await asyncio.to_thread(lambda: cls.list_schedules(**kwargs))

    @classmethod
    def get_schedule(cls, name: str) -> sa.WorkflowSchedule | None:
        """The schedule named ``name`` as a ``WorkflowSchedule``, or None if there is none."""
        return sa.get_schedule(sa.running_admin(), name)

    @classmethod
    async def get_schedule_async(cls, name: str) -> sa.WorkflowSchedule | None:
        """Async ``get_schedule``."""
        return await asyncio.to_thread(cls.get_schedule, name)

    @classmethod
    def delete_schedule(cls, name: str) -> None:
        """Delete a schedule: it stops firing. No-op if it does not exist; raises
        DBOSInvalidArgumentError for a ``@DBOS.scheduled`` one."""
        sa.delete(name)

    @classmethod
    async def delete_schedule_async(cls, name: str) -> None:
        """Async ``delete_schedule``."""
        await asyncio.to_thread(cls.delete_schedule, name)

    @classmethod
    def pause_schedule(cls, name: str) -> None:
        """Durably pause a schedule: it does not fire until resumed. Raises
        DBOSInvalidArgumentError for an unknown name."""
        sa.pause(name)

    @classmethod
    async def pause_schedule_async(cls, name: str) -> None:
        """Async ``pause_schedule``."""
        await asyncio.to_thread(cls.pause_schedule, name)

    @classmethod
    def resume_schedule(cls, name: str) -> None:
        """Resume a paused schedule; ticks that came due while paused do not run."""
        sa.resume(name)

    @classmethod
    async def resume_schedule_async(cls, name: str) -> None:
        """Async ``resume_schedule``."""
        await asyncio.to_thread(cls.resume_schedule, name)

    @classmethod
    def apply_schedules(
        cls, schedules: list[sa.ScheduleInput] | list[dict[str, Any]], **keeptime: Any
    ) -> None:
        """Create or replace these schedules in one write (others are kept). Every entry is
        validated first: if one is invalid, nothing changes. Keeptime's keyword options are
        described in docs/scheduling.md."""
        sa.apply_entries(schedules, _schedule_from_entry, **keeptime)

    @classmethod
    async def apply_schedules_async(
        cls, schedules: list[sa.ScheduleInput], **keeptime: Any
    ) -> None:
        """Async ``apply_schedules``."""
        await asyncio.to_thread(lambda: cls.apply_schedules(schedules, **keeptime))

    @classmethod
    def backfill_schedule(
        cls, schedule_name: str, start: datetime, end: datetime
    ) -> list[WorkflowHandle[None]]:
        """Enqueue each tick strictly between ``start`` and ``end`` under its tick ID (ticks that
        already ran run nothing new); returns their handles."""
        ids = sa.backfill(schedule_name, start, end)
        return [WorkflowHandle(_runtime(), i) for i in ids]

    @classmethod
    async def backfill_schedule_async(
        cls, schedule_name: str, start: datetime, end: datetime
    ) -> list[WorkflowHandleAsync[None]]:
        """Async ``backfill_schedule``."""
        ids = await asyncio.to_thread(sa.backfill, schedule_name, start, end)
        return [WorkflowHandleAsync(_runtime(), i) for i in ids]

    @classmethod
    def trigger_schedule(cls, schedule_name: str) -> WorkflowHandle[None]:
        """Run the schedule's workflow once now, outside its ticks; returns its handle."""
        return WorkflowHandle(_runtime(), sa.trigger(schedule_name))

    @classmethod
    async def trigger_schedule_async(cls, schedule_name: str) -> WorkflowHandleAsync[None]:
        """Async ``trigger_schedule``."""
        return WorkflowHandleAsync(_runtime(), await asyncio.to_thread(sa.trigger, schedule_name))


def _scheduled_workflow_name(func: Callable[..., Any]) -> str:
    fn = getattr(func, "__keeptime_function__", None)
    if not isinstance(fn, RegisteredFunction) or fn.kind != "workflow":
        raise DBOSInvalidArgumentError(
            f"{qualified_name(func)!r} cannot be scheduled: pass a function decorated with "
            "@DBOS.workflow()"
        )
    return fn.name


def _schedule(
    name: str, func: Callable[..., Any], cron: str, options: dict[str, Any]
) -> ScheduleDefinition:
    return sa.build_from_fn(
        _scheduled_workflow_name, schedule_name=name, workflow_fn=func, schedule=cron, **options
    )


def _schedule_from_entry(
    *, schedule_name: str, workflow_fn: Callable[..., Any], schedule: str, **options: Any
) -> ScheduleDefinition:
    return _schedule(schedule_name, workflow_fn, schedule, options)
