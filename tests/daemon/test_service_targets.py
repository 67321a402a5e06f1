"""Command and webhook targets: as plain calls, and as durable workflows on both backends."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from daemon.config_model import CommandTarget, HttpTarget, RetryPolicy
from daemon.targets import (
    CommandFailed,
    WebhookFailed,
    WebhookRejected,
    register_target,
    run_command,
    send_webhook,
)
from engine import DBOS, JsonSerializer, SetWorkflowID
from engine.error import DBOSMaxStepRetriesExceeded
from engine.runtime.registry import REGISTRY
from tests.daemon.daemon_process import Receiver

PY = sys.executable


def command(*code: str, timeout: float | None = None) -> CommandTarget:
    return CommandTarget(
        argv=(PY, "-c", "\n".join(code)),
        timeout=timedelta(seconds=timeout) if timeout is not None else None,
    )


# -- commands --------------------------------------------------------------------------------------


def test_command_records_exit_code_and_output_tail() -> None:
    result = run_command(command("import sys", "print('out')", "print('err', file=sys.stderr)"))
    assert result["exit_code"] == 0
    assert result["output_tail"].splitlines() == ["out", "err"]
    assert result["duration_seconds"] >= 0


def test_command_tail_keeps_the_last_lines() -> None:
    result = run_command(command("for i in range(100): print(i)"))
    assert result["output_tail"].splitlines() == [str(i) for i in range(60, 100)]


def test_command_gets_the_run_context_in_its_environment() -> None:
    result = run_command(
        command("import os; print(os.environ['KEEPTIME_SCHEDULE'])"),
        {"KEEPTIME_SCHEDULE": "backup"},
    )
    assert result["output_tail"] == "backup"


def test_command_runs_without_a_shell(tmp_path: Path) -> None:
    target = CommandTarget(argv=("/bin/echo", "$HOME", ";", "ls"), cwd=tmp_path)
    assert run_command(target)["output_tail"] == "$HOME ; ls"


def test_command_nonzero_exit_fails_with_code_and_tail() -> None:
    with pytest.raises(CommandFailed, match=r"exited with code 3; output tail: 'bad thing'"):
        run_command(command("print('bad thing')", "raise SystemExit(3)"))


def test_command_timeout_kills_the_process_group() -> None:
    target = command(
        "import time, subprocess, sys", "print('started', flush=True)", "time.sleep(60)"
    )
    with pytest.raises(CommandFailed, match=r"longer than its timeout of 0.5s.*'started'"):
        run_command(target.__class__(argv=target.argv, timeout=timedelta(seconds=0.5)))


def test_command_that_cannot_start_names_the_program(tmp_path: Path) -> None:
    with pytest.raises(CommandFailed, match=r"cannot start command '.*missing'"):
        run_command(CommandTarget(argv=(str(tmp_path / "missing"),)))


# -- webhooks --------------------------------------------------------------------------------------


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_webhook_sends_json_and_returns_status(receiver: Receiver) -> None:
    target = HttpTarget(url=receiver.url, headers={"X-From": "keeptime"})
    result = send_webhook(target, {"ok": True})
    assert result == {"status": 200, "body_tail": "answer 200"}
    request = receiver.requests[0]
    assert request["body"] == {"ok": True}
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["X-From"] == "keeptime"


def test_webhook_4xx_is_returned_not_raised(receiver: Receiver) -> None:
    receiver.statuses = [404]
    assert send_webhook(HttpTarget(url=receiver.url), {})["status"] == 404


def test_webhook_5xx_raises_to_be_retried(receiver: Receiver) -> None:
    receiver.statuses = [503]
    with pytest.raises(WebhookFailed, match="answered 503"):
        send_webhook(HttpTarget(url=receiver.url), {})


def test_webhook_connection_error_raises_to_be_retried() -> None:
    with pytest.raises(WebhookFailed, match="failed"):
        send_webhook(HttpTarget(url="http://127.0.0.1:1/none", timeout=timedelta(seconds=2)), {})


# -- as durable workflows --------------------------------------------------------------------------


@pytest.fixture()
def launched(db_url: str) -> Iterator[Callable[..., Any]]:
    """Launch DBOS with the daemon's JSON serializer after registering targets."""

    def _launch() -> None:
        DBOS.destroy()
        DBOS(
            config={
                "name": "targets",
                "system_database_url": db_url,
                "serializer": JsonSerializer(),
            }
        )
        DBOS.launch()

    yield _launch
    DBOS.destroy()


