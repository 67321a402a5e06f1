"""What the fault battery's worker processes run, as plain data both sides share.

The worker (``fault_app``) registers workflows, a queue and a schedule when imported, so the
test process never imports it: it would put an every-second schedule into every later test of
the session. The names, files and expected outputs live here instead.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

APP_NAME = "faults"
APP_VERSION = "faults-v1"
QUEUE_NAME = "fault_q"
# Short, so a worker kept down past it has its work taken over by the other one in the loop.
EXECUTOR_TIMEOUT_SEC = 3.0

CHAIN = "fault_chain"
SLEEPER = "fault_sleeper"
QUEUED = "fault_queued"
TICK = "fault_tick"
DEBOUNCED = "fault_debounced"
# Only in the outage mode: always some running per worker (steps with short durable sleeps),
# so that each outage finds work in flight on both workers.
PULSE = "fault_pulse"
KINDS = (CHAIN, SLEEPER, QUEUED, TICK, DEBOUNCED, PULSE)

# What a worker process runs: the kill -9 battery's workload, or the same plus pulses, with
# feeders that outlast database outages (tests/faults/outages.py).
MODE_KILL9 = "kill9"
MODE_OUTAGES = "outages"

TICK_PREFIX = f"sched-{TICK}-"
DEBOUNCE_PERIOD_SEC = 0.4
DEBOUNCE_MAX_WAIT_SEC = 2.0


class Files:
    """The files one battery run shares between the test and its workers."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        # Every step execution, workflow start and debounce call, appended by every process.
        self.ledger = folder / "ledger.jsonl"
        # One line per launched worker, once DBOS.launch() returned.
        self.ready = folder / "ready.jsonl"
        # Created by the test: stop starting new work / destroy DBOS and exit.
        self.stop_feeding = folder / "stop-feeding"
        self.quit = folder / "quit"

    def worker_log(self, executor_id: str, generation: int) -> Path:
        return self.folder / f"{executor_id}-{generation}.log"


def expected_output(name: str, args: tuple[Any, ...]) -> Any:
    """The output a SUCCESS run of workflow ``name`` with positional ``args`` must have."""
    if name in (CHAIN, PULSE):
        steps, base = args
        return sum(base + i for i in range(steps))
    if name == SLEEPER:
        _seconds, base = args
        return 2 * base + 1
    if name == QUEUED:
        (item,) = args
        return 6 * item
    if name == TICK:
        scheduled, _actual = args
        return tick_text(scheduled)
    if name == DEBOUNCED:
        key, value = args
        return f"{key}:{value}"
    raise AssertionError(f"the battery runs no workflow named {name!r}")


def tick_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def tick_of(workflow_id: str) -> datetime | None:
    """The nominal tick of a schedule tick's workflow ID, or None for other workflows."""
    if not workflow_id.startswith(TICK_PREFIX):
        return None
    text = workflow_id.removeprefix(TICK_PREFIX)
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
