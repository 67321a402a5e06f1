"""Queues: enqueue rate, drain rate of a backlog of tiny workflows, idle enqueue-to-start latency.

The backlog is enqueued with ``DBOSClient`` before this process declares the queue, so nothing
runs while it builds up; declaring ``Queue("bench")`` then starts the drain. ``Queue.enqueue``
is timed separately while the workers run, as an application would use it.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from benchmarks.scenarios.common import (
    Result,
    dbos_config,
    emit,
    load_api,
    ms,
    parse_args,
    wait_until,
)
from benchmarks.scenarios.common import percentile as pct

IDLE_GAP_SECONDS = 0.3


class Counter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0
        self.first_at: float | None = None
        self.started: dict[int, float] = {}

    def bump(self) -> None:
        with self.lock:
            if self.first_at is None:
                self.first_at = time.perf_counter()
            self.count += 1


def main() -> None:
    args = parse_args()
    api = load_api(args.impl)
    DBOS = api.DBOS
    DBOS(config=dbos_config(args.db_url))
    done = Counter()

    @DBOS.workflow()
    def tiny(i: int) -> int:
        done.bump()
        return i

    @DBOS.workflow()
    def probe(i: int) -> None:
        done.started[i] = time.time()

    DBOS.launch()
    result = Result()
    n = args.size
    client = api.DBOSClient(system_database_url=args.db_url)
    t0 = time.perf_counter()
    for i in range(n):
        client.enqueue({"queue_name": "bench", "workflow_name": tiny.__qualname__}, i)
    enqueue_s = time.perf_counter() - t0
    result.add("enqueue/s (client, backlog)", n / enqueue_s, "wf/s")

    t0 = time.perf_counter()
    queue = api.Queue("bench")
    name = tiny.__qualname__
    # Drained means every workflow recorded done in the database, not just its body run.
    drained = wait_until(lambda: done.count >= n, timeout=args.seconds, interval=0.002)
    drained = drained and wait_until(lambda: not unfinished(DBOS, name), args.seconds, 0.005)
    end = time.perf_counter()
    if not drained:
        result.notes.append(f"drain: {len(unfinished(DBOS, name))}/{n} not done after the budget")
    finished = n - len(unfinished(DBOS, name))
    result.add("drain/s (backlog)", finished / (end - t0), "wf/s")
    if done.first_at is not None and end > done.first_at:
        # The same drain without the first pick-up delay (the idle latency below measures it).
        result.add("drain/s (from first start)", finished / (end - done.first_at), "wf/s")

    live = max(1, n // 4)
    t0 = time.perf_counter()
    handles = [queue.enqueue(tiny, i) for i in range(live)]
    result.add("enqueue/s (Queue.enqueue, live)", live / (time.perf_counter() - t0), "wf/s")
    wait_until(lambda: done.count >= n + live, timeout=args.seconds, interval=0.01)
    handles[-1].get_result()

    result.add(
        "idle enqueue→start p50",
        ms(pct(idle_latencies(queue, probe, done, args), 50)),
        "ms",
        "lower",
    )
    DBOS.destroy()
    emit(result)


def unfinished(DBOS: Any, name: str) -> list[Any]:
    return list(DBOS.list_workflows(status=["ENQUEUED", "PENDING"], name=name))


def idle_latencies(queue: Any, probe: Any, done: Counter, args: Any) -> list[float]:
    samples: list[float] = []
    budget = time.monotonic() + args.seconds
    for i in range(max(2, min(6, args.size // 200))):
        if time.monotonic() > budget:
            break
        time.sleep(IDLE_GAP_SECONDS)
        t0 = time.time()
        queue.enqueue(probe, i)
        if wait_until(lambda i=i: i in done.started, timeout=10, interval=0.001):
            samples.append(done.started[i] - t0)
    return samples


if __name__ == "__main__":
    main()
