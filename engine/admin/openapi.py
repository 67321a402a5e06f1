"""The OpenAPI 3.1 document, generated from the route table."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from engine.admin import docs
from engine.admin.routing import JSON, Reply, Request, Response, Route

OPENAPI_PATH = "/api/v1/openapi.json"
_PROBLEM = "application/problem+json"


def openapi_document(routes: Iterable[Route], *, title: str, version: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": "JSON only. Errors are RFC 9457 problem details "
            "(application/problem+json). When a token is configured, every endpoint except "
            "/livez needs 'Authorization: Bearer <token>'.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Problem": docs.PROBLEM},
        },
    }


def openapi_route(routes: Callable[[], Iterable[Route]], *, title: str, version: str) -> Route:
    def handler(_: Request) -> Response:
        return Response(200, openapi_document(routes(), title=title, version=version))

    return Route(
        "GET",
        OPENAPI_PATH,
        handler,
        "This document",
        "meta",
        {200: Reply("The OpenAPI 3.1 document", {"type": "object"})},
    )


def _operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": [route.tag],
        "parameters": _parameters(route),
        "responses": _responses(route),
        "security": [] if route.public else [{"bearer": []}],
    }
    if route.body is not None:
        op["requestBody"] = {
            "required": route.body_required,
            "content": {JSON: {"schema": route.body}},
        }
    return op


def _parameters(route: Route) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "description": route.path_docs.get(name, ""),
            "schema": docs.NAME,
        }
        for name in route.path_param_names
    ]
    for param in route.query:
        entry: dict[str, Any] = {
            "name": param.name,
            "in": "query",
            "required": False,
            "description": param.description,
            "schema": param.schema,
        }
        if param.schema.get("type") == "array":
            entry.update(style="form", explode=True)
        params.append(entry)
    return params


def _responses(route: Route) -> dict[str, Any]:
    replies: dict[int, Reply] = dict(route.responses)
    problem = {"$ref": "#/components/schemas/Problem"}
    common = {400: "Bad request (malformed JSON, bad query)", 503: "Database unavailable"}
    if not route.public:
        common[401] = "Missing or wrong bearer token"
    if route.body is not None:
        common.update(
            {413: "Body too large", 415: "Body is not JSON", 422: "Body does not fit the schema"}
        )
    for status, text in common.items():
        replies.setdefault(status, Reply(text, None, _PROBLEM))
    out: dict[str, Any] = {}
    for status, reply in sorted(replies.items()):
        if reply.content_type == _PROBLEM:
            schema: dict[str, Any] = problem
        elif reply.schema is not None:
            schema = dict(reply.schema)
        else:
            schema = {"type": "string"}
        out[str(status)] = {
            "description": reply.description,
            "content": {reply.content_type: {"schema": schema}},
        }
    return out
