"""A small application that the crash tests run as a real process and kill with SIGKILL.

usage: python -m tests.engine.crash_app DB_URL EXECUTOR_ID LOG_PATH MODE [COUNT]
MODE start:   start COUNT pipelines and a sleeper, then idle until killed.
MODE serve:   launch (recovering or taking over work) and idle until killed.
MODE recover: launch and exit 0 once every workflow in the database has finished.
"""

from __future__ import annotations

import os
import sys
import time

from engine import DBOS, SetWorkflowID

DB_URL, EXECUTOR_ID, LOG_PATH, MODE = sys.argv[1:5]
COUNT = int(sys.argv[5]) if len(sys.argv) > 5 else 0
STEPS = 5
SLEEP_SECONDS = 4.0


def log(line: str) -> None:
    with open(LOG_PATH, "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


@DBOS.step()
def work(workflow_id: str, index: int) -> int:
    log(f"{workflow_id}:{index}")
    time.sleep(0.15)
    return index


@DBOS.workflow()
def pipeline() -> int:
    wf_id = DBOS.workflow_id
    assert wf_id is not None
    return sum(work(wf_id, i) for i in range(STEPS))


@DBOS.step()
def wake_time() -> float:
    now = time.time()
    log(f"woke:{now}")
    return now


@DBOS.workflow()
def sleeper() -> float:
    DBOS.sleep(SLEEP_SECONDS)
    return wake_time()


def main() -> None:
    DBOS(
        config={
            "name": "crash-app",
            "system_database_url": DB_URL,
            "executor_id": EXECUTOR_ID,
            "application_version": "crash-v1",
            "executor_timeout_sec": 2,
        }
    )
    DBOS.launch()
    if MODE == "start":
        for i in range(COUNT):
            with SetWorkflowID(f"pipe-{i}"):
                DBOS.start_workflow(pipeline)
        with SetWorkflowID("sleeper"):
            DBOS.start_workflow(sleeper)
    if MODE == "recover":
        while DBOS.list_workflows(status=["PENDING", "ENQUEUED"]):
            time.sleep(0.05)
        DBOS.destroy()
        return
    log("ready")
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
