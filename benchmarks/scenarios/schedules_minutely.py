"""Many managed schedules at one per minute (the daemon's kind): peak RSS, threads, and the
lateness of the minute's burst, with missed and duplicate ticks.

Every schedule fires at the same second of the minute (``S * * * * *``), the worst case of a
minute boundary; S is picked so that the burst comes soon after the schedules are registered,
and one burst is measured. Ours only: the reference has no programmatic schedule API and runs a
thread per schedule.
"""

from __future__ import annotations

import math
import os
import time
from datetime import datetime

from benchmarks.scenarios.common import dbos_config, emit, parse_args, proc_status
from benchmarks.scenarios.ticks import TickLog


def main() -> None:
    from engine import DBOS
    from engine.runtime.scheduler import ScheduleDefinition, set_schedules

    args = parse_args()
    DBOS(config=dbos_config(args.db_url))
    log = TickLog(args.size, 1)

    @DBOS.workflow()
    def minute_job(scheduled_time: datetime, actual_time: datetime, i: int) -> None:
        log.record(i, scheduled_time.timestamp(), time.time())

    DBOS.launch()
    # Registration takes about 0.4 ms a schedule; leave room for it before the burst.
    burst = math.ceil(time.time() + 5 + args.size * 0.001)
    cron = f"{burst % 60} * * * * *"
    set_schedules(
        [
            ScheduleDefinition(
                name=f"minutely-{i:05d}",
                cron=cron,
                workflow_name=minute_job.__qualname__,
                args=(i,),
                catchup="none",
                overlap="allow",
            )
            for i in range(args.size)
        ]
    )
    if time.time() >= burst:
        raise SystemExit(f"registering {args.size} schedules took past the burst second")
    log.first = burst
    cpu = log.watch()
    result = log.result(cpu)
    result.add("RSS (peak)", proc_status().get("VmHWM", 0) / 1024.0, "MiB", "lower")
    emit(result)
    os._exit(0)  # the numbers are out; shutdown is not what is measured


if __name__ == "__main__":
    main()
