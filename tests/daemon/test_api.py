"""The daemon's HTTP API (daemon/api.py) on SQLite and PostgreSQL: debouncers, schedules, metrics,
auth and a schemathesis fuzz run from the OpenAPI document."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.api import ApiServerHandle, start_api
from daemon.config import load_config
from daemon.config_model import Config
from daemon.engine_setup import (
    create_queues,
    dbos_config,
    register_debouncer_targets,
    register_schedule_targets,
)
from daemon.registry_sync import RegistrySync
from engine import DBOS
from tests.http_client import Client, wait_for

TOKEN = "test-token-123"
CONFIG = """
[engine]
name = "apitest"
database_url = "{db_url}"

[python]
modules = ["tests.daemon.api_jobs"]

[http]
listen = "127.0.0.1:0"
max_body_bytes = 4096

[queues.apiq]
worker_concurrency = 2

[schedules.hourly]
cron = "0 * * * *"
command = ["/bin/true"]
queue = "apiq"

[debouncers.reindex]
workflow = "tests.daemon.api_jobs:api_reindex"
period = "1s"

[debouncers.slow]
workflow = "tests.daemon.api_jobs:api_reindex"
period = "1h"
"""


@pytest.fixture()
def config(db_url: str, tmp_path: Path) -> Config:
    path = tmp_path / "keeptime.toml"
    path.write_text(CONFIG.format(db_url=db_url))
    return load_config(path)


@pytest.fixture()
def handle(config: Config) -> Iterator[ApiServerHandle]:
    DBOS.destroy()
    DBOS(config=dbos_config(config))
    create_queues(config)
    schedule_workflows = register_schedule_targets(config.schedules)
    debouncer_workflows = register_debouncer_targets(config.debouncers)
    DBOS.launch()
    sync = RegistrySync()
    sync.apply(config, schedule_workflows, debouncer_workflows)
    api = start_api(lambda: config, token=TOKEN, readiness=sync.schedules_loaded.is_set)
    yield api
    api.stop()
    DBOS.destroy()


@pytest.fixture()
def api(handle: ApiServerHandle) -> Client:
    return Client(handle.url, token=TOKEN)


def _final(api: Client, workflow_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        body: dict[str, Any] = api.get(f"/api/v1/workflows/{workflow_id}").json()
        return body if body["status"] not in ("PENDING", "ENQUEUED") else None

    result: dict[str, Any] = wait_for(done, timeout=30)
    return result


# -- debouncers ------------------------------------------------------------------------------------


def test_debounce_coalesces_calls_into_one_run_with_the_last_input(api: Client) -> None:
    ids = set()
    for n in range(5):
        reply = api.post("/api/v1/debouncers/reindex/user-1", {"input": {"n": n}})
        assert reply.status == 202
        ids.add(reply.json()["workflow_id"])
    assert len(ids) == 1
    status = _final(api, ids.pop())
    assert status["status"] == "SUCCESS"
    assert status["output"] == {"indexed": {"n": 4}}


def test_debounce_errors(api: Client) -> None:
    api.post("/api/v1/debouncers/nope/k", {"input": 1}).problem(404, "debouncer_not_found")
    api.post("/api/v1/debouncers/reindex/k", {"inptu": 1}).problem(422, "invalid_body")
    api.post("/api/v1/debouncers/reindex/k", raw=b'{"input": ').problem(400, "malformed_json")
    api.post("/api/v1/debouncers/reindex/k", {"input": "x" * 5000}).problem(413)
    api.post(
        "/api/v1/debouncers/reindex/k", raw=b"input=1", headers={"Content-Type": "text/plain"}
    ).problem(415, "unsupported_media_type")


# -- schedules -------------------------------------------------------------------------------------


def test_list_pause_resume_schedules(api: Client) -> None:
    schedules = {s["name"]: s for s in api.get("/api/v1/schedules").json()["schedules"]}
    hourly = schedules["hourly"]
    assert hourly["cron"] == "0 * * * *" and hourly["paused"] is False
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:00:00Z", hourly["next_fire_time"])
    assert api.post("/api/v1/schedules/hourly/pause").json() == {"name": "hourly", "paused": True}
    paused = api.get("/api/v1/schedules").json()["schedules"][0]
    assert paused["paused"] is True and paused["next_fire_time"] is None
    assert api.post("/api/v1/schedules/hourly/resume", {}).json()["paused"] is False


def test_trigger_and_backfill(api: Client) -> None:
    triggered = api.post("/api/v1/schedules/hourly/trigger")
    assert triggered.status == 202
    assert triggered.json()["workflow_id"].startswith("sched-hourly-trigger-")
    assert _final(api, triggered.json()["workflow_id"])["status"] == "SUCCESS"
    window = {"from": "2026-01-01T00:00:00Z", "to": "2026-01-01T02:00:00+00:00"}
    backfilled = api.post("/api/v1/schedules/hourly/backfill", window)
    assert backfilled.status == 202
    ids = backfilled.json()["workflow_ids"]
    assert ids == [f"sched-hourly-2026-01-01T0{h}:00:00Z" for h in range(3)]
    assert all(_final(api, i)["status"] == "SUCCESS" for i in ids)


def test_schedule_errors(api: Client) -> None:
    for verb in ("trigger", "pause", "resume"):
        api.post(f"/api/v1/schedules/nope/{verb}").problem(404, "schedule_not_found")
    window = {"from": "2026-01-01T00:00:00Z", "to": "2026-01-01T01:00:00Z"}
    api.post("/api/v1/schedules/nope/backfill", window).problem(404, "schedule_not_found")
    api.post("/api/v1/schedules/hourly/backfill").problem(400, "body_required")
    bad = {"from": "yesterday", "to": "2026-01-01T01:00:00Z"}
    api.post("/api/v1/schedules/hourly/backfill", bad).problem(422, "invalid_body")
    naive = {"from": "2026-01-01T00:00:00", "to": "2026-01-01T01:00:00Z"}
    api.post("/api/v1/schedules/hourly/backfill", naive).problem(422, "invalid_body")
    backwards = {"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}
    api.post("/api/v1/schedules/hourly/backfill", backwards).problem(422, "invalid_range")
    api.post("/api/v1/schedules/hourly/backfill", {**window, "x": 1}).problem(422)


# -- metrics, health, auth -------------------------------------------------------------------------

_SAMPLE = re.compile(
    r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?P<labels>[a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*"'
    r'(,[a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*")*)\})? (?P<value>[-+0-9.eE]+|[+-]Inf|NaN)$'
)


def _parse_metrics(text: str) -> dict[str, float]:
    """Check every line of the exposition format; return ``{name{labels}: value}``."""
    assert text.endswith("\n")
    samples: dict[str, float] = {}
    typed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram")
            typed.add(name)
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a Prometheus sample line: {line!r}"
        base = re.sub(r"_(bucket|sum|count)$", "", match["name"])
        assert base in typed or match["name"] in typed, line
        samples[line.rsplit(" ", 1)[0]] = float(match["value"])
    return samples


def test_metrics(api: Client) -> None:
    workflow_id = api.post("/api/v1/schedules/hourly/trigger").json()["workflow_id"]
    _final(api, workflow_id)
    window = {"from": "2026-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}
    tick_run = api.post("/api/v1/schedules/hourly/backfill", window).json()["workflow_ids"][0]
    _final(api, tick_run)
    api.post("/api/v1/debouncers/slow/user-9", {"input": 1})
    reply = api.get("/metrics")
    assert reply.status == 200 and reply.content_type.startswith("text/plain; version=0.0.4")
    samples = _parse_metrics(reply.data.decode())
    assert samples['keeptime_schedule_runs_total{schedule="hourly",status="SUCCESS"}'] == 2
    assert samples['keeptime_schedule_tick_lateness_seconds_count{schedule="hourly"}'] == 1
    lateness = 'keeptime_schedule_tick_lateness_seconds_bucket{schedule="hourly",le="+Inf"}'
    assert samples[lateness] == 1
    assert samples['keeptime_schedule_last_success_timestamp_seconds{schedule="hourly"}'] > 1e9
    assert samples['keeptime_debounces_pending{workflow="api_reindex"}'] == 1
    assert any(k.startswith("keeptime_queue_depth{") for k in samples)
    again = _parse_metrics(api.get("/metrics").data.decode())
    assert again['keeptime_schedule_runs_total{schedule="hourly",status="SUCCESS"}'] == 2


def test_health_and_auth(api: Client) -> None:
    assert api.get("/livez", token="").status == 200
    assert api.get("/readyz").json() == {"status": "ready"}
    for path in ("/readyz", "/metrics", "/api/v1/schedules", "/api/v1/openapi.json"):
        api.get(path, token="wrong").problem(401, "unauthorized")
    api.post("/api/v1/debouncers/reindex/k", {"input": 1}, token="").problem(401)
    doc = api.get("/api/v1/openapi.json").json()
    assert "/api/v1/debouncers/{name}/{key}" in doc["paths"] and "/metrics" in doc["paths"]


def test_refuses_public_address_without_token(config: Config) -> None:
    from dataclasses import replace

    from engine.error import DBOSConfigError

    public = replace(config, http=replace(config.http, host="0.0.0.0", listen="0.0.0.0:0"))
    with pytest.raises(DBOSConfigError, match="without a bearer token"):
        start_api(public, token=None, readiness=lambda: True)


# -- fuzzing ---------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_fuzz_from_openapi_document_finds_no_server_errors(api: Client) -> None:
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from schemathesis.checks import not_a_server_error

    doc = api.get("/api/v1/openapi.json").json()
    schema = schemathesis.openapi.from_dict(doc)
    operations = [result.ok() for result in schema.get_all_operations()]
    modes = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
    strategy = st.one_of([op.as_strategy(generation_mode=m) for op in operations for m in modes])
    base_url = f"http://{api.host}:{api.port}"

    @settings(
        max_examples=300,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        if case.path == "/api/v1/workflows/{workflow_id}/events/{key}":
            case.query = {**(case.query or {}), "timeout": 0}
        response = case.call(base_url=base_url, headers={"Authorization": f"Bearer {TOKEN}"})
        case.validate_response(response, checks=[not_a_server_error])

    run()
