"""The messaging service: the message store, the wake-up hub and the waits built on them.

Every wait registers with the wake-up hub and also polls with backoff (see
``engine.runtime.wakeups``). Async waits hold no thread while waiting; only their short database
calls run in worker threads. On PostgreSQL, the LISTEN thread starts with the first wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections.abc import Callable, Generator, Iterator
from typing import Any, TypeVar

from engine.error import DBOSWorkflowCancelledError
from engine.runtime.context import WorkflowContext
from engine.runtime.wakeups import Backoff, PgListener, Waiter, WakeupHub
from engine.storage.database import OUTAGE_ERRORS, waiting_out_outages
from engine.storage.messages import MessageStore
from engine.storage.store import SystemStore

T = TypeVar("T")
#: Starts a named background thread (``Runtime.spawn``, which joins it at shutdown).
Spawn = Callable[[str, Callable[[], None]], object]


class Messaging:
    """The message store, wake-up hub and (on PostgreSQL) listener of one runtime or client.

    ``check_may_continue`` raises when a workflow that waits was cancelled or timed out;
    ``spawn`` starts the listener thread (a plain daemon thread without it).
    """

    def __init__(
        self,
        store: SystemStore,
        stopping: threading.Event,
        check_may_continue: Callable[[WorkflowContext], None],
        spawn: Spawn | None = None,
    ) -> None:
        self.store = MessageStore(store)
        self.hub = _hub_for(store.db.db_url.masked, store.db.schema)
        self.listener: PgListener | None = None
        self._db = store.db
        self._stopping = stopping
        self._check_may_continue = check_may_continue
        self._spawn = spawn
        self._lock = threading.Lock()

    def ensure_listening(self) -> None:
        """Start the LISTEN thread on first wait (PostgreSQL only)."""
        if self.listener is not None or not self._db.dialect.notifies:
            return
        with self._lock:
            if self.listener is None and not self._stopping.is_set():
                self.listener = PgListener(self._db, self.hub, self._stopping)
                self._start_thread("keeptime-listen", self.listener.run)

    def _start_thread(self, name: str, target: Callable[[], None]) -> None:
        if self._spawn is not None:
            self._spawn(name, target)
        else:
            threading.Thread(target=target, name=name, daemon=True).start()

    def wake(self, key: str) -> None:
        """Wake this process's waiters of ``key`` (after a write's commit)."""
        self.hub.wake(key)

    def _check_interrupted(self, ctx: WorkflowContext | None) -> bool:
        """True when an outside wait must end; raises when a workflow's wait must end."""
        if ctx is not None:
            self._check_may_continue(ctx)
            if self._stopping.is_set():
                raise DBOSWorkflowCancelledError(
                    f"keeptime is shutting down; workflow {ctx.workflow_id!r} resumes at recovery"
                )
        return self._stopping.is_set()

    def watching(
        self, key: str, loop: asyncio.AbstractEventLoop | None = None
    ) -> contextlib.AbstractContextManager[Waiter]:
        """Register a waiter for ``key``; register before probing, so no write is missed."""
        self.ensure_listening()
        return self.hub.watching(key, Waiter(loop))

    def wait_for(
        self, key: str, probe: Callable[[], T | None], timeout: float, ctx: WorkflowContext | None
    ) -> T | None:
        """Call ``probe`` until it returns a value (returned) or ``timeout`` passes (None)."""
        with self.watching(key) as waiter, self._riding_out_outages(timeout, ctx):
            try:
                return self.keep_probing(waiter, probe, timeout, ctx)
            except OUTAGE_ERRORS:
                if ctx is not None:
                    raise  # shutting down: the workflow stays PENDING
                return None  # the caller's own timeout passed while the database was away

    @contextlib.contextmanager
    def _riding_out_outages(self, timeout: float, ctx: WorkflowContext | None) -> Iterator[None]:
        """A wait's probes wait out a database outage: in a workflow until shutdown, elsewhere
        until the wait's own timeout, so an outage never ends a wait early with an error."""
        deadline = None
        if ctx is None and math.isfinite(timeout):
            deadline = time.monotonic() + timeout
        with waiting_out_outages(self._stopping, deadline):
            yield

    def keep_probing(
        self,
        waiter: Waiter,
        probe: Callable[[], T | None],
        timeout: float,
        ctx: WorkflowContext | None,
        *,
        probed: bool = False,
    ) -> T | None:
        """``wait_for`` with a registered ``waiter``; ``probed``: the caller has probed since."""
        loop = self._probing(waiter, timeout, ctx, probed)
        try:
            request = next(loop)
            while True:
                if request is None:
                    request = loop.send(probe())
                else:
                    waiter.wait(request)
                    request = loop.send(None)
        except StopIteration as done:
            found: T | None = done.value
            return found

    async def wait_for_async(
        self, key: str, probe: Callable[[], T | None], timeout: float, ctx: WorkflowContext | None
    ) -> T | None:
        """``wait_for`` for coroutines: probes in a thread, waits on the event loop."""
        with (
            self.watching(key, asyncio.get_running_loop()) as waiter,
            self._riding_out_outages(timeout, ctx),
        ):
            try:
                return await self.keep_probing_async(waiter, probe, timeout, ctx)
            except OUTAGE_ERRORS:
                if ctx is not None:
                    raise
                return None

    async def keep_probing_async(
        self,
        waiter: Waiter,
        probe: Callable[[], T | None],
        timeout: float,
        ctx: WorkflowContext | None,
        *,
        probed: bool = False,
    ) -> T | None:
        """``keep_probing`` for coroutines: the same loop, waiting on the event loop and probing in
        a thread."""
        loop = self._probing(waiter, timeout, ctx, probed)
        try:
            request = next(loop)
            while True:
                if request is None:
                    request = loop.send(await asyncio.to_thread(probe))
                else:
                    await waiter.wait_async(request)
                    request = loop.send(None)
        except StopIteration as done:
            found: T | None = done.value
            return found

    def _probing(
        self, waiter: Waiter, timeout: float, ctx: WorkflowContext | None, probed: bool
    ) -> Generator[float | None, Any, Any]:
        """The one logic of a wait, for the sync and the async driver: it yields a pause (seconds
        to wait for a wake-up) or None (probe now, and send the result back), and returns what a
        probe found, or None when the wait is over."""
        backoff = Backoff(timeout)
        while True:
            if probed:
                pause = backoff.next_pause()
                if pause is None:
                    return None
                yield pause
            probed = True
            if self._check_interrupted(ctx):
                return None
            waiter.clear()
            found = yield None
            if found is not None:
                return found


_HUBS: dict[tuple[str, str | None], WakeupHub] = {}
_HUBS_LOCK = threading.Lock()


def _hub_for(database: str, schema: str | None) -> WakeupHub:
    # One hub per database in the process: a DBOSClient and the runtime wake each other directly.
    with _HUBS_LOCK:
        return _HUBS.setdefault((database, schema), WakeupHub())


def check_in_own_runtime(ctx: WorkflowContext) -> None:
    """A client called inside a workflow: the workflow's own runtime decides if it goes on."""
    ctx.runtime.check_may_continue(ctx)
