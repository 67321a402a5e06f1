"""The engine's HTTP admin API (engine/admin) on SQLite and PostgreSQL, over real sockets."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from engine import DBOS, Queue
from engine.admin import AdminServer, ServerOptions, build_router, embedded_server, serve
from engine.error import DBOSConfigError
from tests.http_client import Client, Reply, wait_for

adm_queue = Queue("adm_queue")


@DBOS.step()
def adm_shout(name: str) -> str:
    return name.upper()


@DBOS.workflow()
def adm_greet(name: str, punctuation: str = "!") -> str:
    return f"hello {adm_shout(name)}{punctuation}"


@DBOS.workflow()
def adm_odd_output() -> Any:
    return {1, 2}  # a set: JSON has no form for it, so the API shows its repr


@DBOS.workflow()
def adm_echo_message() -> str:
    message = DBOS.recv("greeting", timeout_seconds=30)
    DBOS.set_event("answer", {"got": message})
    return str(message)


@DBOS.workflow()
def adm_wait_forever() -> None:
    DBOS.recv("never", timeout_seconds=60)


@pytest.fixture()
def api(dbos: None) -> Iterator[Client]:
    server = serve(ServerOptions(port=0))
    yield Client(server.url)
    server.stop()


@pytest.fixture()
def secured(dbos: None) -> Iterator[Client]:
    server = serve(ServerOptions(port=0, token="s3cret-token"))
    yield Client(server.url)
    server.stop()


def _finished(api: Client, workflow_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        body: dict[str, Any] = api.get(f"/api/v1/workflows/{workflow_id}").json()
        return body if body["status"] not in ("PENDING", "ENQUEUED") else None

    result: dict[str, Any] = wait_for(done)
    return result


# -- happy paths -----------------------------------------------------------------------------------


def test_start_get_list_and_steps(api: Client) -> None:
    reply = api.post(
        "/api/v1/workflows/adm_greet/start",
        {"args": ["ada"], "kwargs": {"punctuation": "?"}, "workflow_id": "adm-1"},
    )
    assert reply.status == 202 and reply.json() == {"workflow_id": "adm-1"}
    status = _finished(api, "adm-1")
    assert status["status"] == "SUCCESS"
    assert status["output"] == "hello ADA?"
    assert status["input"] == {"args": ["ada"], "kwargs": {"punctuation": "?"}}
    listed = api.get("/api/v1/workflows?name=adm_greet&status=SUCCESS&sort_desc=true").json()
    assert [w["workflow_id"] for w in listed["workflows"]] == ["adm-1"]
    assert api.get("/api/v1/workflows?status=ERROR&status=CANCELLED").json()["workflows"] == []
    assert api.get("/api/v1/workflows?workflow_id_prefix=adm-&limit=1&offset=0").status == 200
    light = api.get("/api/v1/workflows?load_io=false").json()["workflows"][0]
    assert light["input"] is None and light["output"] is None
    window = "start_time=2000-01-01T00:00:00Z&end_time=2999-01-01T00:00:00%2B00:00"
    assert len(api.get(f"/api/v1/workflows?{window}").json()["workflows"]) == 1
    steps = api.get("/api/v1/workflows/adm-1/steps").json()["steps"]
    assert [(s["function_name"], s["output"]) for s in steps] == [("adm_shout", "ADA")]


def test_start_twice_with_one_id_runs_once(api: Client) -> None:
    for _ in range(2):
        reply = api.post("/api/v1/workflows/adm_greet/start", {"args": ["x"], "workflow_id": "o"})
        assert reply.status == 202
    _finished(api, "o")
    assert len(api.get("/api/v1/workflows?name=adm_greet").json()["workflows"]) == 1


def test_start_on_queue_and_list_queues(api: Client) -> None:
    reply = api.post("/api/v1/workflows/adm_greet/start", {"args": ["q"], "queue": "adm_queue"})
    workflow_id = reply.json()["workflow_id"]
    status = _finished(api, workflow_id)
    assert status["queue_name"] == "adm_queue" and status["output"] == "hello Q!"
    queues = {q["name"]: q for q in api.get("/api/v1/queues").json()["queues"]}
    assert queues["adm_queue"]["registered"] is True
    assert queues["adm_queue"]["enqueued"] == 0
    listed = api.get("/api/v1/workflows?queue=adm_queue").json()["workflows"]
    assert [w["workflow_id"] for w in listed] == [workflow_id]


def test_output_that_json_cannot_represent_is_a_repr(api: Client) -> None:
    workflow_id = api.post("/api/v1/workflows/adm_odd_output/start").json()["workflow_id"]
    assert _finished(api, workflow_id)["output"] == "{1, 2}"


def test_messages_and_events(api: Client) -> None:
    workflow_id = api.post("/api/v1/workflows/adm_echo_message/start").json()["workflow_id"]
    api.get(f"/api/v1/workflows/{workflow_id}/events/answer").problem(404, "event_not_set")
    sent = api.post(
        f"/api/v1/workflows/{workflow_id}/messages", {"topic": "greeting", "message": [1, "a"]}
    )
    assert sent.status == 202
    event = api.get(f"/api/v1/workflows/{workflow_id}/events/answer?timeout=20").json()
    assert event == {"workflow_id": workflow_id, "key": "answer", "value": {"got": [1, "a"]}}


def test_cancel_resume_and_fork(api: Client) -> None:
    workflow_id = api.post("/api/v1/workflows/adm_wait_forever/start").json()["workflow_id"]
    cancelled = api.post(f"/api/v1/workflows/{workflow_id}/cancel")
    assert cancelled.status == 200 and cancelled.json()["status"] == "CANCELLED"
    resumed = api.post(f"/api/v1/workflows/{workflow_id}/resume", {})
    assert resumed.status == 200 and resumed.json()["status"] in ("PENDING", "ENQUEUED")
    api.post(f"/api/v1/workflows/{workflow_id}/cancel")

    api.post("/api/v1/workflows/adm_greet/start", {"args": ["f"], "workflow_id": "src"})
    _finished(api, "src")
    forked = api.post("/api/v1/workflows/src/fork", {"start_step": 1, "workflow_id": "forked"})
    assert forked.status == 201 and forked.json() == {"workflow_id": "forked"}
    assert _finished(api, "forked")["output"] == "hello F!"


def test_health_and_openapi(api: Client) -> None:
    assert api.get("/livez").json() == {"status": "alive"}
    assert api.get("/readyz").json() == {"status": "ready"}
    doc = api.get("/api/v1/openapi.json").json()
    assert doc["openapi"] == "3.1.0"
    routes = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert ("POST", "/api/v1/workflows/{name}/start") in routes
    assert ("GET", "/api/v1/workflows/{workflow_id}/events/{key}") in routes
    assert len(routes) == len(build_router().routes)


def test_readiness_callback(dbos: None) -> None:
    ready = {"value": False}
    server = serve(ServerOptions(port=0), readiness=lambda: ready["value"])
    try:
        client = Client(server.url)
        client.get("/readyz").problem(503, "not_ready")
        ready["value"] = True
        assert client.get("/readyz").status == 200
    finally:
        server.stop()


# -- bad input -------------------------------------------------------------------------------------


def test_malformed_json_is_400(api: Client) -> None:
    for raw in (b"{", b"[1,", b"\xff\xfe", b"NaN", b'{"args": [Infinity]}', b"[" * 100_000):
        api.post("/api/v1/workflows/adm_greet/start", raw=raw).problem(400, "malformed_json")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ([], "body must be object"),
        ({"args": "ada"}, "body.args must be array"),
        ({"kwargs": []}, "body.kwargs must be object"),
        ({"workflow_id": 7}, "body.workflow_id must be string"),
        ({"workflow_id": ""}, "at least 1"),
        ({"surprise": 1}, "unknown field(s) surprise"),
    ],
)
def test_wrong_types_are_422(api: Client, body: Any, fragment: str) -> None:
    problem = api.post("/api/v1/workflows/adm_greet/start", body).problem(422, "invalid_body")
    assert fragment in problem["detail"]


def test_arguments_that_do_not_fit_are_422(api: Client) -> None:
    reply = api.post("/api/v1/workflows/adm_greet/start", {"args": [1, 2, 3]})
    assert "too many positional arguments" in reply.problem(422, "arguments_mismatch")["detail"]


def test_fork_and_message_bodies_are_checked(api: Client) -> None:
    api.post("/api/v1/workflows/x/fork").problem(400, "body_required")
    api.post("/api/v1/workflows/x/fork", {"start_step": 0}).problem(422, "invalid_body")
    api.post("/api/v1/workflows/x/fork", {"start_step": True}).problem(422, "invalid_body")
    api.post("/api/v1/workflows/x/messages", {"topic": "t"}).problem(422, "invalid_body")
    api.post("/api/v1/workflows/x/cancel", {"force": True}).problem(422, "invalid_body")


def test_unknown_names_and_ids_are_404(api: Client) -> None:
    api.post("/api/v1/workflows/no_such_wf/start").problem(404, "workflow_function_not_found")
    start_on = {"args": ["a"], "queue": "no_such_queue"}
    api.post("/api/v1/workflows/adm_greet/start", start_on).problem(404, "queue_not_found")
    missing = "/api/v1/workflows/missing%2Fid"
    for reply in (
        api.get(missing),
        api.get(f"{missing}/steps"),
        api.post(f"{missing}/cancel"),
        api.post(f"{missing}/resume"),
        api.post(f"{missing}/fork", {"start_step": 1}),
        api.post(f"{missing}/messages", {"message": 1}),
        api.get(f"{missing}/events/k"),
    ):
        reply.problem(404, "workflow_not_found")
    api.get("/api/v1/nothing-here").problem(404, "route_not_found")


def test_wrong_method_is_405(api: Client) -> None:
    reply = api.request("DELETE", "/api/v1/workflows")
    assert reply.problem(405, "method_not_allowed") and reply.headers["allow"] == "GET"
    api.request("BREW", "/api/v1/workflows").problem(405, "method_not_allowed")


@pytest.mark.parametrize(
    "query",
    [
        "status=DONE",
        "limit=-1",
        "limit=ten",
        "limit=5000",
        "sort_desc=maybe",
        "start_time=yesterday",
        "start_time=2026-01-01T00:00:00",
        "nmae=adm_greet",
        "limit=1&limit=2",
    ],
)
def test_bad_query_is_400(api: Client, query: str) -> None:
    api.get(f"/api/v1/workflows?{query}").problem(400)


def test_event_timeout_is_bounded(api: Client) -> None:
    api.get("/api/v1/workflows/x/events/k?timeout=3600").problem(400, "invalid_request")


def test_oversized_body_is_413(dbos: None) -> None:
    server = serve(ServerOptions(port=0, max_body_bytes=64))
    try:
        reply = Client(server.url).post("/api/v1/workflows/adm_greet/start", {"args": ["x" * 100]})
        reply.problem(413, "body_too_large")
    finally:
        server.stop()


def test_non_json_content_type_is_415(api: Client) -> None:
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
        reply = api.post(
            "/api/v1/workflows/adm_greet/start",
            raw=b'{"args": ["a"]}',
            headers={"Content-Type": content_type},
        )
        reply.problem(415, "unsupported_media_type")
    ok = api.post(
        "/api/v1/workflows/adm_greet/start",
        raw=b'{"args": ["a"]}',
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert ok.status == 202


def test_nul_in_path_is_400(api: Client) -> None:
    api.get("/api/v1/workflows/a%00b").problem(400, "invalid_path")


# -- auth ------------------------------------------------------------------------------------------


def test_token_guards_everything_but_livez(secured: Client) -> None:
    assert secured.get("/livez").status == 200
    for path in ("/readyz", "/api/v1/workflows", "/api/v1/openapi.json", "/api/v1/nope"):
        reply = secured.get(path)
        reply.problem(401, "unauthorized")
        assert reply.headers["www-authenticate"].startswith("Bearer")
        secured.get(path, token="wrong").problem(401, "unauthorized")
        secured.get(path, headers={"Authorization": "Basic czNjcmV0LXRva2Vu"}).problem(401)
    assert secured.get("/api/v1/workflows", token="s3cret-token").status == 200
    started = secured.post("/api/v1/workflows/adm_greet/start", {"args": ["t"]}, token="nope")
    started.problem(401, "unauthorized")


def test_non_loopback_without_token_is_refused() -> None:
    for host in ("0.0.0.0", "::", "192.0.2.10", "example.com"):
        with pytest.raises(DBOSConfigError, match="without a bearer token"):
            AdminServer(build_router(), ServerOptions(host=host, port=0))
    with pytest.raises(DBOSConfigError, match="token is empty"):
        AdminServer(build_router(), ServerOptions(port=0, token="  "))


def test_port_in_use_is_a_clear_error(dbos: None) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(DBOSConfigError, match=r"cannot listen on 127\.0\.0\.1"):
            serve(ServerOptions(port=port))


# -- the embedded admin server (DBOSConfig run_admin_server) --------------------------------------


def test_admin_server_is_off_by_default(dbos: None) -> None:
    assert embedded_server() is None


def test_run_admin_server_serves_on_loopback(launch: Callable[..., None]) -> None:
    launch(run_admin_server=True, admin_port=0)
    server = embedded_server()
    assert server is not None and server.address[0] == "127.0.0.1"
    client = Client(server.url)
    assert client.get("/livez").status == 200
    started = client.post("/api/v1/workflows/adm_greet/start", {"args": ["e"]})
    assert _finished(client, started.json()["workflow_id"])["output"] == "hello E!"
    port = server.address[1]
    DBOS.destroy()
    assert embedded_server() is None
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


@pytest.mark.parametrize("port", [-1, 70000, "3001", True])
def test_admin_port_is_validated(port: Any, db_url: str) -> None:
    DBOS.destroy()
    with pytest.raises(DBOSConfigError, match="admin_port"):
        DBOS(config={"name": "x", "system_database_url": db_url, "admin_port": port})
    DBOS.destroy()


def test_run_admin_server_must_be_a_boolean(db_url: str) -> None:
    DBOS.destroy()
    with pytest.raises(DBOSConfigError, match="run_admin_server must be true or false"):
        DBOS(config={"name": "x", "system_database_url": db_url, "run_admin_server": "yes"})
    DBOS.destroy()


def test_problem_bodies_are_json(api: Client) -> None:
    reply: Reply = api.get("/api/v1/workflows/nope")
    assert json.loads(reply.data)["instance"] == "/api/v1/workflows/nope"
