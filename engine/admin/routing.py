"""The route table: what each endpoint accepts and returns, and matching a request to a route.

One table drives dispatch, request validation and the OpenAPI document, so they cannot drift.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from engine.admin.problems import Problem
from engine.admin.schema import Schema

JSON = "application/json"
_PARAM = re.compile(r"\{([a-z_]+)\}")


@dataclass(frozen=True)
class Param:
    """A query parameter; its schema says its type (strings are converted before validation)."""

    name: str
    schema: Schema
    description: str = ""


@dataclass(frozen=True)
class Reply:
    """One documented response of a route."""

    description: str
    schema: Schema | None = None
    content_type: str = JSON


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    path_params: Mapping[str, str]
    query: Mapping[str, Any]
    #: The validated JSON body; ``{}`` when the route takes a body and none was sent.
    body: Any
    headers: Mapping[str, str]


@dataclass(frozen=True)
class Response:
    status: int = 200
    body: Any = None
    #: When set, sent as is instead of ``body`` (for text formats like Prometheus).
    text: str | None = None
    content_type: str = JSON
    headers: Mapping[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Response]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    responses: Mapping[int, Reply]
    query: tuple[Param, ...] = ()
    #: JSON Schema of the request body; ``None`` means the route takes no body.
    body: Schema | None = None
    body_required: bool = False
    #: Public routes (``/livez``) answer without the bearer token.
    public: bool = False
    path_docs: Mapping[str, str] = field(default_factory=dict)

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(self.path.strip("/").split("/"))

    @property
    def path_param_names(self) -> list[str]:
        return _PARAM.findall(self.path)

    @property
    def operation_id(self) -> str:
        words = [s for s in self.segments if not s.startswith("{") and s not in ("api", "v1")]
        by = [n for n in self.path_param_names]
        name = "_".join([self.method.lower(), *words])
        return name + ("_by_" + "_".join(by) if by else "")


class Router:
    """Matches ``(method, raw path)`` to a route: 404 for unknown paths, 405 for wrong methods."""

    def __init__(self, routes: Iterable[Route] = ()) -> None:
        self._routes: list[Route] = []
        for route in routes:
            self.add(route)

    @property
    def routes(self) -> list[Route]:
        return list(self._routes)

    def add(self, route: Route) -> None:
        for existing in self._routes:
            if existing.method == route.method and _same_shape(existing, route):
                raise ValueError(f"route {route.method} {route.path} clashes with {existing.path}")
        self._routes.append(route)

    def find_path(self, raw_path: str) -> list[tuple[Route, dict[str, str]]]:
        parts = [unquote(p) for p in raw_path.strip("/").split("/")] if raw_path != "/" else [""]
        found = []
        for route in self._routes:
            params = _match(route.segments, parts)
            if params is not None:
                found.append((route, params))
        return found

    def match(self, method: str, raw_path: str) -> tuple[Route, dict[str, str]]:
        candidates = self.find_path(raw_path)
        for route, params in candidates:
            if route.method == method:
                return route, params
        if candidates:
            allowed = ", ".join(sorted({r.method for r, _ in candidates}))
            raise Problem(
                405,
                "method_not_allowed",
                f"{method} is not allowed on {raw_path} (allowed: {allowed})",
                headers={"Allow": allowed},
            )
        raise Problem(
            404,
            "route_not_found",
            f"no endpoint at {raw_path} (see /api/v1/openapi.json for the endpoints)",
        )


def _match(template: tuple[str, ...], parts: list[str]) -> dict[str, str] | None:
    if len(template) != len(parts):
        return None
    params: dict[str, str] = {}
    for expected, actual in zip(template, parts, strict=True):
        if expected.startswith("{"):
            if not actual:
                return None
            params[expected[1:-1]] = actual
        elif expected != actual:
            return None
    return params


def _same_shape(a: Route, b: Route) -> bool:
    if len(a.segments) != len(b.segments):
        return False
    return all(
        x == y or (x.startswith("{") and y.startswith("{"))
        for x, y in zip(a.segments, b.segments, strict=True)
    )
