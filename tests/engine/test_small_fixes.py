"""Issue 14, part 5: workflow methods of configured instances started in the background, and
inputs and outputs loaded independently when listing. On SQLite and PostgreSQL.

(The third fix, creating a missing PostgreSQL database, is in test_bootstrap.py.)
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine import DBOS, DBOSClient, DBOSConfiguredInstance, Queue, SetWorkflowID
from engine.status import WorkflowStatus

fix_queue = Queue("fix_queue")
step_calls: Counter[str] = Counter()
# Set by a test to let the workflow past its step; cleared for the next test.
release = threading.Event()


@DBOS.dbos_class()
class FixGreeter(DBOSConfiguredInstance):
    """A configured instance whose workflows need ``self`` (its greeting) to run."""

    def __init__(self, config_name: str, greeting: str) -> None:
        self.greeting = greeting
        super().__init__(config_name)

    @DBOS.workflow()
    def greet(self, who: str, punctuation: str = "!") -> str:
        return self.decorate(who) + punctuation

    @DBOS.workflow()
    async def greet_async(self, who: str) -> str:
        await asyncio.sleep(0)
        return f"{self.greeting}, {who} (async)"

    @DBOS.step()
    def decorate(self, who: str) -> str:
        step_calls[f"{self.config_name}:{who}"] += 1
        return f"{self.greeting}, {who}"

    @DBOS.workflow()
    def greet_after_message(self, who: str) -> str:
        """One step, then a durable wait: a relaunch finds it PENDING between the two."""
        first = self.decorate(who)
        message = DBOS.recv("go", timeout_seconds=60)
        return f"{first} {message}"

    @classmethod
    @DBOS.workflow()
    def shout(cls, who: str) -> str:
        return f"{cls.__name__}: {who.upper()}"


hello = FixGreeter("fix-hello", "Hello")
bonjour = FixGreeter("fix-bonjour", "Bonjour")


@DBOS.workflow()
def fix_echo(value: str) -> str:
    return value.upper()


@DBOS.workflow()
def fix_fail(value: str) -> None:
    raise ValueError(f"bad value {value}")


@DBOS.workflow()
def fix_wait() -> str:
    release.wait(timeout=30)
    return "released"


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    step_calls.clear()
    release.clear()
    yield
    release.set()


def _check_instance_run(status: WorkflowStatus, config_name: str) -> None:
    assert status.status == "SUCCESS"
    assert (status.class_name, status.config_name) == ("FixGreeter", config_name)


# -- 1. starting a configured instance's workflow method in the background --------------------


def test_start_workflow_keeps_the_bound_instance(dbos: None) -> None:
    handle = DBOS.start_workflow(hello.greet, "Ann", punctuation="?")
    assert handle.get_result() == "Hello, Ann?"
    other = DBOS.start_workflow(bonjour.greet, "Bob")
    assert other.get_result() == "Bonjour, Bob!"
    _check_instance_run(handle.get_status(), "fix-hello")
    _check_instance_run(other.get_status(), "fix-bonjour")
    # The instance is not among the recorded inputs; only the real arguments are.
    assert handle.get_status().input == {"args": ("Ann",), "kwargs": {"punctuation": "?"}}


def test_start_workflow_through_the_class_still_takes_self_first(dbos: None) -> None:
    handle = DBOS.start_workflow(FixGreeter.greet, hello, "Cy")
    assert handle.get_result() == "Hello, Cy!"
    _check_instance_run(handle.get_status(), "fix-hello")


def test_start_workflow_of_a_classmethod(dbos: None) -> None:
    assert DBOS.start_workflow(FixGreeter.shout, "dee").get_result() == "FixGreeter: DEE"


def test_start_workflow_async_keeps_the_bound_instance(dbos: None) -> None:
    async def main() -> tuple[str, str, WorkflowStatus]:
        sync_handle = await DBOS.start_workflow_async(bonjour.greet, "Eve")  # type: ignore[arg-type]
        async_handle = await DBOS.start_workflow_async(hello.greet_async, "Fay")
        return (
            await sync_handle.get_result(),
            await async_handle.get_result(),
            await async_handle.get_status(),
        )

    sync_result, async_result, status = asyncio.run(main())
    assert sync_result == "Bonjour, Eve!"
    assert async_result == "Hello, Fay (async)"
    _check_instance_run(status, "fix-hello")


def test_enqueue_keeps_the_bound_instance(dbos: None) -> None:
    handle = fix_queue.enqueue(bonjour.greet, "Gus")
    assert handle.get_result() == "Bonjour, Gus!"
    _check_instance_run(handle.get_status(), "fix-bonjour")

    async def main() -> str:
        queued = await fix_queue.enqueue_async(hello.greet_async, "Hal")
        result: str = await queued.get_result()
        return result

    assert asyncio.run(main()) == "Hello, Hal (async)"


def test_recovery_finds_the_instance(launch: Callable[..., None]) -> None:
    """A relaunch resumes the PENDING method workflow on the same instance, replaying its
    recorded step instead of running it again."""
    launch(executor_id="fix-exec")
    with SetWorkflowID("fix-recover"):
        DBOS.start_workflow(bonjour.greet_after_message, "Ivy")
    _wait_for(lambda: step_calls["fix-bonjour:Ivy"] == 1, "the step before the wait")
    _wait_for(lambda: len(DBOS.list_workflow_steps("fix-recover")) >= 1, "the step's checkpoint")
    launch(executor_id="fix-exec")  # destroys the first DBOS: the workflow stays PENDING
    assert DBOS.get_workflow_status("fix-recover").status == "PENDING"  # type: ignore[union-attr]
    DBOS.send("fix-recover", "welcome", topic="go")
    handle = DBOS.retrieve_workflow("fix-recover")
    assert handle.get_result() == "Bonjour, Ivy welcome"
    _check_instance_run(handle.get_status(), "fix-bonjour")
    assert handle.get_status().recovery_attempts >= 2
    assert step_calls["fix-bonjour:Ivy"] == 1, "the recorded step ran again"


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


# -- 2. inputs and outputs load independently ---------------------------------------------------


def _by_id(statuses: list[WorkflowStatus]) -> dict[str, tuple[Any, Any, Any]]:
    return {
        s.workflow_id: (s.input, s.output, type(s.error).__name__ if s.error else None)
        for s in statuses
    }


@pytest.fixture()
def finished_runs(dbos: None) -> None:
    with SetWorkflowID("fix-ok"):
        fix_echo("abc")
    with SetWorkflowID("fix-err"), pytest.raises(ValueError):
        fix_fail("xyz")


_ARGS_OK = {"args": ("abc",), "kwargs": {}}
_ARGS_ERR = {"args": ("xyz",), "kwargs": {}}


@pytest.mark.parametrize(
    ("load_input", "load_output", "expected"),
    [
        (
            True,
            True,
            {"fix-ok": (_ARGS_OK, "ABC", None), "fix-err": (_ARGS_ERR, None, "ValueError")},
        ),
        (False, True, {"fix-ok": (None, "ABC", None), "fix-err": (None, None, "ValueError")}),
        (True, False, {"fix-ok": (_ARGS_OK, None, None), "fix-err": (_ARGS_ERR, None, None)}),
        (False, False, {"fix-ok": (None, None, None), "fix-err": (None, None, None)}),
    ],
)
def test_list_workflows_loads_inputs_and_outputs_independently(
    finished_runs: None,
    db_url: str,
    load_input: bool,
    load_output: bool,
    expected: dict[str, tuple[Any, Any, Any]],
) -> None:
    listed = DBOS.list_workflows(load_input=load_input, load_output=load_output)
    assert _by_id(listed) == expected
    client = DBOSClient(system_database_url=db_url)
    try:
        from_client = client.list_workflows(load_input=load_input, load_output=load_output)
    finally:
        client.destroy()
    assert _by_id(from_client) == expected


def test_list_queued_workflows_load_input(dbos: None, db_url: str) -> None:
    with SetWorkflowID("fix-queued"):
        handle = fix_queue.enqueue(fix_wait)
    _wait_for(lambda: handle.get_status().status in ("ENQUEUED", "PENDING"), "the queued run")
    client = DBOSClient(system_database_url=db_url)
    try:
        for lister in (DBOS.list_queued_workflows, client.list_queued_workflows):
            with_input = lister(queue_name="fix_queue")
            without = lister(queue_name="fix_queue", load_input=False)
            assert [s.input for s in with_input] == [{"args": (), "kwargs": {}}]
            assert [(s.workflow_id, s.input) for s in without] == [("fix-queued", None)]
    finally:
        client.destroy()
    release.set()
    assert handle.get_result() == "released"


# -- 3. an enqueued bare step survives its process -----------------------------------------------

BARE_STEP_APP = """
import os, sys, time
from engine import DBOS, Queue