def _run(name: str, workflow_id: str, *args: Any) -> Any:
    fn = REGISTRY.require_workflow(name)
    assert fn.wrapper is not None
    with SetWorkflowID(workflow_id):
        return fn.wrapper(*args)


def test_command_workflow_records_the_result_as_step_output(
    launched: Callable[[], None],
) -> None:
    name = register_target("schedule", "cmd-ok", command("print('hello')"))
    assert name == "keeptime.schedule.cmd-ok"
    launched()
    result = _run(name, "cmd-ok-1", "2024-01-01T00:00:00+00:00", "2024-01-01T00:00:01+00:00")
    assert result["exit_code"] == 0
    steps = DBOS.list_workflow_steps("cmd-ok-1")
    assert [s["function_name"] for s in steps] == ["keeptime.schedule.cmd-ok.command"]
    assert steps[0]["output"]["output_tail"] == "hello"
    assert DBOS.get_workflow_status("cmd-ok-1").status == "SUCCESS"  # type: ignore[union-attr]


def test_command_workflow_retries_then_records_the_error(
    launched: Callable[[], None], tmp_path: Path
) -> None:
    counter = tmp_path / "attempts"
    target = command(
        f"p = {str(counter)!r}",
        "import os; n = int(open(p).read()) + 1 if os.path.exists(p) else 1",
        "open(p, 'w').write(str(n)); print('attempt', n); raise SystemExit(7)",
    )
    retries = RetryPolicy(max_attempts=3, interval=timedelta(milliseconds=10), backoff=1.0)
    name = register_target("schedule", "cmd-bad", target, retries)
    launched()
    with pytest.raises(DBOSMaxStepRetriesExceeded, match="exited with code 7"):
        _run(name, "cmd-bad-1", "t", "a")
    assert counter.read_text() == "3"
    step = DBOS.list_workflow_steps("cmd-bad-1")[0]
    assert "attempt 3" in str(step["error"])
    assert DBOS.get_workflow_status("cmd-bad-1").status == "ERROR"  # type: ignore[union-attr]


def test_webhook_workflow_retries_5xx_and_sends_the_run_context(
    launched: Callable[[], None], receiver: Receiver
) -> None:
    receiver.statuses = [500]
    retries = RetryPolicy(max_attempts=2, interval=timedelta(milliseconds=10), backoff=1.0)
    name = register_target("schedule", "hook", HttpTarget(url=receiver.url), retries)
    launched()
    result = _run(name, "hook-1", "2024-01-01T00:00:00+00:00", "x")
    assert result["status"] == 200
    assert len(receiver.requests) == 2
    assert receiver.requests[1]["body"] == {
        "schedule": "hook",
        "workflow_id": "hook-1",
        "scheduled_time": "2024-01-01T00:00:00+00:00",
    }


def test_webhook_workflow_fails_on_4xx_without_retrying(
    launched: Callable[[], None], receiver: Receiver
) -> None:
    receiver.statuses = [422]
    retries = RetryPolicy(max_attempts=3, interval=timedelta(milliseconds=10), backoff=1.0)
    target = HttpTarget(url=receiver.url, body={"fixed": 1})
    name = register_target("debouncer", "hook4", target, retries)
    launched()
    with pytest.raises(WebhookRejected, match="answered 422"):
        _run(name, "hook4-1", {"user": 1})
    assert len(receiver.requests) == 1
    assert receiver.requests[0]["body"] == {"fixed": 1}
    assert DBOS.get_workflow_status("hook4-1").status == "ERROR"  # type: ignore[union-attr]
