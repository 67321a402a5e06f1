"""The HTTP API core: workflow management over JSON, shared by the engine and the daemon.

``DBOSConfig(run_admin_server=True, admin_port=...)`` serves the workflow-management routes on
127.0.0.1; the daemon calls :func:`serve` with its own extra routes (schedules, debouncers,
metrics) and a bearer token.
"""

from engine.admin.app import build_router, embedded_server, serve, start_embedded
from engine.admin.health import Readiness, database_reachable, pending_debounces, queue_depths
from engine.admin.problems import Problem
from engine.admin.routing import Param, Reply, Request, Response, Route, Router
from engine.admin.server import AdminServer, ServerOptions, is_loopback_host, parse_json

__all__ = [
    "AdminServer",
    "Param",
    "Problem",
    "Readiness",
    "Reply",
    "Request",
    "Response",
    "Route",
    "Router",
    "ServerOptions",
    "build_router",
    "database_reachable",
    "embedded_server",
    "is_loopback_host",
    "parse_json",
    "pending_debounces",
    "queue_depths",
    "serve",
    "start_embedded",
]