url, ledger, mode = sys.argv[1:4]
bare_queue = Queue("bare_q")


@DBOS.step()
def bare_sleepy_step(path):
    with open(path, "a") as out:
        out.write("run\\n")
        out.flush()
        os.fsync(out.fileno())
    with open(path) as seen:
        if seen.read().count("run") == 1:
            time.sleep(120)  # the first run is killed here
    return "done"


DBOS(config={"name": "bare", "system_database_url": url, "executor_id": "bare-exec"})
DBOS.launch()
if mode == "enqueue":
    bare_queue.enqueue(bare_sleepy_step, ledger)
while True:
    time.sleep(1)
"""


@pytest.mark.slow
def test_an_enqueued_bare_step_is_recovered_after_a_crash(db_url: str, tmp_path: Path) -> None:
    """A step enqueued by itself runs as a one-step workflow that only existed in the process
    that claimed it; after a crash, recovery in a fresh process must build it again."""
    app, ledger = tmp_path / "bare_app.py", tmp_path / "ledger.txt"
    app.write_text(BARE_STEP_APP)

    def spawn(mode: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        return subprocess.Popen([sys.executable, str(app), db_url, str(ledger), mode], env=env)

    first = spawn("enqueue")
    second: subprocess.Popen[bytes] | None = None
    client = DBOSClient(system_database_url=db_url)
    try:
        _wait_for(lambda: ledger.exists() and ledger.read_text().count("run") == 1, "the run")
        first.kill()
        first.wait(10)
        second = spawn("recover")
        (run,) = client.list_workflows(name="<temp>.bare_sleepy_step")
        assert client.retrieve_workflow(run.workflow_id).get_result() == "done"
        assert ledger.read_text().count("run") == 2, "run again once, after the crash"
    finally:
        client.destroy()
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(10)
