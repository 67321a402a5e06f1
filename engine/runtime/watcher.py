"""The watch thread of a runtime: heartbeats and takeover of dead executors, cancellations made
by other processes, and deadlines that passed while a step ran.

Whether another executor is dead is decided in ``engine.core.liveness``; this module applies
the decisions. See docs/durability.md.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from engine.core.deadlines import deadline_passed
from engine.core.liveness import (
    ExecutorRecord,
    LivenessObserver,
    heartbeat_interval_seconds,
    missed_beat_seconds,
)
from engine.runtime import recovery
from engine.runtime.identity import holder_process_runs
from engine.storage.database import is_outage, waiting_out_outages
from engine.storage.executors import Beat, Holder

if TYPE_CHECKING:
    from engine.runtime.executor import Runtime

logger = logging.getLogger("keeptime.engine")

WATCH_INTERVAL_SECONDS = 1.0


class Watcher:
    """Watches the runtime's own runs and the other executors of its database, once a second."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        timeout = runtime.config.executor_timeout_sec
        beat_late = missed_beat_seconds(timeout, WATCH_INTERVAL_SECONDS)
        self._liveness = LivenessObserver(timeout, confirm_sec=beat_late, max_gap_sec=beat_late)
        self._last_heartbeat = 0.0  # monotonic
        self._supplanted_logged = False
        self._recheck_own_work = False

    def start(self) -> None:
        """Start the thread (once the runtime claimed its executor ID, which was a beat)."""
        self._last_heartbeat = time.monotonic()
        self.runtime.spawn("keeptime-watch", self._loop)

    def _loop(self) -> None:
        """A database outage pauses the loop (one warning, from the storage layer) until the
        database is back."""
        stopping = self.runtime.stopping
        while not stopping.wait(WATCH_INTERVAL_SECONDS):
            try:
                with waiting_out_outages(stopping):
                    self._watch_once()
            except Exception as exc:
                self._liveness.forget_pass()
                if not is_outage(exc):  # an outage cut short by shutdown is no failure
                    logger.exception("workflow watcher failed; retrying")

    def _watch_once(self) -> None:
        self._heartbeat_and_take_over()
        runtime = self.runtime
        active = runtime.running_contexts()
        if not active:
            return
        now = runtime.now_ms()
        for wf_id, ctx in active.items():
            if deadline_passed(now, ctx.deadline_ms) and not ctx.cancel_event.is_set():
                runtime.cancel(wf_id)
        for wf_id in runtime.store.cancelled_among(list(active)):
            active[wf_id].cancel_event.set()

    def _heartbeat_and_take_over(self) -> None:
        """Beat every sixth of the executor timeout; adopt work of executors judged dead."""
        runtime = self.runtime
        if time.monotonic() - self._last_heartbeat < heartbeat_interval_seconds(
            runtime.config.executor_timeout_sec
        ):
            return
        assert runtime.holder is not None
        self._beat(runtime.holder)
        self._last_heartbeat = time.monotonic()
        if self._recheck_own_work:
            self._recheck_own_work = False
            runtime.recover_pending()
        me = runtime.holder.process
        others = runtime.executors.others(runtime.executor_id)
        exited = frozenset(r.executor_id for r in others if holder_process_runs(r, me) is False)
        dead = self._liveness.observe(
            others, time.monotonic(), runtime.now_ms(), exited, runtime.db.last_outage_ended()
        )
        by_id = {r.executor_id: r for r in others}
        for executor_id in dead:
            self._take_over(by_id[executor_id])

    def _beat(self, holder: Holder) -> None:
        runtime = self.runtime
        beat = runtime.executors.heartbeat(holder)
        if beat is Beat.REINSTATED:
            logger.error(
                "executor %r was presumed dead by another executor (no heartbeat for %.0f s, a "
                "stalled process or a lost connection) and its PENDING work was taken over; "
                "it beats again, and work it still runs may run twice",
                runtime.executor_id,
                runtime.config.executor_timeout_sec,
            )
        elif beat is Beat.SUPPLANTED and not self._supplanted_logged:
            self._supplanted_logged = True
            logger.error(
                "executor ID %r is now held by another process (it presumed this one dead); "
                "restart this process so that it claims an ID of its own",
                runtime.executor_id,
            )

    def _take_over(self, dead: ExecutorRecord) -> None:
        runtime = self.runtime
        try:
            rows = runtime.executors.take_over(dead, runtime.executor_id, runtime.app_version)
        except Exception:
            # The move may have committed: look for our own unfinished work next time.
            self._recheck_own_work = True
            raise
        for row in rows:
            recovery.restart(runtime, row)
        if rows:
            logger.warning(
                "took over %d workflow(s) of executor %r (%s)",
                len(rows),
                dead.executor_id,
                dead.describe(runtime.now_ms()),
            )
