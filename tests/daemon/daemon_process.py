"""A real ``keeptime run`` process for end-to-end tests, with a fake ``$NOTIFY_SOCKET``."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.pgserver import free_port

__all__ = ["DaemonProcess", "Receiver", "free_port", "wait_for"]

REPO = Path(__file__).resolve().parents[2]


def wait_for(
    condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.05
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class NotifySocket:
    """A unix datagram socket standing in for systemd; collects every message it receives."""

    def __init__(self) -> None:
        # Unix socket paths are limited to ~108 bytes: keep it short, outside pytest's tmp_path.
        self.folder = tempfile.mkdtemp(prefix="kt-")
        self.path = os.path.join(self.folder, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages: list[list[str]] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._closed.is_set():
            try:
                data = self.sock.recv(65536)
            except (TimeoutError, OSError):
                continue
            self.messages.append(data.decode().split("\n"))

    def fields(self) -> list[str]:
        return [field for message in list(self.messages) for field in message]

    def has(self, field: str) -> bool:
        return field in self.fields()

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=2)
        self.sock.close()
        os.unlink(self.path)
        os.rmdir(self.folder)


class DaemonProcess:
    """``python -m daemon.cli run -c CONFIG`` with JSON logs captured in a file."""

    def __init__(self, config: Path, log_file: Path, env: dict[str, str] | None = None) -> None:
        self.notify = NotifySocket()
        self.log_file = log_file
        self._log = log_file.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "daemon.cli", "run", "-c", str(config), "--log-format", "json"],
            cwd=REPO,
            env={
                **os.environ,
                "NOTIFY_SOCKET": self.notify.path,
                "PYTHONUNBUFFERED": "1",
                **(env or {}),
            },
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The JSON log lines written so far (optionally only those with ``event == name``)."""
        records = []
        for line in self.log_file.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and (name is None or record.get("event") == name):
                records.append(record)
        return records

    def wait_ready(self, timeout: float = 60) -> None:
        wait_for(
            lambda: self.notify.has("READY=1") or self.process.poll() is not None,
            timeout,
            "READY=1",
        )
        assert self.process.poll() is None, f"keeptime exited early:\n{self.output()}"

    def signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self.close()

    def close(self) -> None:
        """Kill the process if still running and release its resources (safe to call twice)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        if not self._log.closed:
            self._log.close()
            self.notify.close()

    def output(self) -> str:
        return self.log_file.read_text(errors="replace")[-5000:]


class Receiver:
    """A local HTTP server answering with queued status codes (then 200), recording requests."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                receiver.requests.append({"path": self.path, "body": body, "headers": self.headers})
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(f"answer {status}".encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
