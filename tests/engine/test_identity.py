"""Executor identity: default IDs per process, restarts, duplicates refused, takeovers.

Real processes (tests/engine/identity_app.py) on both backends, killed with SIGKILL.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select as sql_select
from sqlalchemy import text, update

from engine import DBOS, DBOSClient
from engine.core.liveness import missed_beat_seconds
from engine.error import DBOSExecutorIdInUseError
from engine.runtime.executor import WATCH_INTERVAL_SECONDS
from engine.storage.database import Database, parse_database_url
from engine.storage.schema import (
    EXECUTOR_PROCESS_COLUMNS,
    SCHEMA_VERSION,
    executors,
    quoted_name,
    schema_version,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
HOST = socket.gethostname()
STEPS = 40  # identity_app.STEPS


class App:
    """One identity_app process."""

    def __init__(self, db_url: str, ledger: Path, executor_id: str, timeout: float, starts: int):
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.engine.identity_app",
                db_url,
                str(ledger),
                executor_id,
                str(timeout),
                str(starts),
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def first_line(self, timeout: float = 60) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise AssertionError(f"no output within {timeout} s")
        line = self.proc.stdout.readline().decode().strip()
        if not line:
            raise AssertionError(f"exited ({self.proc.wait()}): {self.stderr()}")
        return line

    def executor_id(self) -> str:
        line = self.first_line()
        assert line.startswith("executor "), line
        return line.removeprefix("executor ")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stderr(self) -> str:
        assert self.proc.stderr is not None
        return self.proc.stderr.read().decode()[-3000:]


@pytest.fixture()
def apps(db_url: str, tmp_path: Path) -> Iterator[Callable[..., App]]:
    started: list[App] = []
    ledger = tmp_path / "ledger.txt"

    def start(executor_id: str = "-", timeout: float = 30, starts: int = 0) -> App:
        app = App(db_url, ledger, executor_id, timeout, starts)
        started.append(app)
        return app

    yield start
    for app in started:
        if app.proc.poll() is None:
            app.kill()
        for stream in (app.proc.stdout, app.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture()
def client(db_url: str) -> Iterator[DBOSClient]:
    c = DBOSClient(system_database_url=db_url)
    yield c
    c.destroy()


def ledger_runs(tmp_path: Path) -> list[tuple[str, int, int]]:
    path = tmp_path / "ledger.txt"
    if not path.exists():
        return []
    runs = []
    for line in path.read_text().splitlines():
        wf, step, pid = line.rsplit(":", 2)
        runs.append((wf, int(step), int(pid)))
    return runs


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll until ``condition``; returns the seconds it took."""
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - began


def assert_no_recorded_step_ran_twice(tmp_path: Path, client: DBOSClient) -> None:
    """Each step ran once, except one in flight per killed process (it ran at most twice)."""
    counts = Counter((wf, step) for wf, step, _ in ledger_runs(tmp_path))
    for wf in {wf for wf, _ in counts}:
        assert client.retrieve_workflow(wf).get_result() == sum(range(STEPS))
        twice = [step for (w, step), n in counts.items() if w == wf and n > 1]
        assert len(twice) <= 1, f"{wf}: steps {twice} ran more than once"
        assert all(counts[(wf, step)] <= 2 for step in twice)


def chain_status(client: DBOSClient, workflow_id: str) -> str | None:
    status = client.retrieve_workflow(workflow_id).get_status()
    return status.status if status is not None else None


def test_default_ids_are_per_process_and_a_restart_gets_its_own_back(
    apps: Callable[..., App], client: DBOSClient, tmp_path: Path
) -> None:
    first = apps(starts=1)
    assert first.executor_id() == f"{HOST}-1"
    second = apps(starts=1)
    assert second.executor_id() == f"{HOST}-2", "a live process keeps its slot"
    wait_for(lambda: len(ledger_runs(tmp_path)) >= 10, 30, "both chains to take steps")
    first.kill()
    restarted = apps()
    assert restarted.executor_id() == f"{HOST}-1", "the slot of the exited process"
    # Its own work resumes at launch; the survivor's is never touched.
    wait_for(
        lambda: (
            chain_status(client, f"{HOST}-1-chain-0") == "SUCCESS"
            and chain_status(client, f"{HOST}-2-chain-0") == "SUCCESS"
        ),
        60,
        "both chains to finish",
    )
    pids = {pid for wf, _, pid in ledger_runs(tmp_path) if wf == f"{HOST}-2-chain-0"}
    assert pids == {second.proc.pid}
    resumed_by = {pid for wf, _, pid in ledger_runs(tmp_path) if wf == f"{HOST}-1-chain-0"}
    assert resumed_by == {first.proc.pid, restarted.proc.pid}
    assert_no_recorded_step_ran_twice(tmp_path, client)


