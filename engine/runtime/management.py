"""Workflow management: listing, status conversion, resume and fork; work recovery leaves."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from engine.core.deadlines import deadline_at
from engine.error import DBOSInvalidArgumentError, DBOSNonExistentWorkflowError
from engine.runtime.context import consume_workflow_id
from engine.runtime.registry import REGISTRY
from engine.serialization import Codec
from engine.status import ALL_STATUSES, StepInfo, WorkflowStatus
from engine.storage.debounce import DEBOUNCE_HOLD_QUEUE
from engine.storage.schedules import HOLD_QUEUE_PREFIX
from engine.storage.store import ListFilter, StepRecord, SystemStore, WorkflowRow

if TYPE_CHECKING:
    from engine.runtime.executor import Runtime


class SystemAccess(Protocol):
    """What managing workflows needs of a process: its store, codec and clock. A launched
    ``Runtime`` and a ``DBOSClient`` are both one, so DBOS, DBOSClient and the admin routes share
    every function here."""

    @property
    def store(self) -> SystemStore: ...

    @property
    def codec(self) -> Codec: ...

    def now_ms(self) -> int: ...


def to_status(
    row: WorkflowRow, codec: Codec, load_io: bool = True, *, load_output: bool | None = None
) -> WorkflowStatus:
    """The public status of a row. ``load_io`` decodes the inputs, and the output and error too
    unless ``load_output`` decides those separately (the spec's ``load_input``/``load_output``
    are independent: a caller may want results without the possibly large inputs)."""
    roles = json.loads(row.authenticated_roles) if row.authenticated_roles else None
    inputs: Any = None
    output: Any = None
    error: BaseException | None = None
    if load_io:
        inputs = codec.decode_inputs(row.inputs) if row.inputs is not None else None
    if load_io if load_output is None else load_output:
        output = codec.decode(row.output, f"the result of workflow {row.workflow_uuid!r}")
        error = codec.decode_error(row.error)
    return WorkflowStatus(
        workflow_id=row.workflow_uuid,
        status=row.status,
        name=row.name,
        recovery_attempts=row.recovery_attempts,
        class_name=row.class_name,
        config_name=row.config_name,
        authenticated_user=row.authenticated_user,
        assumed_role=row.assumed_role,
        authenticated_roles=roles,
        input=inputs,
        output=output,
        error=error,
        created_at=row.created_at,
        updated_at=row.updated_at,
        queue_name=row.queue_name,
        executor_id=row.executor_id,
        app_version=row.application_version,
        app_id=row.application_id,
        workflow_timeout_ms=row.timeout_ms,
        workflow_deadline_epoch_ms=row.deadline_epoch_ms,
        deduplication_id=row.deduplication_id,
        priority=row.priority,
        queue_partition_key=row.queue_partition_key,
        parent_workflow_id=row.parent_workflow_id,
    )


def to_step_info(step: StepRecord, codec: Codec) -> StepInfo:
    return StepInfo(
        function_id=step.function_id,
        function_name=step.function_name,
        output=codec.decode(step.output, f"the output of step {step.function_name!r}"),
        error=codec.decode_error(step.error),
        child_workflow_id=step.child_workflow_id,
    )


def parse_statuses(
    status: str | list[str] | None, allowed: tuple[str, ...] = ALL_STATUSES
) -> list[str] | None:
    if status is None:
        return None
    statuses = [status] if isinstance(status, str) else list(status)
    bad = [s for s in statuses if s not in allowed]
    if bad:
        raise DBOSInvalidArgumentError(
            f"unknown workflow status {', '.join(map(repr, bad))} (use one of {', '.join(allowed)})"
        )
    return statuses


def parse_time_ms(value: str | datetime | None, what: str) -> int | None:
    """RFC 3339 timestamp (or datetime) to epoch milliseconds."""
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError as exc:
            raise DBOSInvalidArgumentError(
                f"{what} {value!r} is not an RFC 3339 timestamp (like 2026-01-31T12:00:00Z)"
            ) from exc
    if moment.tzinfo is None:
        raise DBOSInvalidArgumentError(
            f"{what} {value!r} has no UTC offset (add one, like 2026-01-31T12:00:00Z)"
        )
    return int(moment.timestamp() * 1000)


def check_page(limit: int | None, offset: int | None) -> None:
    for label, value in (("limit", limit), ("offset", offset)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 0
        ):
            raise DBOSInvalidArgumentError(f"{label} must be a non-negative integer, got {value!r}")


def workflow_filter(
    *,
    workflow_ids: list[str] | None = None,
    status: str | list[str] | None = None,
    start_time: str | datetime | None = None,
    end_time: str | datetime | None = None,
    name: str | None = None,
    app_version: str | None = None,
    user: str | None = None,
    queue_name: str | None = None,
    limit: int | None = None,
    offset: int | None = None,
    sort_desc: bool = False,
    workflow_id_prefix: str | None = None,
) -> ListFilter:
    """The filter of ``list_workflows`` (DBOS, DBOSClient and ``GET /workflows`` alike); bad
    values raise DBOSInvalidArgumentError."""
    return ListFilter(
        workflow_ids=workflow_ids,
        workflow_id_prefix=workflow_id_prefix,
        statuses=parse_statuses(status),
        start_ms=parse_time_ms(start_time, "start_time"),
        end_ms=parse_time_ms(end_time, "end_time"),
        name=name,
        app_version=app_version,
        user=user,
        queue_name=queue_name,
        limit=limit,
        offset=offset,
        sort_desc=sort_desc,
    )


def queued_filter(
    *,
    queue_name: str | None = None,
    status: str | list[str] | None = None,
    start_time: str | datetime | None = None,
    end_time: str | datetime | None = None,
    name: str | None = None,
    limit: int | None = None,
    offset: int | None = None,
    sort_desc: bool = False,
) -> ListFilter:
    """The filter of ``list_queued_workflows``: workflows on a queue, ENQUEUED or PENDING unless
    ``status`` says otherwise."""
    return ListFilter(
        statuses=parse_statuses(status, ("ENQUEUED", "PENDING")),
        start_ms=parse_time_ms(start_time, "start_time"),
        end_ms=parse_time_ms(end_time, "end_time"),
        name=name,
        queue_name=queue_name,
        queued_only=True,
        limit=limit,
        offset=offset,
        sort_desc=sort_desc,
    )


def list_workflows(
    access: SystemAccess, flt: ListFilter, load_input: bool = True, load_output: bool = True
) -> list[WorkflowStatus]:
    """Workflows matching ``flt``; inputs and outputs (with errors) are decoded independently."""
    check_page(flt.limit, flt.offset)
    return [
        to_status(row, access.codec, load_input, load_output=load_output)
        for row in access.store.list_workflows(flt)
    ]


def list_steps(access: SystemAccess, workflow_id: str) -> list[StepInfo]:
    """The recorded steps of a workflow in ``function_id`` order (empty for an unknown ID)."""
    return [to_step_info(s, access.codec) for s in access.store.list_steps(workflow_id)]


def status_of(access: SystemAccess, workflow_id: str) -> WorkflowStatus | None:
    """The workflow's status, or None for an unknown ID."""
    row = access.store.get_workflow(workflow_id)
    return to_status(row, access.codec) if row is not None else None


