"""Assembling the API: the engine's routes, any extra routes, the OpenAPI document; serving it."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from engine.admin.health import Readiness, health_routes
from engine.admin.openapi import openapi_route
from engine.admin.routing import Route, Router
from engine.admin.server import AdminServer, ServerOptions
from engine.admin.workflows import workflow_routes
from engine.error import DBOSConfigError

if TYPE_CHECKING:
    from engine.runtime.executor import Runtime

logger = logging.getLogger("keeptime.engine")

#: The embedded admin server listens on loopback only: it has no token.
EMBEDDED_HOST = "127.0.0.1"
_embedded: AdminServer | None = None


def package_version() -> str:
    try:
        return version("keeptime")
    except PackageNotFoundError:
        return "0"


def build_router(
    extra_routes: Iterable[Route] = (),
    *,
    readiness: Readiness | None = None,
    title: str = "keeptime engine admin API",
) -> Router:
    """The engine's routes plus ``extra_routes``, and an OpenAPI document describing them all."""
    router = Router([*health_routes(readiness), *workflow_routes(), *extra_routes])
    router.add(openapi_route(lambda: router.routes, title=title, version=package_version()))
    return router


def serve(
    options: ServerOptions,
    *,
    extra_routes: Iterable[Route] = (),
    readiness: Readiness | None = None,
    title: str = "keeptime engine admin API",
) -> AdminServer:
    """Start serving the API in a background thread; ``stop()`` the result to end it.

    Raises :class:`~engine.error.DBOSConfigError` before binding when the options are unsafe
    (a non-loopback host without a token) or the port cannot be bound.
    """
    server = AdminServer(build_router(extra_routes, readiness=readiness, title=title), options)
    server.start()
    return server


def start_embedded(runtime: Runtime) -> AdminServer | None:
    """Start the admin server of ``DBOS.launch()`` when ``run_admin_server`` is set.

    It stops when the runtime shuts down (``DBOS.destroy()``). A port that cannot be bound is
    logged, not raised: the application itself keeps running.
    """
    config = runtime.config
    if not config.run_admin_server:
        return None
    try:
        server = serve(ServerOptions(host=EMBEDDED_HOST, port=config.admin_port))
    except DBOSConfigError as exc:
        logger.error("the admin server did not start: %s", exc)
        return None

    global _embedded
    _embedded = server

    def stop_with_runtime() -> None:
        global _embedded
        runtime.stopping.wait()
        server.stop()
        if _embedded is server:
            _embedded = None

    runtime.spawn("keeptime-admin-stop", stop_with_runtime)
    return server


def embedded_server() -> AdminServer | None:
    """The admin server ``DBOS.launch()`` started (to learn its port when ``admin_port=0``)."""
    return _embedded
