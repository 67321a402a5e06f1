"""Messaging: send→recv and set_event→get_event latency, p50/p99.

Each sample is timed from the start of the writer's call to the return of the reader's, with the
reader already blocked (so the wake-up path is measured, not a read of a value already there).
"""

from __future__ import annotations

import queue as queue_mod
import threading
import time
from typing import Any

from benchmarks.scenarios.common import Result, dbos_config, emit, load_api, ms, parse_args
from benchmarks.scenarios.common import percentile as pct

READER_HEAD_START = 0.005  # seconds: time for the reader to block before the write


def main() -> None:
    args = parse_args()
    api = load_api(args.impl)
    DBOS = api.DBOS
    DBOS(config=dbos_config(args.db_url))
    received: queue_mod.Queue[float] = queue_mod.Queue()
    go: queue_mod.Queue[int] = queue_mod.Queue()

    @DBOS.workflow()
    def receiver(n: int) -> None:
        for _ in range(n):
            sent_at = DBOS.recv("ping", timeout_seconds=30)
            if sent_at is None or sent_at < 0:
                return
            received.put(sent_at)
            received.put(time.time())

    @DBOS.workflow()
    def publisher(n: int) -> None:
        for i in range(n):
            if go.get() < 0:
                return
            DBOS.set_event(f"k{i}", time.time())

    DBOS.launch()
    n = args.size
    result = Result()
    send_lat = send_recv(DBOS, receiver, received, n, args.seconds)
    event_lat = set_get_event(DBOS, publisher, go, n, args.seconds)
    for label, samples in (("send→recv", send_lat), ("set_event→get_event", event_lat)):
        result.add(f"{label} p50", ms(pct(samples, 50)), "ms", "lower")
        result.add(f"{label} p99", ms(pct(samples, 99)), "ms", "lower")
        result.notes.append(f"{label}: {len(samples)} samples")
    DBOS.destroy()
    emit(result)


def send_recv(DBOS: Any, receiver: Any, received: Any, n: int, budget: float) -> list[float]:
    handle = DBOS.start_workflow(receiver, n)
    samples: list[float] = []
    deadline = time.monotonic() + budget
    for _ in range(n):
        if time.monotonic() > deadline:
            break
        time.sleep(READER_HEAD_START)
        DBOS.send(handle.workflow_id, time.time(), "ping")
        sent_at = received.get(timeout=60)
        samples.append(received.get(timeout=60) - sent_at)
    DBOS.send(handle.workflow_id, -1.0, "ping")
    handle.get_result()
    return samples


def set_get_event(DBOS: Any, publisher: Any, go: Any, n: int, budget: float) -> list[float]:
    handle = DBOS.start_workflow(publisher, n)
    samples: list[float] = []
    deadline = time.monotonic() + budget
    for i in range(n):
        if time.monotonic() > deadline:
            break
        box: list[float] = []

        def read(i: int = i, box: list[float] = box) -> None:
            set_at = DBOS.get_event(handle.workflow_id, f"k{i}", timeout_seconds=60)
            box.append(time.time() - set_at)

        reader = threading.Thread(target=read)
        reader.start()
        time.sleep(READER_HEAD_START)
        go.put(i)
        reader.join()
        samples.extend(box)
    go.put(-1)
    handle.get_result()
    return samples


if __name__ == "__main__":
    main()
