"""The built-in targets of schedules and debouncers: commands and HTTP webhooks.

Each target becomes a durable workflow named ``keeptime.schedule.NAME`` or
``keeptime.debouncer.NAME`` that runs one step:

* a command runs its argv (no shell) with a timeout; a non-zero exit or a timeout fails the step,
  which is retried per the schedule's ``retries``. Its output goes to the log line by line, and the
  exit code and the output's tail are the step's recorded output (or its recorded error);
* a webhook sends a JSON body with a timeout; connection errors, timeouts and 5xx answers are
  retried, a 4xx answer fails the run at once (retrying would not change the answer).

Python workflow targets (``module:function``) need nothing from here: the config names them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Literal

from daemon.config_model import CommandTarget, HttpTarget, RetryPolicy, Target, WorkflowTarget
from daemon.logging import get_logger
from engine import DBOS
from engine.error import DBOSException

__all__ = [
    "CommandFailed",
    "WebhookFailed",
    "WebhookRejected",
    "register_target",
    "run_command",
    "send_webhook",
    "stop_commands",
    "target_workflow_name",
]

OwnerKind = Literal["schedule", "debouncer"]
OUTPUT_TAIL_LINES = 40
OUTPUT_TAIL_CHARS = 4000
_KILL_GRACE_SECONDS = 5.0
_RESPONSE_TAIL_CHARS = 2000
# Commands running now, so that a stop can end them (see stop_commands).
_RUNNING: set[subprocess.Popen[bytes]] = set()
_RUNNING_LOCK = threading.Lock()

log = get_logger("keeptime.targets")


class CommandFailed(DBOSException):
    """A command exited with a non-zero code or ran past its timeout."""


class WebhookFailed(DBOSException):
    """A webhook could not be reached, timed out or answered 5xx (retried)."""


class WebhookRejected(DBOSException):
    """A webhook answered 4xx (not retried: the request itself is wrong)."""


def target_workflow_name(kind: OwnerKind, owner: str, target: Target) -> str:
    """The registered workflow that a schedule or debouncer runs."""
    if isinstance(target, WorkflowTarget):
        function = _imported_function(target)
        registered = getattr(function, "__keeptime_function__", None)
        name = getattr(registered, "name", None)
        if not isinstance(name, str):
            raise DBOSException(
                f"{target.spec} is not a workflow (decorate it with @DBOS.workflow())"
            )
        return name
    return f"keeptime.{kind}.{owner}"


def register_target(
    kind: OwnerKind, owner: str, target: Target, retries: RetryPolicy | None = None
) -> str:
    """Register the workflow for a command or webhook target; return the name to run."""
    name = target_workflow_name(kind, owner, target)
    if isinstance(target, CommandTarget):
        _register_command_workflow(name, kind, owner, target, retries)
    elif isinstance(target, HttpTarget):
        _register_webhook_workflow(name, kind, owner, target, retries)
    return name


def _imported_function(target: WorkflowTarget) -> Any:
    import importlib

    module = importlib.import_module(target.module)
    obj: Any = module
    for part in target.function.split("."):
        obj = getattr(obj, part)
    return obj


def _step_decorator(name: str, retries: RetryPolicy | None) -> Callable[[Any], Any]:
    if retries is None or retries.max_attempts <= 1:
        return DBOS.step(name=name)
    return DBOS.step(
        name=name,
        retries_allowed=True,
        max_attempts=retries.max_attempts,
        interval_seconds=retries.interval.total_seconds(),
        backoff_rate=retries.backoff,
    )


def run_context(kind: OwnerKind, owner: str, args: tuple[Any, ...]) -> dict[str, Any]:
    """What a run knows about why it runs: owner, workflow ID, and the tick or the input."""
    context: dict[str, Any] = {kind: owner, "workflow_id": DBOS.workflow_id}
    if kind == "schedule" and args:
        context["scheduled_time"] = _as_text(args[0])
        log.info("schedule.fired", **context, lateness_seconds=_lateness(args))
    elif kind == "debouncer":
        context["input"] = args[0] if args else None
        log.info("debouncer.fired", **context)
    return context


def _lateness(args: tuple[Any, ...]) -> float | None:
    if len(args) >= 2 and isinstance(args[0], datetime) and isinstance(args[1], datetime):
        return round((args[1] - args[0]).total_seconds(), 3)
    return None


def _as_text(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


# -- commands --------------------------------------------------------------------------------------


def _register_command_workflow(
    name: str, kind: OwnerKind, owner: str, target: CommandTarget, retries: RetryPolicy | None
) -> None:
    @_step_decorator(f"{name}.command", retries)
    def run_command_step(context: dict[str, Any]) -> dict[str, Any]:
        return run_command(target, _command_env(context), log_fields=context)

    def command_workflow(*args: Any) -> dict[str, Any]:
        context = run_context(kind, owner, args)
        result: dict[str, Any] = run_command_step(context)
        log.info("command.completed", workflow=name, **context, exit_code=result["exit_code"])
        return result

    command_workflow.__qualname__ = name
    DBOS.workflow(name=name)(command_workflow)


def _command_env(context: Mapping[str, Any]) -> dict[str, str]:
    env = {"KEEPTIME_WORKFLOW_ID": str(context.get("workflow_id") or "")}
    if "schedule" in context:
        env["KEEPTIME_SCHEDULE"] = str(context["schedule"])
        env["KEEPTIME_SCHEDULED_TIME"] = str(context.get("scheduled_time") or "")
    if "debouncer" in context:
        env["KEEPTIME_DEBOUNCER"] = str(context["debouncer"])
        env["KEEPTIME_INPUT"] = json.dumps(context.get("input"))
    return env


def run_command(
    target: CommandTarget,
    extra_env: Mapping[str, str] | None = None,
    *,
    log_fields: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run ``target.argv`` without a shell; return its exit code and output tail.

    Raises :class:`CommandFailed` (with the exit code and the tail) on a non-zero exit, a
    timeout, or a program that cannot be started.
    """
    fields = dict(log_fields or {})
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            list(target.argv),
            cwd=target.cwd,
            env={**os.environ, **target.env, **(extra_env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so a timeout kills its children too
        )
    except OSError as exc:
        raise CommandFailed(
            f"cannot start command {target.argv[0]!r}: {exc.strerror or exc} "
            "(check the path and that the daemon's user may execute it)"
        ) from None
    tail: deque[str] = deque(maxlen=OUTPUT_TAIL_LINES)
    reader = threading.Thread(
        target=_pump_output, args=(process, tail, fields), name="keeptime-cmd-out", daemon=True
    )
    reader.start()
    timeout = target.timeout.total_seconds() if target.timeout is not None else None
    with _RUNNING_LOCK:
        _RUNNING.add(process)
    try:
        timed_out = _wait_or_kill(process, timeout)
    finally:
        with _RUNNING_LOCK:
            _RUNNING.discard(process)
    reader.join(timeout=_KILL_GRACE_SECONDS)
    result = {
        "exit_code": process.returncode,
        "output_tail": _tail_text(tail),
        "duration_seconds": round(time.monotonic() - started, 3),
    }
    if timed_out:
        raise CommandFailed(
            f"command {target.argv[0]!r} ran longer than its timeout of {timeout:g}s and was "
            f"killed; output tail: {result['output_tail']!r} (raise the command's timeout)"
        )
    if process.returncode != 0:
        raise CommandFailed(
            f"command {target.argv[0]!r} exited with code {process.returncode}; "
            f"output tail: {result['output_tail']!r}"
        )
    return result


def stop_commands(grace: float = _KILL_GRACE_SECONDS) -> int:
    """Stop every command still running (SIGTERM to its process group, SIGKILL after ``grace``
    seconds); returns how many there were.

    Called once the engine has stopped: a command's step that fails then is not recorded, so
    its workflow stays PENDING and the command runs again at the next start (a step in flight
    at a stop runs at least once more). Without this, the daemon would wait for the command
    to end, however long it takes, before it could exit.
    """
    with _RUNNING_LOCK:
        running = list(_RUNNING)
    for process in running:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in running:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
    if running:
        log.info("command.stopped", commands=len(running), reason="the daemon is stopping")
    return len(running)


def _pump_output(
    process: subprocess.Popen[bytes], tail: deque[str], fields: Mapping[str, Any]
) -> None:
    assert process.stdout is not None
    for raw in process.stdout:
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        tail.append(line)
        log.info("command.output", line=line, **fields)


def _wait_or_kill(process: subprocess.Popen[bytes], timeout: float | None) -> bool:
    """Wait for the process; on timeout stop its group (TERM, then KILL). True if it timed out."""
    try:
        process.wait(timeout=timeout)
        return False
    except subprocess.TimeoutExpired:
        pass
    for sig, grace in ((signal.SIGTERM, _KILL_GRACE_SECONDS), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=grace)
            break
        except subprocess.TimeoutExpired:
            continue
    return True


def _tail_text(tail: deque[str]) -> str:
    return "\n".join(tail)[-OUTPUT_TAIL_CHARS:]


# -- webhooks --------------------------------------------------------------------------------------


def _register_webhook_workflow(
    name: str, kind: OwnerKind, owner: str, target: HttpTarget, retries: RetryPolicy | None
) -> None:
    @_step_decorator(f"{name}.http", retries)
    def send_webhook_step(context: dict[str, Any]) -> dict[str, Any]:
        body = target.body if target.body is not None else context
        return send_webhook(target, body)

    def webhook_workflow(*args: Any) -> dict[str, Any]:
        context = run_context(kind, owner, args)
        result: dict[str, Any] = send_webhook_step(context)
        if result["status"] >= 400:
            raise WebhookRejected(
                f"{target.method} {target.url} answered {result['status']}: "
                f"{result['body_tail']!r} (a 4xx is not retried; fix the request or the receiver)"
            )
        log.info("webhook.completed", workflow=name, **context, http_status=result["status"])
        return result

    webhook_workflow.__qualname__ = name
    DBOS.workflow(name=name)(webhook_workflow)


def send_webhook(target: HttpTarget, body: object) -> dict[str, Any]:
    """Send ``body`` as JSON; return the status and the response's tail.

    4xx answers are returned (the caller fails the run without retrying); 5xx answers,
    timeouts and connection errors raise :class:`WebhookFailed` so the step is retried.
    """
    data = None if target.method == "GET" else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "keeptime", **target.headers}
    request = urllib.request.Request(target.url, data=data, headers=headers, method=target.method)
    try:
        with urllib.request.urlopen(request, timeout=target.timeout.total_seconds()) as response:
            status, text = response.status, _read_tail(response)
    except urllib.error.HTTPError as exc:
        status, text = exc.code, _read_tail(exc)
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise WebhookFailed(f"{target.method} {target.url} failed: {reason}") from None
    if status >= 500:
        raise WebhookFailed(f"{target.method} {target.url} answered {status}: {text!r}")
    return {"status": status, "body_tail": text}


def _read_tail(response: Any) -> str:
    try:
        raw: bytes = response.read()
    except OSError:
        return ""
    return raw.decode("utf-8", errors="replace")[-_RESPONSE_TAIL_CHARS:]