def require_row(access: SystemAccess, workflow_id: str) -> WorkflowRow:
    row = access.store.get_workflow(workflow_id)
    if row is None:
        raise DBOSNonExistentWorkflowError(f"no workflow with ID {workflow_id!r} exists")
    return row


def resume(runtime: Runtime, workflow_id: str) -> str:
    require_row(runtime, workflow_id)
    changed, row = runtime.store.resume_workflow(workflow_id, runtime.executor_id)
    if changed and row is not None:
        runtime.execute_existing(row)
    return workflow_id


def fork(
    runtime: Runtime, workflow_id: str, start_step: int, application_version: str | None
) -> str:
    """Start a copy of the workflow that replays steps before ``start_step`` and runs the rest."""
    new_id = fork_row(
        runtime, workflow_id, start_step, application_version, executor_id=runtime.executor_id
    )
    row = runtime.store.get_workflow(new_id)
    if row is not None and row.application_version in (None, runtime.app_version):
        runtime.execute_existing(row)
    return new_id


def fork_row(
    access: SystemAccess,
    workflow_id: str,
    start_step: int,
    application_version: str | None,
    *,
    queue_name: str | None = None,
    executor_id: str | None = None,
) -> str:
    """Create the forked workflow: PENDING on ``executor_id``, or ENQUEUED on ``queue_name`` for
    any executor."""
    if isinstance(start_step, bool) or not isinstance(start_step, int) or start_step < 1:
        raise DBOSInvalidArgumentError(
            f"start_step must be a step's function_id (an integer >= 1), got {start_step!r}"
        )
    source = require_row(access, workflow_id)
    new_id = consume_workflow_id() or str(uuid.uuid4())
    now = access.now_ms()
    queued = queue_name is not None
    new_row = WorkflowRow(
        workflow_uuid=new_id,
        status="ENQUEUED" if queued else "PENDING",
        name=source.name,
        class_name=source.class_name,
        config_name=source.config_name,
        authenticated_user=source.authenticated_user,
        assumed_role=source.assumed_role,
        authenticated_roles=source.authenticated_roles,
        inputs=source.inputs,
        executor_id=None if queued else executor_id,
        application_version=application_version or source.application_version,
        application_id=source.application_id,
        created_at=now,
        updated_at=now,
        recovery_attempts=0 if queued else 1,
        queue_name=queue_name,
        timeout_ms=source.timeout_ms,
        # Queued: the clock starts at dequeue (the queue worker sets the deadline then).
        deadline_epoch_ms=None if queued else deadline_at(now, source.timeout_ms),
        started_at_epoch_ms=None if queued else now,
    )
    access.store.fork_workflow(source, new_row, start_step)
    return new_id


