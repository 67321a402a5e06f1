"""Workflow-management endpoints: list, get, steps, cancel, resume, fork, start, messages, events.

Request values are JSON and are stored with the engine's configured serializer; nothing that
arrives over HTTP is ever unpickled.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from typing import Any

from engine.admin import docs
from engine.admin.problems import Problem
from engine.admin.routing import Param, Reply, Request, Response, Route
from engine.admin.values import error_json, jsonable, status_json, step_json
from engine.dbos import DBOS
from engine.error import DBOSSerializationError
from engine.queue import find_queue
from engine.runtime import management
from engine.runtime.context import SetWorkflowID
from engine.runtime.current import current_runtime
from engine.runtime.executor import Runtime
from engine.runtime.registry import REGISTRY, RegisteredFunction
from engine.storage.store import WorkflowRow

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_EVENT_WAIT_SEC = 60


# -- reading ---------------------------------------------------------------------------------------


def list_workflows(request: Request) -> Response:
    q = request.query
    limit = q.get("limit", DEFAULT_LIMIT)
    offset = q.get("offset", 0)
    flt = management.workflow_filter(
        workflow_id_prefix=q.get("workflow_id_prefix"),
        status=q.get("status"),
        start_time=q.get("start_time"),
        end_time=q.get("end_time"),
        name=q.get("name"),
        app_version=q.get("app_version"),
        user=q.get("user"),
        queue_name=q.get("queue"),
        limit=limit,
        offset=offset,
        sort_desc=q.get("sort_desc", False),
    )
    runtime = current_runtime()
    load_io = q.get("load_io", True)
    rows = runtime.store.list_workflows(flt)
    items = [row_json(runtime, row, load_io) for row in rows]
    return Response(200, {"workflows": items, "limit": limit, "offset": offset})


def get_workflow(request: Request) -> Response:
    runtime = current_runtime()
    row = management.require_row(runtime, request.path_params["workflow_id"])
    return Response(200, row_json(runtime, row, True))


def list_steps(request: Request) -> Response:
    workflow_id = request.path_params["workflow_id"]
    runtime = current_runtime()
    management.require_row(runtime, workflow_id)
    steps = []
    for record in runtime.store.list_steps(workflow_id):
        try:
            steps.append(step_json(management.to_step_info(record, runtime.codec)))
        except DBOSSerializationError as exc:
            steps.append(
                {
                    "function_id": record.function_id,
                    "function_name": record.function_name,
                    "output": _undecodable(exc),
                    "error": None,
                    "child_workflow_id": record.child_workflow_id,
                }
            )
    return Response(200, {"workflow_id": workflow_id, "steps": steps})


def row_json(runtime: Runtime, row: WorkflowRow, load_io: bool) -> dict[str, Any]:
    """A workflow's status as JSON; inputs and outputs that cannot be decoded are described."""
    out = status_json(management.to_status(row, runtime.codec, load_io=False))
    if not load_io:
        return out
    codec = runtime.codec
    out["input"] = _decoded(lambda: _inputs_json(codec.decode_inputs(row.inputs), row))
    out["output"] = _decoded(lambda: jsonable(codec.decode(row.output, "the workflow's output")))
    out["error"] = _decoded(lambda: error_json(codec.decode_error(row.error)))
    return out


def _inputs_json(inputs: dict[str, Any], row: WorkflowRow) -> dict[str, Any] | None:
    if row.inputs is None:
        return None
    return {"args": jsonable(list(inputs["args"])), "kwargs": jsonable(inputs["kwargs"])}


def _decoded(load: Callable[[], Any]) -> Any:
    try:
        return load()
    except DBOSSerializationError as exc:
        return _undecodable(exc)


def _undecodable(exc: BaseException) -> str:
    return f"<not decodable: {exc}>"


# -- changing --------------------------------------------------------------------------------------


def cancel(request: Request) -> Response:
    workflow_id = request.path_params["workflow_id"]
    DBOS.cancel_workflow(workflow_id)
    return Response(200, {"workflow_id": workflow_id, "status": _status_of(workflow_id)})


