"""Restarts after config and code edits (issue 14): real daemons, real databases.

A daemon runs schedule ``x`` (a workflow with a durable sleep) and ``y`` (a command). It is
stopped with SIGTERM while their runs are in flight; the config loses ``y`` and gains other
edits, the job module is edited, and a new daemon starts on the same database. ``x``'s run must
resume (its first step is not run again) and ``x`` must go on firing as its overlap policy says;
``y``'s run, whose workflow no longer exists, must end CANCELLED with a ``workflow.orphaned``
line. With an explicit ``application_version`` that changes, runs of the old version are
reported at start and can be listed and acted on from the CLI and the HTTP API.

Waits poll conditions with deadlines; times come from the marks the job writes and the IDs.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from daemon.cli import main
from engine import DBOSClient, JsonSerializer, WorkflowStatus
from tests.daemon.daemon_process import DaemonProcess, free_port, wait_for

pytestmark = pytest.mark.slow

#: The durable sleep of each run of ``x``: long enough to stop one daemon and start the next
#: while it sleeps, with several ticks of ``x`` left before it ends.
SLEEP_SECONDS = 8

JOBS = f"""
import json
import time
from pathlib import Path

from engine import DBOS

HERE = Path(__file__).parent


@DBOS.step()
def mark(event):
    with open(HERE / "marks.jsonl", "a") as out:
        out.write(json.dumps({{"id": DBOS.workflow_id, "event": event, "at": time.time()}}) + "\\n")


@DBOS.workflow()
def slow_tick(scheduled_time, actual_time):
    mark("start")
    DBOS.sleep({SLEEP_SECONDS})
    mark("end")
    return scheduled_time.isoformat()