# -- work that recovery leaves alone ---------------------------------------------------------------


@dataclass(frozen=True)
class UnrecoverableWorkflow:
    """A PENDING workflow of this executor and application version that this process cannot
    run, and why (its function is not registered, or its class instance does not exist)."""

    status: WorkflowStatus
    reason: str


def missing_code(row: WorkflowRow) -> str | None:
    """Why this process cannot run the workflow of ``row`` (None: it can). The checks of
    ``Runtime.execute_existing``, so what this reports is what recovery leaves PENDING."""
    if REGISTRY.find_workflow(row.name) is None:
        return f"no workflow named {row.name!r} is registered in this process"
    class_name, config_name = row.class_name, row.config_name
    if class_name is None or config_name is None:
        return None
    if REGISTRY.find_instance(class_name, config_name) is None:
        return f"no {class_name} instance with config_name {config_name!r} exists"
    return None


def unrecoverable_workflows(runtime: Runtime) -> list[UnrecoverableWorkflow]:
    """PENDING workflows of this executor and version that recovery cannot resume here."""
    found: list[UnrecoverableWorkflow] = []
    for row in runtime.store.pending_workflows([runtime.executor_id], runtime.app_version):
        reason = missing_code(row)
        if reason is not None:
            status = to_status(row, runtime.codec, load_io=False)
            found.append(UnrecoverableWorkflow(status, reason))
    return found


def held(queue_name: str | None) -> bool:
    """Whether a queue only holds work until the engine releases it (a schedule's buffered
    ticks, a debounce window): a release gives the work the releasing process's version."""
    return queue_name is not None and (
        queue_name.startswith(HOLD_QUEUE_PREFIX) or queue_name == DEBOUNCE_HOLD_QUEUE
    )


def other_version_counts(runtime: Runtime) -> dict[str, int]:
    """PENDING and ENQUEUED workflows per application version other than this process's
    (neither recovered nor dequeued here); held ticks and debounce windows are left out."""
    rows = runtime.store.list_workflows(ListFilter(statuses=["PENDING", "ENQUEUED"]))
    counts = Counter(
        row.application_version
        for row in rows
        if row.application_version is not None
        and row.application_version != runtime.app_version
        and not held(row.queue_name)
    )
    return dict(sorted(counts.items()))
