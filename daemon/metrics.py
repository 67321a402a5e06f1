"""Prometheus metrics of the daemon, served at ``GET /metrics``.

Families:

- ``keeptime_schedule_runs_total{schedule,status}``: runs of each schedule that reached a final
  status since this daemon started.
- ``keeptime_schedule_tick_lateness_seconds{schedule}``: how long after its nominal tick each run
  was created (includes jitter and catch-up).
- ``keeptime_schedule_last_success_timestamp_seconds{schedule}``: when the last successful run
  finished.
- ``keeptime_queue_depth{queue,status}``: ENQUEUED and PENDING workflows per queue.
- ``keeptime_debounces_pending{workflow}``: open debounce windows, by the workflow they will run.

Everything is read from the system database at scrape time (runs incrementally, from an
index), so each daemon of a cluster reports the runs of the whole cluster: aggregate with
``max``, not ``sum``.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from daemon.prometheus import Counter, Gauge, Histogram, render
from engine import DBOS, WorkflowStatus
from engine.admin import pending_debounces, queue_depths

#: Schedule runs have IDs ``sched-<schedule>-<tick>`` (see ``engine.core.cron.tick_workflow_id``)
#: or ``sched-<schedule>-trigger-<hex>`` for manual triggers.
RUN_ID_PREFIX = "sched-"
FINAL_STATUSES = frozenset({"SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"})
LATENESS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)
_TICK = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z")
_PAGE = 1000
_SEEN_SLACK_MS = 2000


@dataclass(frozen=True)
class _Run:
    workflow_id: str
    schedule: str
    status: str
    created_ms: int
    updated_ms: int


def schedule_of(workflow_id: str, schedule_names: Iterable[str]) -> tuple[str, datetime | None]:
    """``(schedule, nominal tick)`` of a run ID; ``("", None)`` when no schedule matches."""
    best = ""
    for name in schedule_names:
        if workflow_id.startswith(f"{RUN_ID_PREFIX}{name}-") and len(name) > len(best):
            best = name
    if not best:
        return "", None
    rest = workflow_id[len(RUN_ID_PREFIX) + len(best) + 1 :]
    if not _TICK.fullmatch(rest):
        return best, None
    return best, datetime.fromisoformat(rest.replace("Z", "+00:00"))


class DaemonMetrics:
    """Collects the metric families; ``collect()`` returns the exposition text."""

    def __init__(
        self, schedule_names: Callable[[], Iterable[str]], clock: Callable[[], float] = time.time
    ) -> None:
        self._schedule_names = schedule_names
        self._lock = threading.Lock()
        self.runs = Counter(
            "keeptime_schedule_runs_total",
            "Schedule runs that reached a final status since this daemon started.",
            ("schedule", "status"),
        )
        self.lateness = Histogram(
            "keeptime_schedule_tick_lateness_seconds",
            "Seconds between a schedule's nominal tick and the creation of its run.",
            LATENESS_BUCKETS,
            ("schedule",),
        )
        self.last_success = Gauge(
            "keeptime_schedule_last_success_timestamp_seconds",
            "Unix time at which the schedule's last successful run finished.",
            ("schedule",),
        )
        self.queue_depth = Gauge(
            "keeptime_queue_depth",
            "Workflows waiting or running on each queue.",
            ("queue", "status"),
        )
        self.debounces = Gauge(
            "keeptime_debounces_pending",
            "Open debounce windows, by the workflow they will run.",
            ("workflow",),
        )
        self._watermark_ms = int(clock() * 1000)
        self._seen: dict[str, int] = {}
        self._open: dict[str, str] = {}
        self._success_loaded: set[str] = set()

    def collect(self) -> str:
        with self._lock:
            names = sorted(set(self._schedule_names()))
            self._load_last_success(names)
            self._scan_new_runs(names)
            self._check_open_runs()
            self.queue_depth.replace(
                {
                    (q, s): float(n)
                    for q, counts in queue_depths().items()
                    for s, n in counts.items()
                }
            )
            self.debounces.replace({(w,): float(n) for w, n in pending_debounces().items()})
        return render(
            [self.runs, self.lateness, self.last_success, self.queue_depth, self.debounces]
        )

    # -- runs -------------------------------------------------------------------------------------

    def _scan_new_runs(self, names: list[str]) -> None:
        """Runs created since the last scrape (an index range on created_at), page by page."""
        while True:
            since = datetime.fromtimestamp((self._watermark_ms - 1) / 1000, tz=UTC)
            page = DBOS.list_workflows(
                workflow_id_prefix=RUN_ID_PREFIX,
                start_time=since.isoformat(),
                limit=_PAGE,
                load_input=False,
            )
            for status in page:
                self._see(status, names)
            if len(page) < _PAGE:
                break
        cutoff = self._watermark_ms - _SEEN_SLACK_MS
        self._seen = {k: v for k, v in self._seen.items() if v >= cutoff}

    def _see(self, status: WorkflowStatus, names: list[str]) -> None:
        created = status.created_at or 0
        self._watermark_ms = max(self._watermark_ms, created)
        if status.workflow_id in self._seen:
            return
        self._seen[status.workflow_id] = created
        schedule, tick = schedule_of(status.workflow_id, names)
        if not schedule:
            return
        if tick is not None:
            lateness = created / 1000 - tick.timestamp()
            self.lateness.observe((schedule,), max(lateness, 0.0))
        self._open[status.workflow_id] = schedule
        self._settle(status)

    def _check_open_runs(self) -> None:
        ids = list(self._open)
        for start in range(0, len(ids), _PAGE):
            chunk = ids[start : start + _PAGE]
            for status in DBOS.list_workflows(workflow_ids=chunk, load_input=False):
                self._settle(status)

    def _settle(self, status: WorkflowStatus) -> None:
        schedule = self._open.get(status.workflow_id)
        if schedule is None or status.status not in FINAL_STATUSES:
            return
        del self._open[status.workflow_id]
        self.runs.inc((schedule, status.status))
        if status.status == "SUCCESS":
            self._record_success(schedule, status.updated_at)

    def _record_success(self, schedule: str, updated_ms: int | None) -> None:
        if updated_ms is None:
            return
        previous = self.last_success.get((schedule,)) or 0.0
        self.last_success.set((schedule,), max(previous, updated_ms / 1000))

    def _load_last_success(self, names: list[str]) -> None:
        """Seed the last-success gauge of schedules seen for the first time from history."""
        for name in names:
            if name in self._success_loaded:
                continue
            self._success_loaded.add(name)
            latest = DBOS.list_workflows(
                workflow_id_prefix=f"{RUN_ID_PREFIX}{name}-",
                status="SUCCESS",
                sort_desc=True,
                limit=1,
                load_input=False,
            )
            if latest:
                self._record_success(name, latest[0].updated_at)
