"""End to end: the real ``keeptime run`` process on SQLite and PostgreSQL.

Each test starts the daemon with a fake ``$NOTIFY_SOCKET`` and checks what an operator relies
on: READY, every-second schedules whose ticks each run once, command and webhook targets,
debouncing over HTTP, SIGHUP reloads, and a clean SIGTERM stop. Waits are on conditions.
"""

from __future__ import annotations

import json
import signal
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from engine import DBOSClient, JsonSerializer, WorkflowStatus
from tests.daemon.daemon_process import DaemonProcess, Receiver, free_port, wait_for

pytestmark = pytest.mark.slow

JOBS = """
import json
from pathlib import Path
from engine import DBOS

HERE = Path(__file__).parent


@DBOS.step()
def append(name, value):
    with open(HERE / name, "a") as out:
        out.write(json.dumps(value) + "\\n")


@DBOS.workflow()
def tick(scheduled_time, actual_time):
    append("ticks.jsonl", DBOS.workflow_id)
    return scheduled_time.isoformat()


@DBOS.workflow()
def record_input(value):
    append("inputs.jsonl", value)
    return value
"""


def _toml_list(items: list[str]) -> str:
    return json.dumps(items)


def base_config(db_url: str, port: int) -> str:
    return textwrap.dedent(
        f"""
        [engine]
        name = "e2e"
        database_url = "{db_url}"
        [python]
        paths = ["."]
        modules = ["e2e_jobs"]
        [http]
        listen = "127.0.0.1:{port}"
        """
    )


def every_second(name: str, target: str) -> str:
    return f'\n[schedules.{name}]\ncron = "* * * * * *"\ncatchup = "none"\n{target}\n'


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "e2e_jobs.py").write_text(JOBS)
    return tmp_path


@pytest.fixture()
def client(db_url: str) -> Iterator[DBOSClient]:
    c = DBOSClient(system_database_url=db_url, serializer=JsonSerializer())
    yield c
    c.destroy()


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def runs(client: DBOSClient, schedule: str, status: str | None = None) -> list[WorkflowStatus]:
    found = client.list_workflows(workflow_id_prefix=f"sched-{schedule}-", status=status)
    return [s for s in found if "-trigger-" not in s.workflow_id]


def tick_time(status: WorkflowStatus, schedule: str) -> datetime:
    text = status.workflow_id.removeprefix(f"sched-{schedule}-").removesuffix("Z")
    return datetime.fromisoformat(text + "+00:00")


