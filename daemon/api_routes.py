"""The daemon's own endpoints: debouncers, schedules and metrics (added to the engine's API)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from daemon.config_model import Config
from daemon.debounce import UnknownDebouncer, debounce_by_config
from daemon.metrics import DaemonMetrics
from daemon.prometheus import CONTENT_TYPE
from engine.admin import Problem, Reply, Request, Response, Route
from engine.admin import docs as engine_docs
from engine.error import DBOSInvalidArgumentError
from engine.runtime import scheduler as engine_scheduler
from engine.runtime.schedule_admin import ScheduleState

ConfigSource = Callable[[], Config]
_PROBLEM = "application/problem+json"
NOT_FOUND = Reply("Not found", engine_docs.PROBLEM, _PROBLEM)


# -- debouncers ------------------------------------------------------------------------------------


def debounce_handler(config: ConfigSource) -> Callable[[Request], Response]:
    def debounce(request: Request) -> Response:
        name, key = request.path_params["name"], request.path_params["key"]
        try:
            workflow_id = debounce_by_config(None, config(), name, key, request.body.get("input"))
        except UnknownDebouncer as exc:
            raise Problem(404, "debouncer_not_found", str(exc)) from exc
        return Response(202, {"workflow_id": workflow_id})

    return debounce


# -- schedules -------------------------------------------------------------------------------------


def schedule_json(state: ScheduleState) -> dict[str, Any]:
    return {
        "name": state.name,
        "source": state.source,
        "cron": state.cron,
        "timezone": state.timezone,
        "workflow_name": state.workflow_name,
        "queue_name": state.queue_name,
        "catchup": str(state.catchup),
        "overlap": str(state.overlap),
        "paused": state.paused,
        "next_fire_time": _iso(state.next_fire_time),
        "last_fire_time": _iso(state.last_tick),
        "last_workflow_id": state.last_workflow_id,
        "last_status": state.last_status,
    }


def list_schedules(_: Request) -> Response:
    states = engine_scheduler.schedule_states()
    return Response(200, {"schedules": [schedule_json(s) for s in states]})


def _require_schedule(name: str) -> None:
    try:
        engine_scheduler.schedule_state(name)
    except DBOSInvalidArgumentError as exc:
        raise Problem(404, "schedule_not_found", str(exc)) from exc


def trigger(request: Request) -> Response:
    name = request.path_params["name"]
    _require_schedule(name)
    return Response(202, {"name": name, "workflow_id": engine_scheduler.trigger_schedule(name)})


def pause(request: Request) -> Response:
    name = request.path_params["name"]
    _require_schedule(name)
    engine_scheduler.pause_schedule(name)
    return Response(200, {"name": name, "paused": True})


def resume(request: Request) -> Response:
    name = request.path_params["name"]
    _require_schedule(name)
    engine_scheduler.resume_schedule(name)
    return Response(200, {"name": name, "paused": False})


def backfill(request: Request) -> Response:
    name = request.path_params["name"]
    start = _timestamp(request.body["from"])
    end = _timestamp(request.body["to"])
    if start > end:
        raise Problem(422, "invalid_range", f"'from' ({start}) is after 'to' ({end})")
    _require_schedule(name)
    workflow_ids = engine_scheduler.backfill_schedule(name, start, end)
    return Response(202, {"name": name, "workflow_ids": workflow_ids})


def _timestamp(text: str) -> datetime:
    # The schema already checked the RFC 3339 form (with an offset).
    return datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment is not None else None


# -- metrics ---------------------------------------------------------------------------------------


def metrics_handler(metrics: DaemonMetrics) -> Callable[[Request], Response]:
    def serve_metrics(_: Request) -> Response:
        return Response(200, text=metrics.collect(), content_type=CONTENT_TYPE)

    return serve_metrics


# -- the route table -------------------------------------------------------------------------------

_SCHEDULE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "cron": {"type": "string"},
        "timezone": {"type": "string"},
        "paused": {"type": "boolean"},
        "next_fire_time": {"type": ["string", "null"], "format": "date-time"},
        "last_fire_time": {"type": ["string", "null"], "format": "date-time"},
        "last_workflow_id": {"type": ["string", "null"]},
        "last_status": {"type": ["string", "null"]},
    },
}
_DEBOUNCE_BODY: dict[str, Any] = {
    "type": "object",
    "properties": {"input": {"description": "The input the run gets if this call is the last."}},
    "additionalProperties": False,
}
_BACKFILL_BODY: dict[str, Any] = {
    "type": "object",
    "properties": {
        "from": {"type": "string", "format": "date-time"},
        "to": {"type": "string", "format": "date-time"},
    },
    "required": ["from", "to"],
    "additionalProperties": False,
}
_NAME_DOC = {"name": "The schedule's name."}


def daemon_routes(config: ConfigSource, metrics: DaemonMetrics) -> list[Route]:
    return [
        Route(
            "POST",
            "/api/v1/debouncers/{name}/{key}",
            debounce_handler(config),
            "Debounce: run the debouncer's target once, a quiet period after the last call",
            "debouncers",
            {202: Reply("Accepted", engine_docs.WORKFLOW_REF), 404: NOT_FOUND},
            body=_DEBOUNCE_BODY,
            path_docs={"name": "The debouncer's name.", "key": "Calls with one key coalesce."},
        ),
        Route(
            "GET",
            "/api/v1/schedules",
            list_schedules,
            "List schedules with their next and last fire time and last status",
            "schedules",
            {
                200: Reply(
                    "Schedules",
                    {
                        "type": "object",
                        "properties": {"schedules": {"type": "array", "items": _SCHEDULE}},
                    },
                )
            },
        ),
        _schedule_action("trigger", trigger, 202, "Start one extra run now"),
        _schedule_action("pause", pause, 200, "Pause durably (missed ticks are not caught up)"),
        _schedule_action("resume", resume, 200, "Resume a paused schedule"),
        Route(
            "POST",
            "/api/v1/schedules/{name}/backfill",
            backfill,
            "Run every tick between from and to (ticks that already ran run nothing new)",
            "schedules",
            {202: Reply("Enqueued", {"type": "object"}), 404: NOT_FOUND},
            body=_BACKFILL_BODY,
            body_required=True,
            path_docs=_NAME_DOC,
        ),
        Route(
            "GET",
            "/metrics",
            metrics_handler(metrics),
            "Prometheus metrics (text format 0.0.4)",
            "metrics",
            {200: Reply("Metrics", None, CONTENT_TYPE)},
        ),
    ]


def _schedule_action(
    verb: str, handler: Callable[[Request], Response], status: int, summary: str
) -> Route:
    return Route(
        "POST",
        f"/api/v1/schedules/{{name}}/{verb}",
        handler,
        summary,
        "schedules",
        {status: Reply("Done", {"type": "object"}), 404: NOT_FOUND},
        body=engine_docs.EMPTY_BODY,
        path_docs=_NAME_DOC,
    )
