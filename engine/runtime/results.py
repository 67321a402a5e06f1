"""Waiting for a workflow to finish and turning its stored outcome into a value or an error.

Shared by the runtime and by DBOSClient, which has no local executions to wait on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from engine.error import (
    DBOSAwaitedWorkflowCancelledError,
    DBOSAwaitedWorkflowMaxRecoveryAttemptsExceededError,
    DBOSNonExistentWorkflowError,
    DBOSWorkflowCancelledError,
)
from engine.serialization import Codec
from engine.storage.database import OUTAGE_ERRORS, waiting_out_outages
from engine.storage.store import TERMINAL_STATUSES, SystemStore

POLL_START_SECONDS = 0.005
POLL_MAX_SECONDS = 0.5


def wait_done(
    store: SystemStore,
    workflow_id: str,
    stop: threading.Event,
    local_event: Callable[[str], threading.Event | None] = lambda _: None,
    timeout: float | None = None,
) -> str:
    """Block until the workflow is terminal and return its status.

    A workflow running in this process signals ``local_event``; others are polled with backoff.
    A database outage does not end the wait: it goes on until the workflow is done, ``timeout``
    passes (TimeoutError) or ``stop`` is set (shutdown), as it would without the outage.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    with waiting_out_outages(stop, deadline):
        try:
            return _wait_done(store, workflow_id, stop, local_event, deadline)
        except OUTAGE_ERRORS as exc:
            if stop.is_set():
                raise DBOSWorkflowCancelledError("keeptime is shutting down") from exc
            raise TimeoutError(
                f"workflow {workflow_id!r} did not finish within {timeout} s; meanwhile the "
                f"database was unavailable: {exc.message}"
            ) from exc


def _wait_done(
    store: SystemStore,
    workflow_id: str,
    stop: threading.Event,
    local_event: Callable[[str], threading.Event | None],
    deadline: float | None,
) -> str:
    delay = POLL_START_SECONDS
    while True:
        local = local_event(workflow_id)
        if local is not None:
            local.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        outcome = store.get_outcome(workflow_id)
        if outcome is None:
            raise DBOSNonExistentWorkflowError(f"no workflow with ID {workflow_id!r} exists")
        if outcome[0] in TERMINAL_STATUSES:
            return outcome[0]
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(f"workflow {workflow_id!r} is still {outcome[0]}")
        wait = delay if deadline is None else min(delay, max(0.0, deadline - time.monotonic()))
        if stop.wait(wait):
            raise DBOSWorkflowCancelledError("keeptime is shutting down")
        delay = min(delay * 2, POLL_MAX_SECONDS)


def stored_outcome(
    store: SystemStore, codec: Codec, workflow_id: str, stop: threading.Event | None = None
) -> Any:
    """The workflow's result, or its error raised with the original type.

    With ``stop`` (a waiter's), the read waits out a database outage until ``stop`` is set.
    """
    if stop is None:
        found = store.get_outcome(workflow_id)
    else:
        with waiting_out_outages(stop):
            found = store.get_outcome(workflow_id)
    if found is None:
        raise DBOSNonExistentWorkflowError(f"no workflow with ID {workflow_id!r} exists")
    status, output, error = found
    if status == "SUCCESS":
        return codec.decode(output, f"the result of workflow {workflow_id!r}")
    if status == "ERROR":
        err = codec.decode_error(error)
        raise err if err is not None else RuntimeError(f"workflow {workflow_id!r} failed")
    if status == "CANCELLED":
        raise DBOSAwaitedWorkflowCancelledError(
            f"workflow {workflow_id!r} was cancelled (or timed out)"
        )
    if status == "MAX_RECOVERY_ATTEMPTS_EXCEEDED":
        raise DBOSAwaitedWorkflowMaxRecoveryAttemptsExceededError(
            f"workflow {workflow_id!r} exceeded its maximum recovery attempts (resume it with "
            "DBOS.resume_workflow once the cause is fixed)"
        )
    raise RuntimeError(f"workflow {workflow_id!r} is still {status}")
