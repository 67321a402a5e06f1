"""systemd's notify protocol (sd_notify) over ``$NOTIFY_SOCKET``, with the standard library only.

Outside systemd (no ``$NOTIFY_SOCKET``) every call does nothing, so the daemon runs the same way
in a terminal. A failed send is logged by the caller's logger and never stops the daemon: the
service manager notices a missing READY or WATCHDOG on its own.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Mapping

__all__ = ["Notifier", "watchdog_interval"]


class Notifier:
    """Sends ``KEY=VALUE`` lines to the service manager."""

    def __init__(self, socket_path: str | None = None) -> None:
        path = socket_path if socket_path is not None else os.environ.get("NOTIFY_SOCKET", "")
        self._address = _socket_address(path)
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """True when a notify socket is configured."""
        return self._address is not None

    def send(self, *fields: str) -> bool:
        """Send the given ``KEY=VALUE`` fields as one datagram; False when not sent."""
        if self._address is None or not fields:
            return False
        payload = "\n".join(fields).encode()
        with self._lock, socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(self._address)
            sock.sendall(payload)
        return True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, status: str) -> bool:
        return self.send(f"STATUS={status}")

    def reloading(self, status: str) -> bool:
        return self.send("RELOADING=1", f"STATUS={status}")

    def stopping(self, status: str) -> bool:
        return self.send("STOPPING=1", f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")


def _socket_address(path: str) -> str | None:
    if not path:
        return None
    if path.startswith("@"):  # an abstract socket: the name starts with a NUL byte
        return "\0" + path[1:]
    return path


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of ``$WATCHDOG_USEC``), or None when not asked.

    ``$WATCHDOG_PID``, when set, must be this process (systemd sets it for the main process).
    """
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 1_000_000 / 2
