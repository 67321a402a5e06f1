"""A child process for the multi-process scheduler and debouncer tests.

Usage: python -m tests.engine.scheduling_worker MODE DB_URL LOG_FILE SECONDS [VALUE]
Every workflow execution appends one line to LOG_FILE, so the parent counts executions, not rows.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import datetime

from engine import DBOS, Debouncer
from engine.runtime.scheduler import ScheduleDefinition, set_schedules


def _log(line: str) -> None:
    with open(os.environ["KEEPTIME_TEST_LOG"], "a", encoding="utf-8") as handle:
        handle.write(line + "\n")


@DBOS.workflow()
def logged_tick(scheduled_time: datetime, actual_time: datetime) -> None:
    _log(f"tick {scheduled_time.isoformat()} {os.getpid()}")


@DBOS.workflow()
def logged_debounce(value: str) -> str:
    _log(f"debounce {value} {os.getpid()}")
    return value


def main() -> None:
    mode, url, log, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    os.environ["KEEPTIME_TEST_LOG"] = log
    DBOS(config={"name": "test-app", "system_database_url": url, "executor_id": f"p{os.getpid()}"})
    DBOS.launch()
    if mode == "ticks":
        definition = ScheduleDefinition(
            name="every-second",
            cron="* * * * * *",
            workflow_name="logged_tick",
            catchup="none",
            overlap="allow",
        )
        set_schedules([definition])
        print("ready", flush=True)
        time.sleep(seconds)
    elif mode == "debounce":
        handle = Debouncer.create(logged_debounce).debounce("shared-key", seconds, sys.argv[5])
        print(handle.workflow_id, flush=True)
        if sys.argv[6] == "wait":
            print(handle.get_result(), flush=True)
        else:
            time.sleep(600)  # the parent kills this process mid-window
    DBOS.destroy()


if __name__ == "__main__":
    main()
