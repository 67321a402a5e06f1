"""The daemon's HTTP API: the engine's workflow-management API plus debouncers, schedules and
Prometheus metrics, on ``[http] listen`` with the bearer token from ``token_file``.

The daemon calls :func:`start_api` once the engine is launched::

    handle = start_api(lambda: service.config, token=read_token(config), readiness=ready.is_set)
    ...
    handle.stop()
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from daemon.api_routes import daemon_routes
from daemon.config_model import Config
from daemon.metrics import DaemonMetrics
from engine.admin import AdminServer, ServerOptions, serve

__all__ = ["ApiServerHandle", "start_api"]

API_TITLE = "keeptime API"


@dataclass
class ApiServerHandle:
    """A running API. ``address`` is ``(host, port)`` as bound (useful with port 0)."""

    server: AdminServer
    metrics: DaemonMetrics

    @property
    def address(self) -> tuple[str, int]:
        return self.server.address

    @property
    def url(self) -> str:
        return self.server.url

    def stop(self) -> None:
        """Stop serving and release the port."""
        self.server.stop()


def start_api(
    config: Config | Callable[[], Config],
    *,
    token: str | None,
    readiness: Callable[[], bool],
) -> ApiServerHandle:
    """Serve the API on ``config.http`` in a background thread.

    ``config`` may be a function returning the current config, so debouncers and schedules
    added by a reload are served without restarting the API (the listen address is read once).
    ``token`` (from :func:`daemon.config_check.read_token`) guards every endpoint except
    ``/livez``; ``readiness`` makes ``/readyz`` answer 503 until it returns True. Raises
    :class:`~engine.error.DBOSConfigError` if the address is not loopback and there is no token,
    or the port cannot be bound. Needs a launched engine (``DBOS.launch()``).
    """
    current: Callable[[], Config] = config if callable(config) else (lambda: config)
    http = current().http
    metrics = DaemonMetrics(lambda: current().schedules.keys())
    options = ServerOptions(
        host=http.host, port=http.port, token=token, max_body_bytes=http.max_body_bytes
    )
    server = serve(
        options,
        extra_routes=daemon_routes(current, metrics),
        readiness=readiness,
        title=API_TITLE,
    )
    return ApiServerHandle(server, metrics)
