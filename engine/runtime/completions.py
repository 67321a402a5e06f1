"""Group commit for workflow completions.

Workflows that finish at the same time share one commit: the first finisher becomes the leader
and writes every completion queued while it works, in rounds, until none is left; the others
either wait for their round (a caller that needs the result) or go back to running workflows (a
background run). Without contention this is exactly one commit per completion, as before. A
crash before a round commits leaves its workflows PENDING, so recovery runs them again, as it
would after a crash just before a single commit.

The rounds are written by the threads of finishing workflows, which wait out a database outage
(see ``Runtime._finish``): the completions queue up meanwhile and are written once it is back.
A workflow whose body stopped on an outage has no outcome to write: ``rerun_after_outage``
runs it again from its last recorded step once the database is back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.storage.database import OUTAGE_ERRORS, is_outage, waiting_out_outages
from engine.storage.store import SystemStore, WorkflowOutcome

if TYPE_CHECKING:
    from engine.runtime.executor import Runtime

logger = logging.getLogger("keeptime.engine")
#: A rerun waits this long first: the error may not be the system database's (an application
#: database, or code raising it), and then this keeps a workflow from rerunning in a hot loop.
RERUN_PAUSE_SECONDS = 0.5


@dataclass
class PendingCompletion:
    outcome: WorkflowOutcome
    # Called by the thread that committed (or failed) the round, with whether the workflow was
    # still PENDING and so took this outcome (None: the write failed).
    on_settled: Callable[[bool | None], None] | None = None
    applied: bool | None = None
    failure: BaseException | None = None
    settled: threading.Event | None = None  # only for a caller that waits

    def settle(self, applied: bool | None, failure: BaseException | None = None) -> None:
        self.applied, self.failure = applied, failure
        if self.settled is not None:
            self.settled.set()
        if self.on_settled is not None:
            try:
                self.on_settled(applied)
            except Exception:
                logger.exception("completion callback for %s failed", self.outcome.workflow_id)


class CompletionGroup:
    def __init__(self, store: SystemStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._queued: list[PendingCompletion] = []
        self._leading = False
        self._idle = threading.Event()
        self._idle.set()

    def complete(self, completion: PendingCompletion) -> None:
        """Queue a completion; this thread writes it (and others) unless a leader is at work."""
        with self._lock:
            self._queued.append(completion)
            if self._leading:
                return
            self._leading = True
            self._idle.clear()
        self._lead()

    def complete_and_wait(self, completion: PendingCompletion) -> bool:
        """Write a completion and wait for its commit; True if the workflow took the outcome."""
        settled = completion.settled = threading.Event()
        self.complete(completion)
        settled.wait()
        if completion.failure is not None:
            raise completion.failure
        return bool(completion.applied)

    def drain(self, timeout: float) -> bool:
        """Wait until no round is in progress (shutdown); False if one still runs."""
        return self._idle.wait(timeout)

    def _lead(self) -> None:
        while True:
            with self._lock:
                batch, self._queued = self._queued, []
                if not batch:
                    self._leading = False
                    self._idle.set()
                    return
            self._write(batch)

    def _write(self, batch: list[PendingCompletion]) -> None:
        started = time.monotonic()
        try:
            if len(batch) == 1:
                outcome = batch[0].outcome
                done = self._store.complete_workflow(
                    outcome.workflow_id, outcome.status, outcome.output, outcome.error
                )
                applied = {outcome.workflow_id} if done else set()
            else:
                applied = self._store.complete_workflows([c.outcome for c in batch])
        except Exception as exc:
            # The workflows stay PENDING; recovery finishes them (and a waiting caller sees why).
            if is_outage(exc):  # only when shutting down: the writer waits out outages
                logger.warning(
                    "%d workflow completion(s) left unwritten at shutdown (%s); recovery "
                    "finishes them",
                    len(batch),
                    exc,
                )
            else:
                logger.exception("could not record %d workflow completion(s)", len(batch))
            for completion in batch:
                completion.settle(None, exc)
            return
        if len(batch) > 1:
            logger.debug(
                "recorded %d completions in one commit (%.1f ms)",
                len(batch),
                (time.monotonic() - started) * 1000,
            )
        for completion in batch:
            completion.settle(completion.outcome.workflow_id in applied)


def rerun_after_outage(runtime: Runtime, workflow_id: str, error: BaseException) -> bool:
    """Arrange for a workflow whose body stopped on a database outage to continue.

    Returns False when ``error`` is no outage, or the runtime is shutting down (then recovery
    continues the workflow). Otherwise waits until the database is back and runs the workflow
    again from its last recorded step, unless it finished, was cancelled or was taken over
    meanwhile; the caller must have released the run first.
    """
    if not is_outage(error) or runtime.stopping.is_set():
        return False
    logger.warning(
        "workflow %s stopped on a database outage (%s); it continues from its last recorded "
        "step once the database is back",
        workflow_id,
        error,
    )
    if runtime.stopping.wait(RERUN_PAUSE_SECONDS):
        return True
    with waiting_out_outages(runtime.stopping):
        try:
            row = runtime.store.get_workflow(workflow_id)
            if (
                row is not None
                and row.status == "PENDING"
                and row.executor_id == runtime.executor_id
            ):
                runtime.execute_existing(row)
        except OUTAGE_ERRORS:
            pass  # shutting down: it stays PENDING for recovery
    return True
