"""The schedules scenario with APScheduler 3 instead: a BackgroundScheduler whose jobs live in a
SQLAlchemyJobStore on the same database, N jobs on CronTrigger(second="*"), default executor."""

from __future__ import annotations

import math
import os
import time
from typing import Any

from benchmarks.scenarios.common import emit, parse_args
from benchmarks.scenarios.ticks import WARMUP_SECONDS, TickLog


def tick(i: int) -> float:
    """The job: report when it started (APScheduler gives it no nominal time)."""
    return time.time()


def main() -> None:
    from apscheduler.events import EVENT_JOB_EXECUTED, JobExecutionEvent
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.cron import CronTrigger

    args = parse_args()
    url = args.db_url.replace("postgresql://", "postgresql+psycopg://", 1)
    log = TickLog(args.size, args.seconds)
    scheduler = BackgroundScheduler(jobstores={"default": SQLAlchemyJobStore(url=url)})

    def on_executed(event: JobExecutionEvent) -> None:
        schedule = int(event.job_id.removeprefix("s"))
        log.record(schedule, event.scheduled_run_time.timestamp(), float(event.retval))

    scheduler.add_listener(on_executed, EVENT_JOB_EXECUTED)
    for i in range(args.size):
        job: Any = scheduler.add_job(
            f"{__name__}:tick",
            CronTrigger(second="*"),
            args=(i,),
            id=f"s{i}",
            replace_existing=True,
        )
        del job
    scheduler.start()
    log.first = max(log.first, math.ceil(time.time() + WARMUP_SECONDS))
    cpu = log.watch()
    emit(log.result(cpu))
    os._exit(0)


if __name__ == "__main__":
    main()
