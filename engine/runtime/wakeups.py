"""Wake-ups for waiting recv/get_event/read_stream calls.

A waiter registers under a key (one per topic queue, event or stream) before it probes the
database, so a write committed after the probe always wakes it. Writers in this process wake the
key directly after their commit. On PostgreSQL, writers also ``pg_notify`` the key inside their
transaction, and one listener connection per runtime turns those notifications into local wake-ups,
which reaches waiters in other processes. Wake-ups are hints: every wait also polls, so a lost
notification (or SQLite, which has none) only costs latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg

from engine.storage.database import Database
from engine.storage.messages import WAKEUP_CHANNEL

logger = logging.getLogger("keeptime.engine")

POLL_START_SECONDS = 0.01
POLL_MAX_SECONDS = 0.5
LISTEN_CHECK_SECONDS = 0.2  # how often the listener looks at the stop flag
LISTEN_PING_SECONDS = 10.0  # a silent connection is probed this often to notice it broke
RECONNECT_MAX_SECONDS = 5.0


class Waiter:
    """One pending wait, woken from any thread. Sync waits block; async waits never hold one."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop | None = None, event: threading.Event | None = None
    ) -> None:
        self._loop = loop
        self._event = event if event is not None else threading.Event()
        self._async_event = asyncio.Event() if loop is not None else None

    def fire(self) -> None:
        """Wake the wait (from any thread)."""
        if self._loop is None or self._async_event is None:
            self._event.set()
            return
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
            self._loop.call_soon_threadsafe(self._async_event.set)

    def clear(self) -> None:
        """Forget earlier wake-ups: call before probing, so one during the probe counts."""
        if self._async_event is not None:
            self._async_event.clear()
        self._event.clear()

    def wait(self, seconds: float) -> None:
        """Block up to ``seconds`` or until woken."""
        self._event.wait(seconds)

    async def wait_async(self, seconds: float) -> None:
        """Wait on the event loop up to ``seconds`` or until woken."""
        assert self._async_event is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._async_event.wait(), seconds)


class Backoff:
    """Poll intervals for one wait: short at first, then up to ``POLL_MAX_SECONDS``."""

    def __init__(self, timeout_seconds: float) -> None:
        self.deadline = time.monotonic() + max(0.0, timeout_seconds)
        self.delay = POLL_START_SECONDS

    def next_pause(self) -> float | None:
        """Seconds to wait before the next probe, or None once the timeout has passed."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            return None
        pause = min(self.delay, remaining)
        self.delay = min(self.delay * 2, POLL_MAX_SECONDS)
        return pause


class WakeupHub:
    """Waiters of this process, by key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, set[Waiter]] = {}

    @contextlib.contextmanager
    def watching(self, key: str, waiter: Waiter) -> Iterator[Waiter]:
        """Register ``waiter`` under ``key`` for the duration of the block."""
        with self._lock:
            self._waiters.setdefault(key, set()).add(waiter)
        try:
            yield waiter
        finally:
            with self._lock:
                waiters = self._waiters.get(key)
                if waiters is not None:
                    waiters.discard(waiter)
                    if not waiters:
                        del self._waiters[key]

    def wake(self, key: str) -> None:
        """Wake every waiter of ``key``."""
        with self._lock:
            waiters = list(self._waiters.get(key, ()))
        for waiter in waiters:
            waiter.fire()

    def wake_all(self) -> None:
        """Wake every waiter (they re-probe): a lost notification or a shutdown."""
        with self._lock:
            waiters = [w for group in self._waiters.values() for w in group]
        for waiter in waiters:
            waiter.fire()

    def waiting(self) -> int:
        """How many waiters are registered (tests)."""
        with self._lock:
            return sum(len(group) for group in self._waiters.values())


class PgListener:
    """One LISTEN connection that forwards notifications to the hub, reconnecting with backoff."""

    def __init__(self, db: Database, hub: WakeupHub, stopping: threading.Event) -> None:
        self.hub = hub
        self.stopping = stopping
        self.connected = threading.Event()
        self._masked_url = db.db_url.masked
        _, kwargs = db.engine.dialect.create_connect_args(db.db_url.url)
        kwargs.pop("context", None)
        self._connect_kwargs: dict[str, Any] = dict(kwargs)
        self._warned = False  # warned of the current loss of the connection

    def run(self) -> None:
        """Listen until the runtime stops, reconnecting with backoff."""
        backoff = 0.1
        while not self.stopping.is_set():
            try:
                self._listen()
                backoff = 0.1
            except psycopg.Error as exc:
                # One warning per lost connection, not one per failed reconnect: an outage
                # of an hour would otherwise log thousands.
                if not self._warned:
                    self._warned = True
                    logger.warning(
                        "LISTEN connection to %s failed (%s); waits fall back to polling until "
                        "it reconnects",
                        self._masked_url,
                        _first_line(exc),
                    )
                else:
                    logger.debug("LISTEN reconnect failed: %s", _first_line(exc))
            finally:
                self.connected.clear()
            self.stopping.wait(backoff)
            backoff = min(backoff * 2, RECONNECT_MAX_SECONDS)
        self.hub.wake_all()  # waits notice the shutdown at once

    def _listen(self) -> None:
        with psycopg.connect(autocommit=True, connect_timeout=10, **self._connect_kwargs) as conn:
            conn.execute(f"LISTEN {WAKEUP_CHANNEL}")
            self.connected.set()
            if self._warned:
                self._warned = False
                logger.info("LISTEN connection to %s is back", self._masked_url)
            # Notifications sent before LISTEN took effect are lost: let every waiter re-probe.
            self.hub.wake_all()
            last_ping = time.monotonic()
            while not self.stopping.is_set():
                for note in conn.notifies(timeout=LISTEN_CHECK_SECONDS):
                    self.hub.wake(note.payload)
                if time.monotonic() - last_ping >= LISTEN_PING_SECONDS:
                    conn.execute("SELECT 1")
                    last_ping = time.monotonic()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