def test_a_dead_process_work_is_taken_over_without_configuration(
    apps: Callable[..., App], client: DBOSClient, tmp_path: Path
) -> None:
    """Same machine: the survivor asks the kernel, so takeover needs no executor timeout; the
    documented bound is one heartbeat interval and one watch pass."""
    timeout = 30.0
    victim = apps(timeout=timeout, starts=1)
    assert victim.executor_id() == f"{HOST}-1"
    survivor = apps(timeout=timeout)
    assert survivor.executor_id() == f"{HOST}-2"
    wait_for(lambda: len(ledger_runs(tmp_path)) >= 5, 30, "the chain to take steps")
    victim.kill()
    killed_at = time.monotonic()
    wait_for(
        lambda: any(pid == survivor.proc.pid for _, _, pid in ledger_runs(tmp_path)),
        60,
        "the survivor to take the chain over",
    )
    took = time.monotonic() - killed_at
    bound = timeout / 6 + WATCH_INTERVAL_SECONDS
    print(f"taken over {took:.2f} s after the kill (bound {bound:.1f} s)")
    assert took < bound + 2.0, f"takeover took {took:.1f} s, documented bound {bound:.1f} s"
    wait_for(lambda: chain_status(client, f"{HOST}-1-chain-0") == "SUCCESS", 60, "the chain")
    assert_no_recorded_step_ran_twice(tmp_path, client)


def test_a_second_live_process_under_one_configured_id_is_refused(
    apps: Callable[..., App],
) -> None:
    first = apps("shared-id")
    assert first.executor_id() == "shared-id"
    second = apps("shared-id")
    line = second.first_line()
    assert line.startswith("refused "), line
    assert f"pid {first.proc.pid} on {HOST}" in line
    assert "Give each process its own executor_id" in line
    assert second.proc.wait(timeout=30) == 3
    assert first.proc.poll() is None, "the first process runs on"


def test_a_configured_id_whose_process_died_is_claimed_at_once(
    apps: Callable[..., App], client: DBOSClient, tmp_path: Path
) -> None:
    first = apps("fixed", starts=1)
    assert first.executor_id() == "fixed"
    wait_for(lambda: len(ledger_runs(tmp_path)) >= 5, 30, "the chain to take steps")
    first.kill()
    again = apps("fixed")
    began = time.monotonic()
    assert again.executor_id() == "fixed"
    assert time.monotonic() - began < 30, "no executor timeout to wait out"
    wait_for(lambda: chain_status(client, "fixed-chain-0") == "SUCCESS", 60, "the chain")
    assert_no_recorded_step_ran_twice(tmp_path, client)


class RemoteHolder:
    """An executors row as a process on another machine would keep it, beating while on."""

    def __init__(self, db_url: str, executor_id: str) -> None:
        self.db = Database(parse_database_url(db_url))
        self.executor_id = executor_id
        self.beating = threading.Event()
        self.done = threading.Event()
        with self.db.write() as conn:
            conn.execute(
                executors.insert().values(
                    executor_id=executor_id,
                    application_version="v",
                    last_heartbeat_ms=int(time.time() * 1000),
                    host="elsewhere",
                    pid=4242,
                    process_key="another-boot/pid:[1]",
                    process_start="1",
                    incarnation="remote",
                )
            )
        self.thread = threading.Thread(target=self._beat, daemon=True)
        self.thread.start()

    def _beat(self) -> None:
        while not self.done.wait(0.2):
            if self.beating.is_set():
                with self.db.write() as conn:
                    conn.execute(
                        update(executors)
                        .where(executors.c.executor_id == self.executor_id)
                        .values(last_heartbeat_ms=int(time.time() * 1000))
                    )

    def close(self) -> None:
        self.done.set()
        self.thread.join()
        self.db.dispose()


def test_a_configured_id_beating_on_another_machine(
    launch: Callable[..., None], client: DBOSClient, db_url: str
) -> None:
    """Refused while the remote holder beats; claimed once it missed a beat."""
    timeout = 3.0
    remote = RemoteHolder(db_url, "remote-id")
    try:
        remote.beating.set()
        with pytest.raises(DBOSExecutorIdInUseError, match="still sending heartbeats") as err:
            launch(executor_id="remote-id", executor_timeout_sec=timeout)
        assert "pid 4242 on elsewhere" in str(err.value)
        remote.beating.clear()
        began = time.monotonic()
        launch(executor_id="remote-id", executor_timeout_sec=timeout)
        waited = time.monotonic() - began
        assert DBOS.executor_id == "remote-id"
        assert waited <= missed_beat_seconds(timeout, WATCH_INTERVAL_SECONDS) + 1.0
    finally:
        DBOS.destroy()
        remote.close()


def test_a_version_2_database_gains_the_executor_process_columns(
    db_url: str, launch: Callable[..., None]
) -> None:
    """An upgrade keeps old executor rows (judged by heartbeat alone) and their work."""
    DBOSClient(system_database_url=db_url).destroy()  # creates the current schema
    db = Database(parse_database_url(db_url))
    table = quoted_name(executors, db.schema)
    try:
        with db.write() as conn:
            for column in EXECUTOR_PROCESS_COLUMNS:
                conn.execute(text(f'ALTER TABLE {table} DROP COLUMN "{column}"'))
            conn.execute(schema_version.update().values(version=2))
            conn.execute(
                text(
                    f"INSERT INTO {table} (executor_id, application_version, last_heartbeat_ms) "
                    "VALUES ('local', 'old', :beat)"
                ),
                {"beat": int(time.time() * 1000) - 3_600_000},
            )
    finally:
        db.dispose()
    launch(executor_id="local")
    assert DBOS.executor_id == "local", "the old row's holder is long silent: claimable"
    DBOS.destroy()
    db = Database(parse_database_url(db_url))
    try:
        with db.read() as conn:
            assert conn.execute(sql_select(schema_version.c.version)).scalar() == SCHEMA_VERSION
            row = conn.execute(sql_select(executors)).one()
    finally:
        db.dispose()
    assert row.executor_id == "local" and row.pid == os.getpid() and row.host == HOST
