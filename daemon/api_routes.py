"""The daemon's own endpoints: debouncers, schedules and metrics (added to the engine's API)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from daemon.config_model import Config
from daemon.debounce import UnknownDebouncer, debounce_by_config
from daemon.metrics import DaemonMetrics
from daemon.prometheus import CONTENT_TYPE
from engine import DBOS, WorkflowSchedule
from engine.admin import Problem, Reply, Request, Response, Route
from engine.admin import docs as engine_docs

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


def schedule_json(schedule: WorkflowSchedule) -> dict[str, Any]:
    return {
        "name": schedule["schedule_name"],
        "source": schedule["source"],
        "cron": schedule["schedule"],
        "timezone": schedule["cron_timezone"],
        "workflow_name": schedule["workflow_name"],
        "queue_name": schedule["queue_name"],
        "catchup": schedule["catchup"],
        "overlap": schedule["overlap"],
        "paused": schedule["status"] == "PAUSED",
        "next_fire_time": _iso(schedule["next_fire_time"]),
        "last_fire_time": _iso(_parsed(schedule["last_fired_at"])),
        "last_workflow_id": schedule["last_workflow_id"],
        "last_status": schedule["last_status"],
    }


def list_schedules(_: Request) -> Response:
    return Response(200, {"schedules": [schedule_json(s) for s in DBOS.list_schedules()]})


def _require_schedule(name: str) -> None:
    if DBOS.get_schedule(name) is None:
        known = ", ".join(s["schedule_name"] for s in DBOS.list_schedules()) or "none"
        raise Problem(
            404, "schedule_not_found", f"no schedule named {name!r} (known schedules: {known})"
        )


def trigger(request: Request) -> Response:
    name = request.path_params["name"]
    _require_schedule(name)
    workflow_id = DBOS.trigger_schedule(name).workflow_id
    return Response(202, {"name": name, "workflow_id": workflow_id})


def pause(request: Request) -> Response:
    name = request.path_params["name"]
    _require_schedule(name)
    DBOS.pause_schedule(name)
    return Response(200, {"name": name, "paused": True})


def resume(request: Request) -> Response:
    name = request.path_params["name"]
    _require_schedule(name)
    DBOS.resume_schedule(name)
    return Response(200, {"name": name, "paused": False})


# backfill_schedule counts the ticks strictly between its bounds; the API's range includes both.
_JUST_OUTSIDE = timedelta(microseconds=1)


def backfill(request: Request) -> Response:
    name = request.path_params["name"]
    start = _timestamp(request.body["from"])
    end = _timestamp(request.body["to"])
    if start > end:
        raise Problem(422, "invalid_range", f"'from' ({start}) is after 'to' ({end})")
    _require_schedule(name)
    handles = DBOS.backfill_schedule(name, start - _JUST_OUTSIDE, end + _JUST_OUTSIDE)
    return Response(202, {"name": name, "workflow_ids": [h.workflow_id for h in handles]})


def _parsed(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


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
