"""Schedules: N every-second schedules (``@DBOS.scheduled("* * * * * *")``), measured over a
window: start lateness, missed and duplicate ticks, threads, RSS and CPU."""

from __future__ import annotations

import math
import os
import time
from datetime import datetime
from typing import Any

from benchmarks.scenarios.common import dbos_config, emit, load_api, parse_args
from benchmarks.scenarios.ticks import WARMUP_SECONDS, TickLog

EVERY_SECOND = "* * * * * *"


def register(DBOS: Any, log: TickLog, i: int) -> None:
    def tick(scheduled_time: datetime, actual_time: datetime) -> None:
        log.record(i, scheduled_time.timestamp(), time.time())

    # Each schedule is its own workflow, with its own registered (qualified) name.
    tick.__name__ = tick.__qualname__ = f"tick_{i:04d}"
    DBOS.scheduled(EVERY_SECOND)(DBOS.workflow()(tick))


def main() -> None:
    args = parse_args()
    api = load_api(args.impl)
    DBOS = api.DBOS
    DBOS(config=dbos_config(args.db_url))
    log = TickLog(args.size, args.seconds)
    for i in range(args.size):
        register(DBOS, log, i)
    DBOS.launch()
    log.first = max(log.first, math.ceil(time.time() + WARMUP_SECONDS))
    cpu = log.watch()
    emit(log.result(cpu))
    # A clean shutdown of a thousand schedule threads can take long; the numbers are out.
    os._exit(0)


if __name__ == "__main__":
    main()
