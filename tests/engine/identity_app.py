"""A process for the executor identity tests: launches, reports its executor ID, keeps work going.

usage: python -m tests.engine.identity_app DB_URL LEDGER EXECUTOR_ID|- TIMEOUT_SEC [START_COUNT]

Prints ``executor <id>`` once launched (or ``refused <message>`` and exits 3 when its executor
ID is in use), starts START_COUNT ``slow_chain`` workflows (IDs ``<executor>-chain-<n>``), and
idles until killed. Every step appends ``<workflow>:<step>:<pid>`` to LEDGER with fsync.
"""

from __future__ import annotations

import os
import sys
import time

from engine import DBOS, SetWorkflowID
from engine.error import DBOSExecutorIdInUseError

DB_URL, LEDGER, EXECUTOR_ID, TIMEOUT = sys.argv[1:5]
START_COUNT = int(sys.argv[5]) if len(sys.argv) > 5 else 0
STEPS = 40
STEP_SECONDS = 0.1


def record(line: str) -> None:
    fd = os.open(LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


@DBOS.step()
def identity_step(index: int) -> int:
    record(f"{DBOS.workflow_id}:{index}:{os.getpid()}")
    time.sleep(STEP_SECONDS)
    return index


@DBOS.workflow()
def slow_chain() -> int:
    return sum(identity_step(i) for i in range(STEPS))


def main() -> None:
    config = {
        "name": "identity-app",
        "system_database_url": DB_URL,
        "application_version": "identity-v1",
        "executor_timeout_sec": float(TIMEOUT),
    }
    if EXECUTOR_ID != "-":
        config["executor_id"] = EXECUTOR_ID
    DBOS(config=config)  # type: ignore[arg-type]
    try:
        DBOS.launch()
    except DBOSExecutorIdInUseError as exc:
        print(f"refused {exc}", flush=True)
        sys.exit(3)
    print(f"executor {DBOS.executor_id}", flush=True)
    for n in range(START_COUNT):
        with SetWorkflowID(f"{DBOS.executor_id}-chain-{n}"):
            DBOS.start_workflow(slow_chain)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