def test_daemon_runs_schedules_targets_and_debounces(
    db_url: str, workdir: Path, client: DBOSClient, receiver: Receiver
) -> None:
    port = free_port()
    command = _toml_list([sys.executable, "-c", "print('from the command')"])
    config = workdir / "keeptime.toml"
    config.write_text(
        base_config(db_url, port)
        + every_second("tick", 'workflow = "e2e_jobs:tick"\noverlap = "allow"')
        + every_second("cmd", f"command = {command}")
        + every_second("hook", f'http = {{ url = "{receiver.url}" }}')
        + '\n[debouncers.input]\nworkflow = "e2e_jobs:record_input"\nperiod = "1s"\n'
    )
    daemon = DaemonProcess(config, workdir / "daemon.log", env={"WATCHDOG_USEC": "1000000"})
    try:
        daemon.wait_ready()
        assert any(f.startswith("STATUS=running: 3 schedules") for f in daemon.notify.fields())
        wait_for(lambda: daemon.notify.has("WATCHDOG=1"), 10, "a WATCHDOG=1 ping")

        # Every tick of the every-second schedule runs once, under its deterministic ID.
        done = wait_for(
            lambda: len(runs(client, "tick", "SUCCESS")) >= 3 and runs(client, "tick", "SUCCESS"),
            30,
            "three successful ticks",
        )
        ticks = sorted(tick_time(s, "tick") for s in done)
        assert len(ticks) == len(set(ticks))
        assert all(t.microsecond == 0 for t in ticks), "tick IDs name whole-second nominal ticks"
        lines = [json.loads(x) for x in (workdir / "ticks.jsonl").read_text().splitlines()]
        assert len(lines) == len(set(lines)), "a tick ran twice"
        assert {s.workflow_id for s in done} <= set(lines)

        # The command target records its exit code and output tail as the step's output.
        cmd = wait_for(lambda: runs(client, "cmd", "SUCCESS"), 30, "a command run")[0]
        step = client.list_workflow_steps(cmd.workflow_id)[0]
        assert step["output"]["exit_code"] == 0
        assert step["output"]["output_tail"] == "from the command"
        assert any(e["line"] == "from the command" for e in daemon.events("command.output"))

        # The webhook target posts the run's context as JSON.
        wait_for(lambda: receiver.requests, 30, "a webhook call")
        body = receiver.requests[0]["body"]
        assert body["schedule"] == "hook"
        assert body["workflow_id"].startswith("sched-hook-")

        # Five debounce calls over HTTP coalesce into one run with the last input.
        ids = {_debounce(port, "input", "user-1", {"n": n}) for n in range(5)}
        assert len(ids) == 1
        (workflow_id,) = ids
        wait_for(
            lambda: _status(client, workflow_id) == "SUCCESS", 30, "the debounced run to finish"
        )
        inputs = (workdir / "inputs.jsonl").read_text().splitlines()
        assert [json.loads(x) for x in inputs] == [{"n": 4}]

        assert daemon.events("schedule.fired")
        assert daemon.events("workflow.completed")
    finally:
        code = daemon.stop()
    assert code == 0, daemon.output()
    assert daemon.notify.has("STOPPING=1")
    assert daemon.events("daemon.stopped")


def test_daemon_reloads_on_sighup_and_stops_on_sigterm(
    db_url: str, workdir: Path, client: DBOSClient
) -> None:
    port = free_port()
    true = _toml_list([sys.executable, "-c", "pass"])
    config = workdir / "keeptime.toml"
    config.write_text(base_config(db_url, port) + every_second("old", f"command = {true}"))
    daemon = DaemonProcess(config, workdir / "daemon.log")
    try:
        daemon.wait_ready()
        wait_for(lambda: runs(client, "old", "SUCCESS"), 30, "a run of the first schedule")

        # A bad config is rejected; the daemon keeps running the old one.
        good = config.read_text()
        config.write_text(good + '\n[schedules.broken]\ncron = "not cron"\n')
        daemon.signal(signal.SIGHUP)
        rejected = wait_for(lambda: daemon.events("config.rejected"), 30, "config.rejected")
        assert any("schedules.broken" in p for p in rejected[0]["problems"])
        assert daemon.process.poll() is None

        # A good one adds and removes schedules without a restart.
        config.write_text(base_config(db_url, port) + every_second("new", f"command = {true}"))
        daemon.signal(signal.SIGHUP)
        reloaded = wait_for(lambda: daemon.events("config.reloaded"), 30, "config.reloaded")[0]
        assert reloaded["schedules_added"] == ["new"]
        assert reloaded["schedules_removed"] == ["old"]
        reloaded_at = datetime.fromisoformat(reloaded["timestamp"])
        wait_for(lambda: len(runs(client, "new", "SUCCESS")) >= 2, 30, "two runs of the new one")
        late = [s for s in runs(client, "old") if tick_time(s, "old") > reloaded_at]
        assert late == [], "a removed schedule fired after the reload"
    finally:
        code = daemon.stop()
    assert code == 0, daemon.output()
    assert daemon.notify.has("STOPPING=1")
    stopping = daemon.events("daemon.stopping")
    assert stopping and stopping[0]["signal"] == "SIGTERM"


def _debounce(port: int, name: str, key: str, value: Any) -> str:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/debouncers/{name}/{key}",
        data=json.dumps({"input": value}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 202
        workflow_id: str = json.loads(response.read())["workflow_id"]
        return workflow_id


def _status(client: DBOSClient, workflow_id: str) -> str | None:
    status = client.get_workflow_status(workflow_id)
    return status.status if status is not None else None
