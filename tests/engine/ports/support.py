"""Test support: the fake clock, and the rows the ports take with only the fields a test sets."""

from __future__ import annotations

from typing import Any

from engine.storage.store import StepRecord, WorkflowRow

#: A fixed instant (epoch ms) the fake clock starts at: 2023-11-14T22:13:20Z.
START_MS = 1_700_000_000_000


class FakeClock:
    """Epoch milliseconds that move only when told to."""

    def __init__(self, start_ms: int = START_MS) -> None:
        self.ms = start_ms

    def now_ms(self) -> int:
        return self.ms

    def advance(self, ms: int) -> int:
        """Move the clock ``ms`` on; returns the new time."""
        self.ms += ms
        return self.ms


def workflow_row(
    workflow_id: str, clock: FakeClock, status: str = "PENDING", name: str = "wf", **fields: Any
) -> WorkflowRow:
    """A workflow row created now (by ``clock``); ``fields`` sets any other column."""
    now = clock.now_ms()
    return WorkflowRow(workflow_id, status, name, created_at=now, updated_at=now, **fields)


def queued_row(workflow_id: str, clock: FakeClock, queue: str, **fields: Any) -> WorkflowRow:
    """An ENQUEUED row of function ``wf`` on ``queue``, version ``v1``."""
    fields.setdefault("application_version", "v1")
    return workflow_row(workflow_id, clock, "ENQUEUED", queue_name=queue, **fields)


def step(function_id: int, output: str | None = None, name: str = "step") -> StepRecord:
    """A step record with an output and no error."""
    return StepRecord(function_id, name, output, None, None)
