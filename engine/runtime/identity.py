"""This process's executor identity: who we are, and claiming an executor ID at launch.

With no ``executor_id`` configured, each process takes the lowest free slot of its host,
``<hostname>-<n>``: a restarted process usually gets its old ID back (and so recovers its own
work at once), and two processes never share one. A configured ID is claimed the same way,
except that a live holder makes the launch fail instead of moving on to another slot. The
decisions are engine.core.liveness; this module reads ``/proc`` and waits.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from engine.core.liveness import (
    ClaimVerdict,
    ExecutorRecord,
    ProcessIdentity,
    claim_verdict,
    missed_beat_seconds,
)
from engine.error import DBOSExecutorIdInUseError
from engine.storage.executors import ExecutorStore, Holder

__all__ = ["claim_executor_id", "holder_process_runs", "this_process"]

logger = logging.getLogger("keeptime.engine")

# A host with more live processes than this on one database is surely misconfigured.
MAX_SLOTS = 1000


def this_process() -> ProcessIdentity:
    pid = os.getpid()
    return ProcessIdentity(
        host=socket.gethostname() or "localhost",
        pid=pid,
        process_key=_process_key(),
        process_start=_process_start(pid),
    )


def holder_process_runs(record: ExecutorRecord, me: ProcessIdentity) -> bool | None:
    """Whether the process that wrote ``record`` still runs, when the kernel can tell us
    (same boot and PID namespace); None otherwise."""
    if not me.same_namespace(record) or record.pid is None:
        return None
    start = _process_start(record.pid)
    return start is not None and start == record.process_start


def claim_executor_id(
    executors: ExecutorStore,
    configured_id: str | None,
    app_version: str,
    executor_timeout_sec: float,
    watch_interval_sec: float,
    stop: threading.Event,
    now_ms: Callable[[], int],
) -> Holder:
    """Claim ``configured_id`` (refused while a live process holds it), or the first free slot
    of this host. Returns the holder to heartbeat with."""
    me = this_process()
    incarnation = uuid.uuid4().hex
    claim = _Claim(executors, me, incarnation, app_version, executor_timeout_sec, now_ms)
    if configured_id is not None:
        wait = missed_beat_seconds(executor_timeout_sec, watch_interval_sec)
        return claim.configured(configured_id, wait, stop)
    for slot in range(1, MAX_SLOTS + 1):
        holder = claim.slot(f"{me.host}-{slot}")
        if holder is not None:
            return holder
    raise DBOSExecutorIdInUseError(
        f"all {MAX_SLOTS} executor IDs {me.host}-1..{MAX_SLOTS} are held by live processes; "
        "set executor_id explicitly"
    )


class _Claim:
    def __init__(
        self,
        executors: ExecutorStore,
        me: ProcessIdentity,
        incarnation: str,
        app_version: str,
        executor_timeout_sec: float,
        now_ms: Callable[[], int],
    ) -> None:
        self.executors = executors
        self.me = me
        self.incarnation = incarnation
        self.app_version = app_version
        self.timeout = executor_timeout_sec
        self.now_ms = now_ms

    def holder(self, executor_id: str) -> Holder:
        return Holder(executor_id, self.app_version, self.incarnation, self.me)

    def verdict(self, record: ExecutorRecord | None) -> ClaimVerdict:
        runs = holder_process_runs(record, self.me) if record is not None else None
        return claim_verdict(record, self.me, self.now_ms(), self.timeout, runs)

    def slot(self, executor_id: str) -> Holder | None:
        """The slot if it is free now (never waits: a busy slot means trying the next)."""
        for _ in range(3):  # a lost race re-reads the row; it rarely takes more than one
            record = self.executors.read(executor_id)
            if not self.verdict(record).claimable:
                return None
            if self.executors.claim(self.holder(executor_id), record):
                self._log_claim(executor_id, record)
                return self.holder(executor_id)
        return None

    def configured(self, executor_id: str, wait_sec: float, stop: threading.Event) -> Holder:
        """Claim ``executor_id``. A holder elsewhere that beat recently gets ``wait_sec`` (a
        beat interval and more) to beat again: if it does, it is alive and we refuse."""
        waited_since: float | None = None
        first_beat_ms = 0
        patience = wait_sec
        while True:
            record = self.executors.read(executor_id)
            verdict = self.verdict(record)
            if verdict.claimable:
                if self.executors.claim(self.holder(executor_id), record):
                    self._log_claim(executor_id, record)
                    return self.holder(executor_id)
                continue  # the row changed under us: judge it again
            assert record is not None
            if verdict is ClaimVerdict.HOLDER_RUNS:
                raise self._in_use(executor_id, record, "its process runs on this machine")
            if waited_since is None:
                waited_since, first_beat_ms = time.monotonic(), record.last_heartbeat_ms
                # A beat already overdue by the wall clock shortens the wait.
                patience = max(0.0, wait_sec - (self.now_ms() - first_beat_ms) / 1000)
                logger.info(
                    "executor ID %r is held by %s; waiting up to %.1f s for its next heartbeat "
                    "before taking it over",
                    executor_id,
                    record.describe(self.now_ms()),
                    patience,
                )
            elif record.last_heartbeat_ms != first_beat_ms:
                raise self._in_use(executor_id, record, "it is still sending heartbeats")
            if time.monotonic() - waited_since >= patience:
                # No beat for a whole beat interval and more: the holder is gone.
                if self.executors.claim(self.holder(executor_id), record):
                    self._log_claim(executor_id, record)
                    return self.holder(executor_id)
                continue
            if stop.wait(min(0.25, patience)):
                raise DBOSExecutorIdInUseError(
                    f"launch stopped while waiting for executor ID {executor_id!r}"
                )

    def _in_use(
        self, executor_id: str, record: ExecutorRecord, why: str
    ) -> DBOSExecutorIdInUseError:
        return DBOSExecutorIdInUseError(
            f"executor ID {executor_id!r} is in use by {record.describe(self.now_ms())}, and "
            f"{why}. Two processes under one executor ID would recover and run each other's "
            "work. Give each process its own executor_id (or leave executor_id and DBOS__VMID "
            "unset: every process then gets one of its own), or stop the other process first."
        )

    def _log_claim(self, executor_id: str, previous: ExecutorRecord | None) -> None:
        if previous is None:
            logger.info("executor ID %r claimed", executor_id)
        else:
            logger.info(
                "executor ID %r claimed (previous holder: %s)",
                executor_id,
                previous.describe(self.now_ms()),
            )


def _process_key() -> str | None:
    """The boot and PID namespace a PID belongs to (Linux only)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
    return f"{boot}/{namespace}"


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux ``/proc/PID/stat`` field 22),
    which tells a PID apart from a later process that reused it; None if there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None