def resume(request: Request) -> Response:
    workflow_id = request.path_params["workflow_id"]
    DBOS.resume_workflow(workflow_id)
    return Response(200, {"workflow_id": workflow_id, "status": _status_of(workflow_id)})


def fork(request: Request) -> Response:
    body = request.body
    with _workflow_id(body.get("workflow_id")):
        handle = DBOS.fork_workflow(
            request.path_params["workflow_id"],
            body["start_step"],
            application_version=body.get("application_version"),
        )
    return Response(201, {"workflow_id": handle.workflow_id})


def start(request: Request) -> Response:
    fn = startable_workflow(request.path_params["name"])
    body = request.body
    args: list[Any] = body.get("args", [])
    kwargs: dict[str, Any] = body.get("kwargs", {})
    check_arguments(fn, args, kwargs)
    queue_name = body.get("queue")
    with _workflow_id(body.get("workflow_id")):
        if queue_name is None:
            handle = DBOS.start_workflow(fn.wrapper, *args, **kwargs)  # type: ignore[arg-type]
        else:
            queue = find_queue(queue_name)
            if queue is None:
                raise Problem(
                    404,
                    "queue_not_found",
                    f"no queue named {queue_name!r} exists in this process "
                    "(GET /api/v1/queues lists them)",
                )
            handle = queue.enqueue(fn.wrapper, *args, **kwargs)  # type: ignore[arg-type]
    return Response(202, {"workflow_id": handle.workflow_id})


def send_message(request: Request) -> Response:
    workflow_id = request.path_params["workflow_id"]
    management.require_row(current_runtime(), workflow_id)
    topic = request.body.get("topic")
    DBOS.send(workflow_id, request.body["message"], topic)
    return Response(202, {"workflow_id": workflow_id, "topic": topic})


def get_event(request: Request) -> Response:
    workflow_id = request.path_params["workflow_id"]
    key = request.path_params["key"]
    management.require_row(current_runtime(), workflow_id)
    value = DBOS.get_event(workflow_id, key, request.query.get("timeout", 0))
    if value is None and key not in DBOS.get_all_events(workflow_id):
        raise Problem(
            404,
            "event_not_set",
            f"workflow {workflow_id!r} has not set event {key!r} (yet; pass ?timeout= to wait)",
        )
    return Response(200, {"workflow_id": workflow_id, "key": key, "value": jsonable(value)})


def startable_workflow(name: str) -> RegisteredFunction:
    """The registered workflow named ``name`` that HTTP may start (not a method, not internal)."""
    fn = REGISTRY.require_workflow(name)
    if fn.class_name is not None or fn.name.startswith("<") or fn.wrapper is None:
        raise Problem(
            422,
            "workflow_not_startable",
            f"workflow {name!r} is a method of {fn.class_name or 'an internal class'} and needs "
            "its instance; start it from Python",
        )
    return fn


def check_arguments(fn: RegisteredFunction, args: list[Any], kwargs: dict[str, Any]) -> None:
    try:
        signature = inspect.signature(fn.func)
    except (TypeError, ValueError):
        return
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise Problem(
            422,
            "arguments_mismatch",
            f"the arguments do not fit workflow {fn.name}{signature}: {exc}",
        ) from exc


@contextlib.contextmanager
def _workflow_id(workflow_id: str | None) -> Iterator[None]:
    if workflow_id is None:
        yield
        return
    with SetWorkflowID(workflow_id):
        yield


def _status_of(workflow_id: str) -> str | None:
    row = current_runtime().store.get_workflow(workflow_id)
    return row.status if row is not None else None


# -- the route table -------------------------------------------------------------------------------

_ID_DOC = {"workflow_id": "The workflow's ID."}


