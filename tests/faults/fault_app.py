"""A worker process of the kill -9 fault battery (run with ``python -m``; never imported by tests).

usage: python -m tests.faults.fault_app DB_URL EXECUTOR_ID GENERATION FOLDER [MODE]

It launches the engine, recovers its own PENDING work, and until ``FOLDER/stop-feeding`` exists
keeps a mixed workload going: multi-step workflows and durable sleepers it starts itself, a
queue it serves together with the other worker, an every-second schedule, and debounce calls.
Every step body appends to the shared ledger first (see tests/faults/ledger.py), and so does
every catch-up decision of the schedule. When ``FOLDER/quit`` exists it destroys DBOS and exits
0. The kill -9 battery SIGKILLs it at random moments.

MODE ``outages`` (tests/faults/outages.py, where the database goes away instead) also keeps
pulses going (workflows of steps and short durable sleeps, so that every outage finds work in
flight), and its feeders outlast an outage: a call that gives up on it (documented for calls
made outside workflows) is written to the ledger as ``outage_call`` and made again, with the
same workflow ID, until it succeeds. In the default mode ``kill9`` any failure is an ``error``.
"""

from __future__ import annotations

import logging
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
from engine.error import DBOSConnectionLostError
from tests.faults import workload
from tests.faults.ledger import LedgerWriter

DB_URL, EXECUTOR_ID, GENERATION, FOLDER = sys.argv[1:5]
MODE = sys.argv[5] if len(sys.argv) > 5 else workload.MODE_KILL9
OUTAGES = MODE == workload.MODE_OUTAGES
FILES = workload.Files(Path(FOLDER))
LEDGER = LedgerWriter(FILES.ledger)
PID = os.getpid()
RNG = random.Random(f"{EXECUTOR_ID}-{GENERATION}-{PID}")
# Pulses: one started every PULSE_EVERY_SEC, each PULSE_STEPS steps with a durable sleep between
# two (about 1.5 s in all), so two or three are in flight on each worker at any moment.
PULSE_EVERY_SEC = 0.6
PULSE_STEPS = 10
PULSE_SLEEP_SEC = 0.1
# A feeder's pause after a call that gave up on an outage, before it makes the call again.
OUTAGE_RETRY_PAUSE_SEC = 0.5

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


@DBOS.workflow(name=workload.PULSE)
def pulse(steps: int, base: int) -> int:
    total = 0
    for i in range(steps):
        if i:
            DBOS.sleep(PULSE_SLEEP_SEC)  # between steps: each sleep has a step after it
        total += work(base + i, _pause())["value"]
    return total


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


def _outage_call(where: str, exc: DBOSConnectionLostError) -> None:
    """An outage outlasted a call's bound: allowed (and logged) in the outage mode only."""
    if not OUTAGES:
        raise exc
    LEDGER.append({"ev": "outage_call", "where": where, "error": repr(exc)[:300], "pid": PID})
    time.sleep(OUTAGE_RETRY_PAUSE_SEC)


def _start(workflow_id: str, func: Any, *args: Any) -> None:
    """Start ``func`` under ``workflow_id``, again after an outage gave up on it (the ID makes a
    start that committed before its connection broke count once), then acknowledge it."""
    while True:
        try:
            with SetWorkflowID(workflow_id):
                DBOS.start_workflow(func, *args)
            break
        except DBOSConnectionLostError as exc:
            _outage_call("start_workflow", exc)
    LEDGER.append({"ev": "started", "wf": workflow_id, "pid": PID})


def feed_workflows() -> None:
    """Start a chain or a sleeper every 0.3 s; the ledger's ``started`` line acknowledges it."""
    n = 0
    while _feeding():
        n += 1
        workflow_id = f"{EXECUTOR_ID}-{GENERATION}-{n}"
        base = n * 100
        if n % 2:
            _start(workflow_id, chain, RNG.randint(2, 5), base)
        else:
            _start(workflow_id, sleeper, RNG.uniform(0.2, 1.0), base)
        time.sleep(0.3)


def feed_pulses() -> None:
    """Keep pulses going (outage mode): each outage finds some in flight on this worker."""
    n = 0
    while _feeding():
        n += 1
        _start(f"{EXECUTOR_ID}-{GENERATION}-p{n}", pulse, PULSE_STEPS, n * 100)
        time.sleep(PULSE_EVERY_SEC)


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
            try:
                handle = debouncer.debounce(key, workload.DEBOUNCE_PERIOD_SEC, key, value)
            except DBOSConnectionLostError as exc:
                _outage_call("debounce", exc)  # not retried: the next call is a new value
                continue
            LEDGER.append(
                {"ev": "deb_ok", "key": key, "value": value, "wf": handle.workflow_id, "pid": PID}
            )
            time.sleep(0.1)
        time.sleep(0.15)


class CatchupToLedger(logging.Handler):
    """Writes the schedule's catch-up decisions (their log records' fields) to the ledger."""

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "schedule", None) != workload.TICK or not hasattr(record, "ticks_run"):
            return
        fields = ("cause", "policy", "gap_start", "gap_end", "ticks_run", "ticks_dropped")
        entry = {"ev": "catchup", "exec": EXECUTOR_ID, "pid": PID, "t": time.time()}
        LEDGER.append(entry | {name: getattr(record, name, None) for name in fields})


def _guarded(target: Any) -> Any:
    """A feeder that fails writes the failure to the ledger (the battery asserts there is none)."""

    def run() -> None:
        try:
            target()
        except Exception as exc:
            LEDGER.append({"ev": "error", "where": target.__name__, "error": repr(exc), "pid": PID})

    return run


def main() -> None:
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(threadName)s %(levelname)s %(message)s"
    )
    engine_logger = logging.getLogger("keeptime.engine")
    engine_logger.setLevel(logging.INFO)  # outage notices and catch-up decisions
    engine_logger.addHandler(CatchupToLedger())
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
    feeders = [feed_workflows, feed_debounces] + ([feed_pulses] if OUTAGES else [])
    for target in feeders:
        threading.Thread(target=_guarded(target), daemon=True).start()
    while not FILES.quit.exists():
        time.sleep(0.1)
    DBOS.destroy()


if __name__ == "__main__":
    main()