"""

# y's command says it started, then outlives any test unless stopped.
Y_COMMAND = [
    sys.executable,
    "-c",
    "import os, pathlib, time; pathlib.Path('y-started').write_text(str(os.getpid())); "
    "time.sleep(120)",
]


def _engine(db_url: str, port: int, version: str | None = None) -> str:
    text = f"""
        [engine]
        name = "restarts"
        database_url = "{db_url}"
        """
    if version is not None:
        text += f'application_version = "{version}"\n'
    text += f"""
        [python]
        paths = ["."]
        modules = ["restart_jobs"]
        [http]
        listen = "127.0.0.1:{port}"
        """
    return textwrap.dedent(text)


def _schedule(name: str, body: str, overlap: str = "skip", comment: str = "") -> str:
    return (
        f"\n{comment}[schedules.{name}]\n"
        f'cron = "* * * * * *"\ncatchup = "none"\noverlap = "{overlap}"\n{body}\n'
    )


X_TARGET = 'workflow = "restart_jobs:slow_tick"'
Y_TARGET = f'command = {{ argv = {json.dumps(Y_COMMAND)}, cwd = "." }}'


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "restart_jobs.py").write_text(JOBS)
    return tmp_path


@pytest.fixture()
def client(db_url: str) -> Iterator[DBOSClient]:
    c = DBOSClient(system_database_url=db_url, serializer=JsonSerializer())
    yield c
    c.destroy()


def _edit_job_code(workdir: Path) -> None:
    """A code change that alters the engine's hash of the workflows' sources."""
    jobs = workdir / "restart_jobs.py"
    jobs.write_text(
        jobs.read_text()
        + '\n\n@DBOS.workflow()\ndef added_later(value):\n    return {"edited": value}\n'
    )


def _runs(client: DBOSClient, schedule: str, status: str | None = None) -> list[WorkflowStatus]:
    found = client.list_workflows(
        workflow_id_prefix=f"sched-{schedule}-", status=status, load_input=False
    )
    return [s for s in found if "-trigger-" not in s.workflow_id]


def _tick(workflow_id: str) -> float:
    text = workflow_id.rsplit("-", 3)[-3:]
    return datetime.fromisoformat("-".join(text).replace("Z", "+00:00")).timestamp()


def _marks(workdir: Path) -> list[dict[str, Any]]:
    path = workdir / "marks.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _marked(workdir: Path, workflow_id: str, event: str) -> list[float]:
    return [m["at"] for m in _marks(workdir) if m["id"] == workflow_id and m["event"] == event]


def _status(client: DBOSClient, workflow_id: str) -> str:
    status = client.get_workflow_status(workflow_id)
    assert status is not None, workflow_id
    return status.status


def _stop(daemon: DaemonProcess) -> None:
    code = daemon.stop()
    assert code == 0, daemon.output()


def _first_run_in_flight(client: DBOSClient, workdir: Path) -> str:
    def started() -> str | None:
        for run in _runs(client, "x", "PENDING"):
            if _marked(workdir, run.workflow_id, "start"):
                return run.workflow_id
        return None

    found: str = wait_for(started, 30, "a run of x in flight (its first step done)")
    return found


def _poll_until(
    deadline_seconds: float, what: str, check: Callable[[], bool], each: Callable[[], None]
) -> None:
    """Call ``each`` every 0.1 s until ``check`` holds (fail naming ``what`` at the deadline)."""
    deadline = time.monotonic() + deadline_seconds
    while not check():
        each()
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {deadline_seconds}s waiting for {what}")
        time.sleep(0.1)


# -- a config edit with a run in flight, then a restart, for each overlap policy -------------------


@pytest.mark.parametrize("overlap", ["skip", "buffer_one", "buffer_all", "cancel_other", "allow"])
def test_restart_after_config_and_code_edits_resumes_runs_in_flight(
    db_url: str, workdir: Path, client: DBOSClient, overlap: str
) -> None:
    port = free_port()
    config = workdir / "keeptime.toml"
    config.write_text(
        _engine(db_url, port) + _schedule("x", X_TARGET, overlap) + _schedule("y", Y_TARGET)
    )
    first = DaemonProcess(config, workdir / "first.log")
    try:
        first.wait_ready()
        _first_run_in_flight(client, workdir)
        y_pid = workdir / "y-started"
        wait_for(lambda: y_pid.exists() and y_pid.read_text(), 30, "y's command to start")
        stop_began = time.monotonic()
    finally:
        _stop(first)
    stopped_at = time.time()
    # The stop ended y's command instead of waiting for it (it would sleep for two minutes).
    assert time.monotonic() - stop_began < 20
    assert first.events("command.stopped")[0]["commands"] == 1
    _assert_gone(int(y_pid.read_text()))
    in_flight = [s.workflow_id for s in _runs(client, "x", "PENDING")]
    (y_run,) = [s.workflow_id for s in _runs(client, "y", "PENDING")]
    assert in_flight, "x had no run in flight at the stop"

    # Edit: y goes, x's section gets a comment, the job module gains a workflow.
    config.write_text(
        _engine(db_url, port) + _schedule("x", X_TARGET, overlap, comment="# edited\n")
    )
    _edit_job_code(workdir)
    second = DaemonProcess(config, workdir / "second.log")
    held_seen: list[int] = []

    def sample_held() -> None:
        held_seen.append(_held(client))

    try:
        started = time.monotonic()
        second.wait_ready()
        ready_seconds = time.monotonic() - started

        # y's run cannot be resumed (its workflow went with the config): cancelled, and said so.
        wait_for(lambda: _status(client, y_run) == "CANCELLED", 30, "y's run to be cancelled")
        orphaned = [e for e in second.events("workflow.orphaned") if e["workflow_id"] == y_run]
        assert len(orphaned) == 1, second.output()
        assert orphaned[0]["level"] == "warning"
        assert orphaned[0]["workflow"] == "keeptime.schedule.y"
        assert orphaned[0]["action"] == "cancelled"
        assert "no workflow named 'keeptime.schedule.y'" in orphaned[0]["reason"]

        # x's runs in flight resume: none stays PENDING, none runs its first step again.
        terminal = ("SUCCESS", "CANCELLED")
        _poll_until(
            SLEEP_SECONDS + 30,
            "x's runs in flight to finish",
            lambda: all(_status(client, r) in terminal for r in in_flight),
            sample_held,
        )
        for run in in_flight:
            assert len(_marked(workdir, run, "start")) <= 1, f"{run} ran its first step twice"
            status = client.get_workflow_status(run)
            assert status is not None and status.recovery_attempts >= 2, "not resumed"
        ends = [t for run in in_flight for t in _marked(workdir, run, "end")]
        if overlap == "cancel_other":
            _check_cancel_other(client, workdir, in_flight, stopped_at)
        else:
            assert {_status(client, r) for r in in_flight} == {"SUCCESS"}
            for run in in_flight:
                assert len(_marked(workdir, run, "end")) == 1
            finished = max(ends)
            print(
                f"\n[{overlap}] second daemon ready in {ready_seconds:.2f} s; run in flight "
                f"resumed and finished {finished - stopped_at:.2f} s after the stop; after the "
                f"start, recovery took {_after_start(second, 'recovered'):.3f} s and y's run "
                f"was cancelled after {_after_start(second, 'workflow.orphaned'):.3f} s"
            )
            _check_policy(overlap, client, workdir, in_flight, stopped_at, finished, held_seen)
            if overlap in ("buffer_one", "buffer_all"):
                print(f"[{overlap}] held ticks seen: max {max(held_seen, default=0)}")
    finally:
        _stop(second)


def _after_start(daemon: DaemonProcess, event_prefix: str) -> float:
    """Seconds from ``daemon.starting`` to the first log line whose event starts so."""

    def at(record: dict[str, Any]) -> float:
        return datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")).timestamp()

    events = daemon.events()
    start = at(next(e for e in events if e["event"] == "daemon.starting"))
    return at(next(e for e in events if str(e["event"]).startswith(event_prefix))) - start


def _assert_gone(pid: int) -> None:
    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_for(gone, 10, f"the command's process {pid} to end")


def _later_runs(client: DBOSClient, in_flight: list[str], after: float) -> list[WorkflowStatus]:
    """Runs of x other than those in flight at the stop, with a tick after ``after``."""
    return sorted(
        (s for s in _runs(client, "x") if s.workflow_id not in in_flight),
        key=lambda s: _tick(s.workflow_id),
    )


def _check_policy(
    overlap: str,
    client: DBOSClient,
    workdir: Path,
    in_flight: list[str],
    stopped_at: float,
    finished: float,
    held_seen: list[int],
) -> None:
    """x goes on firing as its policy says, once its resumed run finished at ``finished``."""

    def started_after_finish() -> list[WorkflowStatus]:
        return [
            s
            for s in _later_runs(client, in_flight, stopped_at)
            if any(t >= finished - 0.05 for t in _marked(workdir, s.workflow_id, "start"))
        ]

    nxt = wait_for(started_after_finish, 30, "x to fire after its resumed run")[0]
    next_start = _marked(workdir, nxt.workflow_id, "start")[0]
    print(f"[{overlap}] next run {nxt.workflow_id} started {next_start - finished:.2f} s later")
    new_ticks = [
        _tick(s.workflow_id)
        for s in _later_runs(client, in_flight, stopped_at)
        if _tick(s.workflow_id) > stopped_at
    ]
    if overlap == "skip":
        # Ticks while the resumed run still went were skipped; the next one ran.
        assert not [t for t in new_ticks if t < finished - 1.5], "a tick overlapped the run"
        assert _tick(nxt.workflow_id) >= finished - 1.5
    elif overlap in ("buffer_one", "buffer_all"):
        # A tick that came during the resumed run waited for it, then ran (not alongside it).
        assert _tick(nxt.workflow_id) < finished
        assert next_start >= finished - 0.05
        for _ in range(10):
            held_seen.append(_held(client))
            time.sleep(0.1)
        if overlap == "buffer_one":
            assert max(held_seen) <= 1, "buffer_one keeps at most one tick waiting"
        else:
            assert max(held_seen) >= 2, "buffer_all keeps every tick that comes during a run"
    elif overlap == "allow":
        # Ticks during the resumed run started at once, alongside it.
        during = [t for t in new_ticks if t < finished - 1.5]
        assert during, "allow starts every tick, even while the resumed run goes"


def _held(client: DBOSClient) -> int:
    return sum(
        1 for s in _runs(client, "x", "ENQUEUED") if (s.queue_name or "").startswith("_keeptime")
    )


def _check_cancel_other(
    client: DBOSClient, workdir: Path, in_flight: list[str], stopped_at: float
) -> None:
    """The resumed run counts as running: the next tick cancels it and starts its own run."""
    assert {_status(client, r) for r in in_flight} == {"CANCELLED"}
    later = wait_for(
        lambda: [s for s in _later_runs(client, in_flight, stopped_at) if s.status == "PENDING"],
        30,
        "a new run of x after the cancelled one",
    )
    assert _tick(later[0].workflow_id) > stopped_at
    for _ in range(10):  # the policy keeps one run going at a time
        assert len(_runs(client, "x", "PENDING")) <= 1
        time.sleep(0.2)


# -- held ticks and queued runs of removed schedules -----------------------------------------------


def test_restart_cancels_waiting_work_of_removed_schedules_and_frees_their_queue(
    db_url: str, workdir: Path, client: DBOSClient
) -> None:
    port = free_port()
    config = workdir / "keeptime.toml"
    quick = f"command = {json.dumps([sys.executable, '-c', 'pass'])}"
    queue = "\n[queues.q]\nconcurrency = 1\n"
    keeper = _schedule("keeper", quick + '\nqueue = "q"', "allow")
    config.write_text(
        _engine(db_url, port)
        + queue
        + keeper
        + _schedule("buffered", X_TARGET, "buffer_all")
        + _schedule("queued", Y_TARGET + '\nqueue = "q"', "allow")
    )
    first = DaemonProcess(config, workdir / "first.log")
    try:
        first.wait_ready()
        wait_for(lambda: (workdir / "y-started").exists(), 30, "the queued command to start")
        wait_for(lambda: len(_runs(client, "buffered", "ENQUEUED")) >= 2, 30, "two held ticks")
        wait_for(lambda: len(_runs(client, "keeper", "ENQUEUED")) >= 1, 30, "keeper waiting")
    finally:
        _stop(first)
    buffered_run = _runs(client, "buffered", "PENDING")
    held = [s.workflow_id for s in _runs(client, "buffered", "ENQUEUED")]
    queued_running = [s.workflow_id for s in _runs(client, "queued", "PENDING")]
    queued_waiting = [s.workflow_id for s in _runs(client, "queued", "ENQUEUED")]
    assert len(buffered_run) == 1 and held and len(queued_running) == 1 and queued_waiting

    config.write_text(_engine(db_url, port) + queue + keeper)
    second = DaemonProcess(config, workdir / "second.log")
    try:
        second.wait_ready()
        ready = _ready_time(second)
        # The queued command's run held the queue's one slot; cancelled, the keeper runs again.
        wait_for(
            lambda: [
                s
                for s in _runs(client, "keeper", "SUCCESS")
                if s.updated_at is not None and s.updated_at / 1000 > ready
            ],
            30,
            "the keeper schedule's runs to go through queue q again",
        )
        cancelled = held + queued_running + queued_waiting
        wait_for(
            lambda: all(_status(client, r) == "CANCELLED" for r in cancelled),
            30,
            "the removed schedules' waiting runs to be cancelled",
        )
        logged = {e["workflow_id"]: e for e in second.events("workflow.orphaned")}
        assert set(cancelled) <= set(logged), second.output()
        assert "held by the overlap policy" in logged[held[0]]["reason"]
        assert "schedule 'buffered' was removed" in logged[held[0]]["reason"]
        assert "waiting on queue 'q'" in logged[queued_waiting[0]]["reason"]
        assert (
            "no workflow named 'keeptime.schedule.queued'" in (logged[queued_running[0]]["reason"])
        )
        # A run of a removed schedule whose workflow still exists was resumed and finished.
        (run,) = buffered_run
        wait_for(
            lambda: _status(client, run.workflow_id) == "SUCCESS", 30, "the buffered run to end"
        )
        assert len(_marked(workdir, run.workflow_id, "start")) == 1
        assert run.workflow_id not in logged
    finally:
        _stop(second)


def _ready_time(daemon: DaemonProcess) -> float:
    ready = daemon.events("daemon.ready")
    assert ready
    return datetime.fromisoformat(ready[0]["timestamp"].replace("Z", "+00:00")).timestamp()


# -- runs of another application version -----------------------------------------------------------


def test_runs_of_another_version_are_reported_listed_and_can_be_acted_on(
    db_url: str,
    workdir: Path,
    client: DBOSClient,
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = free_port()
    config = workdir / "keeptime.toml"
    schedules = _schedule("x", X_TARGET, "allow") + _schedule("s", X_TARGET, "skip")
    config.write_text(_engine(db_url, port, "v1") + schedules)
    first = DaemonProcess(config, workdir / "first.log")
    try:
        first.wait_ready()
        wait_for(
            lambda: sum(1 for r in _runs(client, "x", "PENDING") if _marks_of(workdir, r)) >= 3,
            30,
            "three runs of x in flight",
        )
        wait_for(
            lambda: [r for r in _runs(client, "s", "PENDING") if _marks_of(workdir, r)],
            30,
            "a run of s in flight",
        )
    finally:
        _stop(first)
    stopped_at = time.time()
    old = sorted(s.workflow_id for s in _runs(client, "x", "PENDING"))
    (s_old,) = [s.workflow_id for s in _runs(client, "s", "PENDING")]
    pending = _runs(client, "x", "PENDING") + _runs(client, "s", "PENDING")
    assert {s.app_version for s in pending} == {"v1"}

    config.write_text(_engine(db_url, port, "v2") + schedules)
    second = DaemonProcess(config, workdir / "second.log")
    try:
        second.wait_ready()
        # One warning at start: counts per version and the commands to list and act.
        (warning,) = second.events("workflows.other_versions")
        assert warning["level"] == "warning"
        assert warning["application_version"] == "v2"
        assert warning["versions"] == {"v1": len(old) + 1}
        assert (
            f"keeptime workflows list -c {config} --app-version v1" in (warning["list_commands"][0])
        )
        assert warning["list_urls"] == [
            f"GET http://127.0.0.1:{port}/api/v1/workflows?app_version=v1&status=PENDING"
            "&status=ENQUEUED"
        ]
        assert any("--app-version v2" in c for c in warning["act_commands"])

        # v2 never waits on them: s (skip) fires although its v1 run is still PENDING, and the
        # scheduler says why (its record's extra fields are keys of the JSON line).
        wait_for(
            lambda: [r for r in _runs(client, "s") if r.app_version == "v2"],
            30,
            "a run of s on v2",
        )
        not_waiting = [e for e in second.events() if e.get("workflow_id") == s_old]
        assert not_waiting and "application version 'v1'" in not_waiting[0]["reason"]
        assert not_waiting[0]["schedule"] == "s" and not_waiting[0]["level"] == "warning"
        wait_for(
            lambda: [s for s in _runs(client, "x", "SUCCESS") if s.app_version == "v2"],
            SLEEP_SECONDS + 20,
            "a run of x on v2",
        )
        for run in [*old, s_old]:
            assert _status(client, run) == "PENDING", "v2 resumed a run of v1"

        # The CLI lists them by version.
        code = main(["workflows", "list", "-c", str(config), "--app-version", "v1", "-o", "json"])
        out, err = capsys.readouterr()
        assert code == 0, err
        listed = {r["workflow_id"] for r in json.loads(out) if r["status"] == "PENDING"}
        assert listed == {*old, s_old}
        code = main(["workflows", "list", "-c", str(config), "--app-version", "v9"])
        out, _ = capsys.readouterr()
        assert code == 0 and old[0] not in out

        # So does the HTTP API.
        query = urllib.parse.urlencode([("app_version", "v1"), ("status", "PENDING")])
        body = _http("GET", port, f"/api/v1/workflows?{query}")
        assert {w["workflow_id"] for w in body["workflows"]} == {*old, s_old}

        # A PENDING run of v1: the CLI's resume says why it does nothing and what does.
        code = main(["workflows", "resume", "-c", str(config), old[0]])
        out, err = capsys.readouterr()
        assert code == 1
        assert "is PENDING" in err and "--app-version v2" in err and "/resume" in err

        # Resume through the daemon (cancel, then resume): it runs there, from its last step.
        _http("POST", port, f"/api/v1/workflows/{old[0]}/cancel")
        _http("POST", port, f"/api/v1/workflows/{old[0]}/resume")
        wait_for(lambda: _status(client, old[0]) == "SUCCESS", 30, "the resumed run to end")
        assert len(_marked(workdir, old[0], "start")) == 1
        assert len(_marked(workdir, old[0], "end")) == 1

        # Fork one onto v2 from the step after its last recorded one (a new run).
        steps = client.list_workflow_steps(old[1])
        next_step = max(s["function_id"] for s in steps) + 1
        fork = ["workflows", "fork", "-c", str(config), old[1], "--step", str(next_step)]
        code = main([*fork, "--app-version", "v2", "-o", "json"])
        out, err = capsys.readouterr()
        assert code == 0, err
        forked = json.loads(out)["workflow_id"]
        wait_for(lambda: _status(client, forked) == "SUCCESS", 30, "the forked run to end")
        assert _marked(workdir, forked, "start") == [], "the fork ran a recorded step again"
        assert len(_marked(workdir, forked, "end")) == 1

        # Cancel the rest from the CLI.
        for run in [*old[1:], s_old]:
            assert main(["workflows", "cancel", "-c", str(config), run]) == 0
        capsys.readouterr()
        assert {_status(client, r) for r in [*old[1:], s_old]} == {"CANCELLED"}
        print(f"\nother versions: {len(old)} v1 runs left at the stop {stopped_at:.0f}")
    finally:
        _stop(second)


def _marks_of(workdir: Path, run: WorkflowStatus) -> bool:
    return bool(_marked(workdir, run.workflow_id, "start"))


def _http(method: str, port: int, path: str) -> dict[str, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    with urllib.request.urlopen(request, timeout=10) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


def test_the_fixed_default_version_applies_only_without_an_explicit_one(tmp_path: Path) -> None:
    from daemon.config import parse_config
    from daemon.engine_setup import DEFAULT_APPLICATION_VERSION, dbos_config

    path = tmp_path / "keeptime.toml"
    plain = parse_config("[engine]\n", path, check_files=False)
    assert dbos_config(plain)["application_version"] == DEFAULT_APPLICATION_VERSION == "keeptime"
    explicit = parse_config('[engine]\napplication_version = "v7"\n', path, check_files=False)
    assert dbos_config(explicit)["application_version"] == "v7"


def test_reload_that_removes_a_schedule_cancels_its_held_ticks(
    db_url: str, workdir: Path, client: DBOSClient
) -> None:
    port = free_port()
    config = workdir / "keeptime.toml"
    config.write_text(_engine(db_url, port) + _schedule("buffered", X_TARGET, "buffer_all"))
    daemon = DaemonProcess(config, workdir / "daemon.log")
    try:
        daemon.wait_ready()
        wait_for(lambda: len(_runs(client, "buffered", "ENQUEUED")) >= 2, 30, "two held ticks")
        (running,) = [s.workflow_id for s in _runs(client, "buffered", "PENDING")]
        held = [s.workflow_id for s in _runs(client, "buffered", "ENQUEUED")]
        config.write_text(_engine(db_url, port))
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: daemon.events("config.reloaded"), 30, "config.reloaded")
        wait_for(
            lambda: not _runs(client, "buffered", "ENQUEUED"), 30, "the held ticks to be cancelled"
        )
        logged = {e["workflow_id"] for e in daemon.events("workflow.orphaned")}
        cancelled = {s.workflow_id for s in _runs(client, "buffered", "CANCELLED")}
        assert len(held) >= 2 and set(held) <= cancelled <= logged
        # The run that was going when the schedule was removed finishes in this process.
        wait_for(lambda: _status(client, running) == "SUCCESS", 30, "the running tick to end")
        assert running not in logged
    finally:
        _stop(daemon)