def workflow_routes() -> list[Route]:
    """The workflow-management part of the API (the engine's admin server serves just these)."""
    wf = "workflows"
    return [
        Route(
            "GET",
            "/api/v1/workflows",
            list_workflows,
            "List workflows, newest last (sort_desc=true for newest first)",
            wf,
            {200: Reply("Matching workflows", docs.WORKFLOW_LIST)},
            query=LIST_PARAMS,
        ),
        Route(
            "GET",
            "/api/v1/workflows/{workflow_id}",
            get_workflow,
            "Get one workflow's status, inputs and result",
            wf,
            {200: Reply("The workflow", docs.WORKFLOW), 404: docs.NOT_FOUND},
            path_docs=_ID_DOC,
        ),
        Route(
            "GET",
            "/api/v1/workflows/{workflow_id}/steps",
            list_steps,
            "List a workflow's recorded steps",
            wf,
            {200: Reply("The steps", docs.STEP_LIST), 404: docs.NOT_FOUND},
            path_docs=_ID_DOC,
        ),
        _action("cancel", cancel, "Cancel a workflow (it stops at its next step)"),
        _action("resume", resume, "Resume a cancelled or failed workflow from its last step"),
        Route(
            "POST",
            "/api/v1/workflows/{workflow_id}/fork",
            fork,
            "Start a new workflow that replays this one up to start_step",
            wf,
            {201: Reply("The new workflow", docs.WORKFLOW_REF), 404: docs.NOT_FOUND},
            body=docs.FORK_BODY,
            body_required=True,
            path_docs=_ID_DOC,
        ),
        Route(
            "POST",
            "/api/v1/workflows/{name}/start",
            start,
            "Start (or enqueue) a registered workflow by name",
            wf,
            {202: Reply("Started", docs.WORKFLOW_REF), 404: docs.NOT_FOUND},
            body=docs.START_BODY,
            path_docs={"name": "The workflow's registered name."},
        ),
        Route(
            "POST",
            "/api/v1/workflows/{workflow_id}/messages",
            send_message,
            "Send a message to a workflow (DBOS.send)",
            wf,
            {202: Reply("Sent", docs.MESSAGE_REPLY), 404: docs.NOT_FOUND},
            body=docs.MESSAGE_BODY,
            body_required=True,
            path_docs=_ID_DOC,
        ),
        Route(
            "GET",
            "/api/v1/workflows/{workflow_id}/events/{key}",
            get_event,
            "Read an event a workflow set (DBOS.get_event), waiting up to timeout seconds",
            wf,
            {200: Reply("The event's value", docs.EVENT), 404: docs.NOT_FOUND},
            query=(
                Param(
                    "timeout",
                    {"type": "number", "minimum": 0, "maximum": MAX_EVENT_WAIT_SEC},
                    "Seconds to wait for the event to be set (default 0).",
                ),
            ),
            path_docs={**_ID_DOC, "key": "The event's key."},
        ),
    ]


def _action(verb: str, handler: Callable[[Request], Response], summary: str) -> Route:
    return Route(
        "POST",
        f"/api/v1/workflows/{{workflow_id}}/{verb}",
        handler,
        summary,
        "workflows",
        {200: Reply("Done", docs.WORKFLOW_STATE), 404: docs.NOT_FOUND},
        body=docs.EMPTY_BODY,
        path_docs=_ID_DOC,
    )


_TEXT = docs.NAME
LIST_PARAMS = (
    Param(
        "status",
        {"type": "array", "items": {"type": "string", "enum": list(docs.STATUSES)}},
        "Only these statuses (repeat the parameter for several).",
    ),
    Param("name", _TEXT, "Only workflows with this registered name."),
    Param("workflow_id_prefix", _TEXT, "Only IDs that start with this."),
    Param("start_time", {"type": "string", "format": "date-time"}, "Created at or after."),
    Param("end_time", {"type": "string", "format": "date-time"}, "Created at or before."),
    Param("app_version", _TEXT, "Only this application version."),
    Param("user", _TEXT, "Only workflows run by this authenticated user."),
    Param("queue", _TEXT, "Only workflows enqueued on this queue."),
    Param(
        "limit",
        {"type": "integer", "minimum": 0, "maximum": MAX_LIMIT},
        f"At most this many (default {DEFAULT_LIMIT}).",
    ),
    Param("offset", {"type": "integer", "minimum": 0}, "Skip this many."),
    Param("sort_desc", {"type": "boolean"}, "Newest first."),
    Param("load_io", {"type": "boolean"}, "Include inputs, output and error (default true)."),
)
