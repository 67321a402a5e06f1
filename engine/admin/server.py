"""The HTTP server: stdlib ``ThreadingHTTPServer``, JSON in and out, problem+json errors.

One implementation serves the engine's embedded admin server (``run_admin_server``) and the
daemon's API; the daemon adds routes to the same router.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

from engine.admin.problems import PROBLEM_CONTENT_TYPE, Problem, problem_from_error
from engine.admin.routing import Request, Response, Route, Router
from engine.admin.schema import check, parse_query_value
from engine.error import DBOSConfigError

logger = logging.getLogger("keeptime.http")

DEFAULT_MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ServerOptions:
    """Where to listen and how to guard the door."""

    host: str = "127.0.0.1"
    #: 0 picks a free port (see :attr:`AdminServer.address`).
    port: int = 0
    #: When set, every route except the public ones needs ``Authorization: Bearer <token>``.
    token: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    #: A client that stalls longer than this while sending a request is disconnected.
    request_timeout_sec: float = 30.0


def is_loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_options(options: ServerOptions) -> None:
    """Refuse settings that would expose the API: raised before anything binds."""
    if options.token is not None and not options.token.strip():
        raise DBOSConfigError("the HTTP API bearer token is empty (put a random secret in it)")
    if options.token is None and not is_loopback_host(options.host):
        raise DBOSConfigError(
            f"refusing to serve the HTTP API on {options.host!r} without a bearer token: it "
            "would let anyone on the network start and cancel workflows (listen on 127.0.0.1, "
            "or configure a token)"
        )
    if isinstance(options.port, bool) or not 0 <= options.port <= 65535:
        raise DBOSConfigError(f"HTTP port must be 0..65535, got {options.port!r}")
    if options.max_body_bytes < 1:
        raise DBOSConfigError(f"max_body_bytes must be positive, got {options.max_body_bytes!r}")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, options: ServerOptions, router: Router) -> None:
        self.options = options
        self.router = router
        host = options.host.strip("[]")
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, options.port), _Handler)


class AdminServer:
    """A running (after :meth:`start`) HTTP API. Construct, ``start()``, ``stop()``."""

    def __init__(self, router: Router, options: ServerOptions) -> None:
        check_options(options)
        try:
            self._httpd = _HTTPServer(options, router)
        except OSError as exc:
            raise DBOSConfigError(
                f"cannot listen on {options.host}:{options.port}: {exc.strerror or exc} "
                "(is another process using the port?)"
            ) from exc
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="keeptime-http",
            daemon=True,
        )
        self._thread.start()
        logger.info("HTTP API listening on %s", self.url)

    def stop(self) -> None:
        """Stop accepting requests and release the port. In-flight requests are abandoned."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "keeptime"
    sys_version = ""
    _METHODS: ClassVar[tuple[str, ...]] = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.options.request_timeout_sec)

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = do_GET

    def __getattr__(self, name: str) -> Any:
        # Unknown methods get 405 problem bodies instead of the stdlib's HTML 501 page.
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Protocol errors found by the stdlib (bad request line, huge headers) as problems."""
        self.close_connection = True
        detail = explain or message or "the request could not be read"
        self._send(_problem_response(Problem(code, "bad_http_request", detail), "/"))

    # -- dispatch ---------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        path = urlsplit(self.path).path or "/"
        try:
            response = self._handle()
            payload = _encode(response)
        except Exception as exc:
            response = _problem_response(_as_problem(exc, self.command, path), path)
            payload = _encode(response)
        self._send(response, payload)

    def _handle(self) -> Response:
        split = urlsplit(self.path)
        route, params = self._route(split.path or "/")
        if any("\x00" in v for v in params.values()):
            raise Problem(400, "invalid_path", "path segments must not contain NUL characters")
        body = self._read_body(route)
        query = self._parse_query(route, split.query)
        request = Request(
            method=self.command,
            path=split.path,
            path_params=params,
            query=query,
            body=body,
            headers={k.lower(): v for k, v in self.headers.items()},
        )
        return route.handler(request)

    def _route(self, path: str) -> tuple[Route, dict[str, str]]:
        router = self.server.router
        try:
            route, params = router.match(self.command, path)
        except Problem:
            if not any(r.public for r, _ in router.find_path(path)):
                self._authorize()
            raise
        if not route.public:
            self._authorize()
        return route, params

    def _authorize(self) -> None:
        token = self.server.options.token
        if token is None:
            return
        scheme, _, credentials = self.headers.get("Authorization", "").partition(" ")
        given = credentials.strip().encode("utf-8", "replace")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given, token.encode()):
            raise Problem(
                401,
                "unauthorized",
                "this endpoint needs the header 'Authorization: Bearer <token>' with the API "
                "token (missing or wrong token)",
                headers={"WWW-Authenticate": 'Bearer realm="keeptime"'},
            )

    def _read_body(self, route: Route) -> Any:
        length = self._content_length()
        if length == 0:
            if route.body_required:
                raise Problem(400, "body_required", "this endpoint needs a JSON body")
            return {} if route.body is not None else None
        self._check_content_type()
        try:
            data = self.rfile.read(length)
        except TimeoutError as exc:
            self.close_connection = True
            raise Problem(408, "request_timeout", "the body did not arrive in time") from exc
        if route.body is None:
            return None  # bodies sent to routes that take none are ignored, like most servers do
        value = parse_json(data)
        check(value, route.body, "body")
        return value

    def _content_length(self) -> int:
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise Problem(411, "length_required", "send the body with a Content-Length header")
        raw = self.headers.get("Content-Length", "0").strip()
        if not raw.isdigit():
            self.close_connection = True
            raise Problem(400, "bad_content_length", f"Content-Length {raw!r} is not a number")
        length = int(raw)
        limit = self.server.options.max_body_bytes
        if length > limit:
            self.close_connection = True  # the unread body would desynchronise the connection
            raise Problem(
                413,
                "body_too_large",
                f"the body has {length} bytes; this server accepts at most {limit}",
            )
        return length

    def _check_content_type(self) -> None:
        media = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            self.close_connection = True
            raise Problem(
                415,
                "unsupported_media_type",
                f"bodies must be JSON sent with 'Content-Type: application/json', got "
                f"{media or 'no Content-Type'!r}",
            )

    def _parse_query(self, route: Route, query: str) -> dict[str, Any]:
        try:
            raw = parse_qs(query, keep_blank_values=True, strict_parsing=False, max_num_fields=100)
        except ValueError as exc:
            raise Problem(400, "invalid_query", f"the query string cannot be read: {exc}") from exc
        known = {p.name: p for p in route.query}
        unknown = sorted(set(raw) - set(known))
        if unknown:
            names = ", ".join(known) or "none"
            raise Problem(
                400,
                "invalid_query",
                f"unknown query parameter(s) {', '.join(unknown)} (this endpoint takes: {names})",
            )
        return {name: _query_value(known[name], values) for name, values in raw.items()}

    # -- output -----------------------------------------------------------------------------------

    def _send(self, response: Response, payload: bytes | None = None) -> None:
        if payload is None:
            payload = _encode(response)
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            for name, value in response.headers.items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
        except OSError:
            self.close_connection = True  # the client went away; nothing to tell it


def parse_json(data: bytes) -> Any:
    """Parse a request body: UTF-8 JSON without NaN or Infinity; 400 when it is not."""
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise Problem(400, "malformed_json", f"the body is not valid JSON: {exc}") from exc


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _query_value(param: Any, values: list[str]) -> Any:
    where = f"query parameter {param.name!r}"
    schema = param.schema
    if schema.get("type") == "array":
        items = [parse_query_value(v, schema.get("items", {}), where) for v in values]
        check(items, schema, where, status=400)
        return items
    if len(values) > 1:
        raise Problem(400, "invalid_query", f"{where} is given {len(values)} times; give it once")
    value = parse_query_value(values[0], schema, where)
    check(value, schema, where, status=400)
    return value


def _as_problem(exc: BaseException, method: str, path: str) -> Problem:
    problem = problem_from_error(exc)
    if problem is not None:
        return problem
    logger.exception("unexpected error answering %s %s", method, path)
    return Problem(
        500, "internal_error", "the server failed to answer this request; its log has the details"
    )


def _problem_response(problem: Problem, instance: str) -> Response:
    return Response(
        status=problem.status,
        body=problem.body(instance),
        content_type=PROBLEM_CONTENT_TYPE,
        headers=problem.headers,
    )


def _encode(response: Response) -> bytes:
    if response.text is not None:
        return response.text.encode("utf-8")
    if response.body is None:
        return b""
    return json.dumps(response.body, ensure_ascii=False, allow_nan=False).encode("utf-8")
