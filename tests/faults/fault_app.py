"""A worker process of the kill -9 fault battery (run with ``python -m``; never imported by tests).

usage: python -m tests.faults.fault_app DB_URL EXECUTOR_ID GENERATION FOLDER

It launches the engine, recovers its own PENDING work, and until ``FOLDER/stop-feeding`` exists
keeps a mixed workload going: multi-step workflows and durable sleepers it starts itself, a
queue it serves together with the other worker, an every-second schedule, and debounce calls.
Every step body appends to the shared ledger first (see tests/faults/ledger.py). When
``FOLDER/quit`` exists it destroys DBOS and exits 0. The battery SIGKILLs it at random moments.
"""

from __future__ import annotations

import os
import random
import sys
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from engine import DBOS, Debouncer, Queue, SetWorkflowID
from tests.faults import workload
from tests.faults.ledger import LedgerWriter

DB_URL, EXECUTOR_ID, GENERATION, FOLDER = sys.argv[1:5]
FILES = workload.Files(Path(FOLDER))
LEDGER = LedgerWriter(FILES.ledger)
PID = os.getpid()
RNG = random.Random(f"{EXECUTOR_ID}-{GENERATION}-{PID}")

fault_queue = Queue(workload.QUEUE_NAME, worker_concurrency=4, polling_interval_sec=0.2)


@DBOS.step()
def work(value: Any, pause: float) -> dict[str, Any]:
    """The one step body of the battery: ledger line first, then the work (a short pause that
    gives a kill a fair chance to land mid-step), then the output naming the attempt."""
    attempt = uuid.uuid4().hex[:16]
    LEDGER.append(
        {
            "ev": "step",
            "wf": DBOS.workflow_id,
            "step": DBOS.step_id,
            "att": attempt,
            "pid": PID,
            "exec": EXECUTOR_ID,
            "t": time.time(),
        }
    )
    time.sleep(pause)
    return {"att": attempt, "value": value}


def _pause() -> float:
    return RNG.uniform(0.01, 0.06)


@DBOS.workflow(name=workload.CHAIN)
def chain(steps: int, base: int) -> int:
    return sum(work(base + i, _pause())["value"] for i in range(steps))


@DBOS.workflow(name=workload.SLEEPER)
def sleeper(seconds: float, base: int) -> int:
    before = work(base, _pause())["value"]
    DBOS.sleep(seconds)
    return int(before + work(base + 1, _pause())["value"])


@DBOS.workflow(name=workload.QUEUED)
def queued(item: int) -> int:
    first = work(item, _pause())["value"]
    DBOS.sleep(0.1)
    return int(first + work(2 * item, _pause())["value"] + work(3 * item, _pause())["value"])


@DBOS.scheduled("* * * * * *")
@DBOS.workflow(name=workload.TICK)
def tick(scheduled: datetime, actual: datetime) -> str:
    text: str = work(workload.tick_text(scheduled), _pause())["value"]
    return text


@DBOS.workflow(name=workload.DEBOUNCED)
def debounced(key: str, value: int) -> str:
    text: str = work(f"{key}:{value}", _pause())["value"]
    return text


debouncer = Debouncer.create(debounced, debounce_timeout_sec=workload.DEBOUNCE_MAX_WAIT_SEC)


def _feeding() -> bool:
    return not FILES.stop_feeding.exists()


def feed_workflows() -> None:
    """Start a chain or a sleeper every 0.3 s; the ledger's ``started`` line acknowledges it."""
    n = 0
    while _feeding():
        n += 1
        workflow_id = f"{EXECUTOR_ID}-{GENERATION}-{n}"
        base = n * 100
        with SetWorkflowID(workflow_id):
            if n % 2:
                DBOS.start_workflow(chain, RNG.randint(2, 5), base)
            else:
                DBOS.start_workflow(sleeper, RNG.uniform(0.2, 1.0), base)
        LEDGER.append({"ev": "started", "wf": workflow_id, "pid": PID})
        time.sleep(0.3)


def feed_debounces() -> None:
    """Bursts of three calls 0.1 s apart on one of this worker's keys, then the next key: each
    key is quiet for longer than the period between its bursts, so each burst is a window."""
    burst = 0
    while _feeding():
        key = f"{EXECUTOR_ID}-k{burst % 3}"
        burst += 1
        for _ in range(3):
            value = time.time_ns()  # grows call after call, across restarts too
            LEDGER.append({"ev": "deb_try", "key": key, "value": value, "pid": PID})
            handle = debouncer.debounce(key, workload.DEBOUNCE_PERIOD_SEC, key, value)
            LEDGER.append(
                {"ev": "deb_ok", "key": key, "value": value, "wf": handle.workflow_id, "pid": PID}
            )
            time.sleep(0.1)
        time.sleep(0.15)


def _guarded(target: Any) -> Any:
    """A feeder that fails writes the failure to the ledger (the battery asserts there is none)."""

    def run() -> None:
        try:
            target()
        except Exception as exc:
            LEDGER.append({"ev": "error", "where": target.__name__, "error": repr(exc), "pid": PID})

    return run


def main() -> None:
    DBOS(
        config={
            "name": workload.APP_NAME,
            "system_database_url": DB_URL,
            # TODO(identity): drop the explicit executor_id once the default executor ID is
            # distinct per process and stable across restarts; the battery restarts each worker
            # under its own ID, which is exactly what that default must give.
            "executor_id": EXECUTOR_ID,
            "application_version": workload.APP_VERSION,
            "executor_timeout_sec": workload.EXECUTOR_TIMEOUT_SEC,
        }
    )
    DBOS.launch()
    LEDGER.append({"ev": "ready", "exec": EXECUTOR_ID, "gen": int(GENERATION), "pid": PID})
    with FILES.ready.open("a") as ready:
        ready.write(f"{PID}\n")
    for target in (feed_workflows, feed_debounces):
        threading.Thread(target=_guarded(target), daemon=True).start()
    while not FILES.quit.exists():
        time.sleep(0.1)
    DBOS.destroy()


if __name__ == "__main__":
    main()
