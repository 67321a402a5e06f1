"""Running workflow bodies on few threads, growing only when the running ones are stuck.

A thread per run is what a plain thread pool gives a burst (a thousand ticks of one second
would make a thousand threads). Here runs wait in one line, served by a few "drainer" tasks on
the runtime's pool; another drainer joins only when every drainer has been on its current run
for a while (a long workflow, a sleep, a slow HTTP call), so short runs share a handful of
threads, and runs waiting behind long ones get threads of their own after ``GROW_AFTER_SECONDS``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

logger = logging.getLogger("keeptime.engine")

#: Drainers started without waiting: enough to overlap one run's commit with another's work.
CORE_DRAINERS = 3
#: A drainer on the same run this long counts as stuck, and a waiting run gets another drainer.
GROW_AFTER_SECONDS = 0.03


class RunDispatcher:
    def __init__(self, pool: ThreadPoolExecutor, max_drainers: int) -> None:
        self._pool = pool
        self._max = max(1, max_drainers)
        self._core = min(CORE_DRAINERS, self._max)
        self._lock = threading.Lock()
        self._ready: deque[Callable[[], None]] = deque()
        self._drainers = 0
        self._busy_since: dict[int, float] = {}  # drainer thread -> when its current run began
        self._standby = False  # a task is watching for stuck drainers
        self._closed = False

    def run(self, work: Callable[[], None]) -> None:
        """Run ``work`` soon on a pool thread."""
        with self._lock:
            if self._closed:
                return
            self._ready.append(work)
            if self._drainers < self._core or self._all_stuck():
                if self._drainers < self._max:
                    self._drainers += 1
                    task = self._drain
                else:
                    return
            elif not self._standby and self._drainers < self._max:
                self._standby = True
                task = self._watch_for_stuck
            else:
                return
        self._pool.submit(task)

    def close(self) -> None:
        """Drop runs not started yet (their rows stay PENDING for recovery)."""
        with self._lock:
            self._closed = True
            self._ready.clear()

    def _all_stuck(self) -> bool:
        if len(self._busy_since) < self._drainers:
            return False  # a drainer is between runs and takes the next one now
        now = time.monotonic()
        return all(now - since >= GROW_AFTER_SECONDS for since in self._busy_since.values())

    def _drain(self) -> None:
        me = threading.get_ident()
        while True:
            with self._lock:
                if not self._ready:
                    self._drainers -= 1
                    self._busy_since.pop(me, None)
                    return
                work = self._ready.popleft()
                self._busy_since[me] = time.monotonic()
            try:
                work()
            except Exception:
                logger.exception("a workflow run failed outside its own error handling")

    def _watch_for_stuck(self) -> None:
        """While runs wait, add drainers once every drainer is stuck on a long run: one per
        waiting run (they are likely long too, and none should wait behind the others)."""
        while True:
            time.sleep(GROW_AFTER_SECONDS)
            with self._lock:
                if not self._ready or self._closed:
                    self._standby = False
                    return
                if self._all_stuck() and self._drainers < self._max:
                    self._standby = False
                    extra = min(len(self._ready), self._max - self._drainers)
                    self._drainers += extra
                    break
        for _ in range(extra - 1):
            self._pool.submit(self._drain)
        self._drain()
