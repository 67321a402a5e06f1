"""Crash recovery with real processes killed by SIGKILL, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from engine import DBOSClient

ROOT = Path(__file__).resolve().parents[2]
PIPELINES = 4
STEPS = 5

pytestmark = pytest.mark.slow


def spawn(
    db_url: str, executor: str, log: Path, mode: str, count: int = 0
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.engine.crash_app",
            db_url,
            executor,
            str(log),
            mode,
            str(count),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def log_lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


@pytest.fixture()
def client(db_url: str) -> Iterator[DBOSClient]:
    c = DBOSClient(system_database_url=db_url)
    yield c
    c.destroy()


@pytest.fixture()
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    running: list[subprocess.Popen[bytes]] = []
    yield running
    for p in running:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)


def recorded_steps(client: DBOSClient) -> set[str]:
    recorded = set()
    for i in range(PIPELINES):
        for step in client.list_workflow_steps(f"pipe-{i}"):
            recorded.add(f"pipe-{i}:{step['output']}")
    return recorded


def check_exactly_once(log: Path, recorded_before_kill: set[str]) -> None:
    runs = Counter(line for line in log_lines(log) if line.startswith("pipe-"))
    expected = {f"pipe-{i}:{s}" for i in range(PIPELINES) for s in range(STEPS)}
    assert set(runs) == expected, "every step of every workflow ran"
    for step in recorded_before_kill:
        assert runs[step] == 1, f"recorded step {step} ran again after the crash"
    for i in range(PIPELINES):
        rerun = [s for s in range(STEPS) if runs[f"pipe-{i}:{s}"] > 1]
        assert len(rerun) <= 1, f"pipe-{i} re-ran more than the one step in flight: {rerun}"
        assert all(runs[f"pipe-{i}:{s}"] <= 2 for s in range(STEPS))


def test_kill_9_then_relaunch_completes_every_workflow(
    db_url: str, tmp_path: Path, client: DBOSClient, procs: list[subprocess.Popen[bytes]]
) -> None:
    log = tmp_path / "steps.log"
    first = spawn(db_url, "local", log, "start", PIPELINES)
    procs.append(first)
    wait_until(lambda: len(log_lines(log)) >= 8, 60, "some steps to run")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    before = recorded_steps(client)
    assert 0 < len(before) < PIPELINES * STEPS, "the kill landed mid-way"
    sleeper_steps = client.list_workflow_steps("sleeper")
    assert sleeper_steps and sleeper_steps[0]["function_name"] == "DBOS.sleep"
    wake_ms = sleeper_steps[0]["output"]

    second = spawn(db_url, "local", log, "recover")
    procs.append(second)
    assert second.wait(timeout=90) == 0

    check_exactly_once(log, before)
    for i in range(PIPELINES):
        status = client.retrieve_workflow(f"pipe-{i}").get_status()
        assert status.status == "SUCCESS"
        assert status.output == sum(range(STEPS))
        assert status.recovery_attempts >= 2
    # The sleep resumed toward its recorded wake-up time instead of starting over.
    woke = client.retrieve_workflow("sleeper").get_result()
    assert wake_ms / 1000 <= woke < wake_ms / 1000 + 2.0


def test_live_executor_takes_over_a_dead_ones_work(
    db_url: str, tmp_path: Path, client: DBOSClient, procs: list[subprocess.Popen[bytes]]
) -> None:
    log = tmp_path / "steps.log"
    survivor = spawn(db_url, "exec-b", log, "serve")
    procs.append(survivor)
    wait_until(lambda: "ready" in log_lines(log), 60, "the survivor to launch")
    victim = spawn(db_url, "exec-a", log, "start", PIPELINES)
    procs.append(victim)
    wait_until(lambda: len([x for x in log_lines(log) if x.startswith("pipe-")]) >= 6, 60, "steps")
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    before = recorded_steps(client)

    def all_done() -> bool:
        ids = [f"pipe-{i}" for i in range(PIPELINES)] + ["sleeper"]
        return all(client.retrieve_workflow(i).get_status().status == "SUCCESS" for i in ids)

    wait_until(all_done, 60, "the survivor to finish the dead executor's work")
    check_exactly_once(log, before)
    for i in range(PIPELINES):
        assert client.retrieve_workflow(f"pipe-{i}").get_status().executor_id == "exec-b"
