"""The daemon's small parts: sd_notify, the watchdog interval, config diffs, log lines."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from daemon.config import parse_config
from daemon.config_diff import diff_configs, diff_named
from daemon.logging import configure_logging, get_logger
from daemon.notify import Notifier, watchdog_interval


@pytest.fixture()
def notify_socket() -> Iterator[tuple[str, socket.socket]]:
    # Unix socket paths are limited to ~108 bytes, so not under pytest's long tmp_path.
    folder = tempfile.mkdtemp(prefix="kt-")
    path = os.path.join(folder, "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    yield path, sock
    sock.close()
    os.unlink(path)
    os.rmdir(folder)


def test_notifier_sends_fields_as_one_datagram(notify_socket: tuple[str, socket.socket]) -> None:
    path, sock = notify_socket
    notifier = Notifier(path)
    assert notifier.enabled
    assert notifier.ready("running: 2 schedules")
    lines = sock.recv(4096).decode().split("\n")
    assert lines[:2] == ["READY=1", "STATUS=running: 2 schedules"]
    assert lines[2] == f"MAINPID={os.getpid()}"
    notifier.stopping("stopping")
    assert sock.recv(4096).decode() == "STOPPING=1\nSTATUS=stopping"
    notifier.watchdog()
    assert sock.recv(4096).decode() == "WATCHDOG=1"


def test_notifier_without_socket_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert not notifier.enabled
    assert notifier.ready("x") is False


def test_notifier_to_a_missing_socket_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        Notifier(str(tmp_path / "absent.sock")).status("x")


def test_abstract_socket_names_start_with_nul() -> None:
    name = f"@keeptime-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name[1:])
        sock.settimeout(5)
        Notifier(name).status("abstract")
        assert sock.recv(100) == b"STATUS=abstract"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "junk"}, None),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}, 1.0),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec(
    env: dict[str, str], expected: float | None
) -> None:
    assert watchdog_interval(env) == expected


def test_diff_named() -> None:
    diff = diff_named({"a": 1, "b": 2, "c": 3}, {"b": 2, "c": 4, "d": 5})
    assert (diff.added, diff.changed, diff.removed) == (("d",), ("c",), ("a",))
    assert diff_named({"a": 1}, {"a": 1}).empty


def test_diff_configs_reports_schedules_debouncers_and_restart_sections(tmp_path: Path) -> None:
    old = parse_config(
        """
[engine]
name = "one"
[schedules.keep]
cron = "* * * * *"
command = ["/bin/true"]
[schedules.change]
cron = "* * * * *"
command = ["/bin/true"]
[schedules.drop]
cron = "* * * * *"
command = ["/bin/true"]
""",
        tmp_path / "k.toml",
    )
    new = parse_config(
        """
[engine]
name = "two"
[schedules.keep]
cron = "* * * * *"
command = ["/bin/true"]
[schedules.change]
cron = "*/5 * * * *"
command = ["/bin/true"]
[schedules.add]
cron = "* * * * *"
command = ["/bin/true"]
[debouncers.d]
command = ["/bin/true"]
period = "1s"
""",
        tmp_path / "k.toml",
    )
    diff = diff_configs(old, new)
    assert diff.summary() == {
        "schedules_added": ["add"],
        "schedules_changed": ["change"],
        "schedules_removed": ["drop"],
        "debouncers_added": ["d"],
        "restart_needed": ["engine"],
    }
    assert diff_configs(new, new).summary() == {}


def _reset_logging() -> None:
    logging.getLogger().handlers.clear()


def test_json_logs_are_one_object_per_line_with_event_and_level() -> None:
    out = io.StringIO()
    configure_logging("json", "info", stream=out)
    try:
        get_logger("t").info("schedule.fired", schedule="a", lateness=timedelta(0).total_seconds())
        get_logger("t").debug("hidden.event")
        logging.getLogger("keeptime.engine").warning("from stdlib %s", "logging")
    finally:
        _reset_logging()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["schedule.fired", "from stdlib logging"]
    assert lines[0]["schedule"] == "a"
    assert lines[0]["level"] == "info"
    assert "timestamp" in lines[0]
    assert lines[1]["level"] == "warning"
    assert lines[1]["logger"] == "keeptime.engine"


def test_json_logs_carry_exceptions_as_text() -> None:
    out = io.StringIO()
    configure_logging("json", "info", stream=out)
    try:
        try:
            raise ValueError("boom")
        except ValueError:
            get_logger("t").exception("thing.failed")
    finally:
        _reset_logging()
    record = json.loads(out.getvalue())
    assert record["event"] == "thing.failed"
    assert "ValueError: boom" in record["exception"]


def test_console_logs_are_readable_text() -> None:
    out = io.StringIO()
    configure_logging("console", "debug", stream=out)
    try:
        get_logger("t").debug("daemon.ready", schedules=2)
    finally:
        _reset_logging()
    text = out.getvalue()
    assert "daemon.ready" in text
    assert "schedules=2" in text
    assert not text.startswith("{")


def test_json_logs_keep_extra_fields_of_stdlib_records() -> None:
    out = io.StringIO()
    configure_logging("json", "info", stream=out)
    try:
        logging.getLogger("keeptime.engine").warning(
            "schedule %s: not waiting",
            "nightly",
            extra={"schedule": "nightly", "workflow_id": "sched-nightly-1", "level": "bogus"},
        )
    finally:
        _reset_logging()
    record = json.loads(out.getvalue())
    assert record["event"] == "schedule nightly: not waiting"
    assert record["schedule"] == "nightly"
    assert record["workflow_id"] == "sched-nightly-1"
    assert record["level"] == "warning", "standard keys win over extra fields"
    assert record["logger"] == "keeptime.engine"
