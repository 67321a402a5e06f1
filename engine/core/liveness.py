"""Who may hold an executor ID, and when another executor counts as dead.

An executor proves it is alive by heartbeats: a timestamp in its ``executors`` row, written
every sixth of ``executor_timeout_sec``. Two decisions rest on that, and both live here, pure:

* **Claiming an ID at launch** (:func:`claim_verdict`): a starting process may take an ID whose
  last holder is gone. On the same machine (same boot, same PID namespace) the kernel answers
  at once whether the holder's process still runs; elsewhere only its heartbeats can tell.
* **Taking over a silent executor's work** (:class:`LivenessObserver`): its heartbeat must have
  stood still for ``executor_timeout_sec`` *while this process watched the database*. Wall-clock
  ages alone would condemn every executor at once after a database outage (nobody could beat
  during it), and would depend on the clocks of two machines agreeing.

Nothing here touches a database, a clock or ``/proc``; callers pass every fact in.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "ClaimVerdict",
    "ExecutorRecord",
    "LivenessObserver",
    "ProcessIdentity",
    "claim_verdict",
    "heartbeat_interval_seconds",
    "missed_beat_seconds",
]


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    """Where a process runs. ``process_key`` names the kernel boot and PID namespace in which
    ``pid`` means something (None where that cannot be read, e.g. outside Linux);
    ``process_start`` tells a PID apart from a later process that reused it."""

    host: str
    pid: int
    process_key: str | None
    process_start: str | None

    def same_namespace(self, other: ExecutorRecord) -> bool:
        return self.process_key is not None and self.process_key == other.process_key


@dataclass(frozen=True, slots=True)
class ExecutorRecord:
    """One row of the ``executors`` table (process columns are None on rows older than them)."""

    executor_id: str
    application_version: str | None
    last_heartbeat_ms: int
    host: str | None = None
    pid: int | None = None
    process_key: str | None = None
    process_start: str | None = None
    incarnation: str | None = None

    def describe(self, now_ms: int) -> str:
        where = f"pid {self.pid} on {self.host}" if self.host else "an unknown process"
        age = max(0, now_ms - self.last_heartbeat_ms) / 1000
        return f"{where}, last heartbeat {age:.1f} s ago"


class ClaimVerdict(StrEnum):
    FREE = "free"  # no row: nobody ever held it (or its holder's work was all taken over)
    OURS = "ours"  # this very process held it (DBOS.destroy() then DBOS.launch())
    HOLDER_EXITED = "holder_exited"  # same machine, and the holder's process is gone
    SILENT = "silent"  # the holder missed its beats: dead, or cut off too long to matter
    HOLDER_RUNS = "holder_runs"  # same machine, and the holder's process still runs
    UNSURE = "unsure"  # another machine beat recently: wait for its next beat before deciding

    @property
    def claimable(self) -> bool:
        return self in (
            ClaimVerdict.FREE,
            ClaimVerdict.OURS,
            ClaimVerdict.HOLDER_EXITED,
            ClaimVerdict.SILENT,
        )


def heartbeat_interval_seconds(executor_timeout_sec: float) -> float:
    """How often an executor beats: six beats per timeout, so one lost beat never condemns it."""
    return executor_timeout_sec / 6


def missed_beat_seconds(executor_timeout_sec: float, watch_interval_sec: float) -> float:
    """A heartbeat older than this has missed at least one beat (a beat may lag the interval by
    one pass of the watch loop, plus half an interval of slack)."""
    return 1.5 * heartbeat_interval_seconds(executor_timeout_sec) + watch_interval_sec


def claim_verdict(
    record: ExecutorRecord | None,
    me: ProcessIdentity,
    now_ms: int,
    executor_timeout_sec: float,
    holder_process_runs: bool | None,
) -> ClaimVerdict:
    """May this process take the executor ID of ``record``?

    ``holder_process_runs`` is what the kernel says about ``record``'s PID when it lives in our
    PID namespace (None when it does not, or cannot be checked).
    """
    if record is None:
        return ClaimVerdict.FREE
    if me.same_namespace(record):
        if record.pid == me.pid and record.process_start == me.process_start:
            return ClaimVerdict.OURS
        if holder_process_runs is False:
            return ClaimVerdict.HOLDER_EXITED
        if holder_process_runs:
            return ClaimVerdict.HOLDER_RUNS
    if now_ms - record.last_heartbeat_ms > executor_timeout_sec * 1000:
        return ClaimVerdict.SILENT
    return ClaimVerdict.UNSURE


@dataclass(slots=True)
class _Sighting:
    heartbeat_ms: int
    since: float  # our monotonic time when we first saw this heartbeat value


class LivenessObserver:
    """Judges other executors dead from what this process itself saw of their heartbeats.

    Feed it every pass of the watch loop (:meth:`observe`). An executor is dead once its
    heartbeat has not moved for ``executor_timeout_sec`` of continuous watching. Continuous
    means no gap longer than ``max_gap_sec`` between two passes: after one (a database outage,
    a stalled or suspended process) everything seen before is forgotten, because nobody could
    beat while we could not look.

    In the first watch after launch, a heartbeat already older than the timeout by the wall
    clock (a process that died before we started) needs only ``confirm_sec`` of watching: long
    enough for a live executor to beat once more. After a gap it needs the whole timeout again:
    every heartbeat is old then, and a live executor may be slow to reconnect.
    """

    def __init__(self, executor_timeout_sec: float, confirm_sec: float, max_gap_sec: float):
        self.timeout = executor_timeout_sec
        self.confirm = min(confirm_sec, executor_timeout_sec)
        self.max_gap = max_gap_sec
        self._seen: dict[str, _Sighting] = {}
        self._last_pass: float | None = None
        self._had_gap = False  # a gap ends the first watch: old heartbeats prove nothing then

    def observe(
        self,
        records: list[ExecutorRecord],
        now: float,
        now_ms: int,
        exited: frozenset[str] = frozenset(),
        outage_ended: float | None = None,
    ) -> list[str]:
        """The executors among ``records`` that are dead. ``now`` is our monotonic clock,
        ``now_ms`` the wall clock the heartbeats were written with; ``exited`` names executors
        whose process the kernel says is gone (dead at once, no watching needed);
        ``outage_ended`` is when (monotonic) the last database outage this process noticed
        ended: one since the previous pass is a gap too, even if this pass came on time."""
        gap = self._last_pass is not None and now - self._last_pass > self.max_gap
        if outage_ended is not None and (self._last_pass is None or outage_ended > self._last_pass):
            gap = True
        if gap:
            self._seen.clear()
            self._had_gap = True
        self._last_pass = now
        present = {r.executor_id for r in records}
        for gone in set(self._seen) - present:
            del self._seen[gone]
        return [
            r.executor_id for r in records if r.executor_id in exited or self._dead(r, now, now_ms)
        ]

    def forget_pass(self) -> None:
        """A pass failed (the database is unreachable): the next one starts a new watch."""
        self._seen.clear()
        self._last_pass = None
        self._had_gap = True

    def _dead(self, record: ExecutorRecord, now: float, now_ms: int) -> bool:
        seen = self._seen.get(record.executor_id)
        if seen is None or seen.heartbeat_ms != record.last_heartbeat_ms:
            self._seen[record.executor_id] = _Sighting(record.last_heartbeat_ms, now)
            seen = self._seen[record.executor_id]
        watched = now - seen.since
        long_silent = now_ms - record.last_heartbeat_ms > self.timeout * 1000
        shortcut = long_silent and not self._had_gap
        return watched >= (self.confirm if shortcut else self.timeout)
