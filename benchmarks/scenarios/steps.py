"""Sequential workflows of three trivial steps: workflows/s and per-workflow latency."""

from __future__ import annotations

import time

from benchmarks.scenarios.common import Result, dbos_config, emit, load_api, ms, parse_args
from benchmarks.scenarios.common import percentile as pct

WARMUP = 20


def main() -> None:
    args = parse_args()
    api = load_api(args.impl)
    DBOS = api.DBOS
    DBOS(config=dbos_config(args.db_url))

    @DBOS.step()
    def add_one(x: int) -> int:
        return x + 1

    @DBOS.workflow()
    def three_steps(x: int) -> int:
        return add_one(add_one(add_one(x)))

    DBOS.launch()
    for i in range(WARMUP):
        three_steps(i)
    latencies: list[float] = []
    deadline = time.perf_counter() + args.seconds
    start = time.perf_counter()
    while len(latencies) < args.size and time.perf_counter() < deadline:
        t0 = time.perf_counter()
        assert three_steps(len(latencies)) == len(latencies) + 3
        latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - start
    DBOS.destroy()
    result = Result()
    result.add("workflows/s", len(latencies) / elapsed, "wf/s")
    result.add("latency p50", ms(pct(latencies, 50)), "ms", "lower")
    result.add("latency p99", ms(pct(latencies, 99)), "ms", "lower")
    result.notes.append(f"{len(latencies)} workflows in {elapsed:.2f}s")
    emit(result)


if __name__ == "__main__":
    main()
