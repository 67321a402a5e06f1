"""Debounce: calls/s on one key and on many keys, and a correctness check.

Correct means one run per key, with the key's last input. The many-key phase calls every key
twice (input 0, then 1), with a period sized from the one-key rate so that the two calls of a
key always fall inside one window.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any

from benchmarks.scenarios.common import Result, dbos_config, emit, load_api, parse_args, wait_until

ONE_KEY_PERIOD = 1.0
OPENING_PERIOD = 120.0
SETTLE = 0.5  # seconds to wait after the expected runs, to catch duplicates


class Runs:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_key: dict[str, list[int]] = defaultdict(list)

    def record(self, key: str, value: int) -> None:
        with self.lock:
            self.by_key[key].append(value)

    def keys_done(self, keys: list[str]) -> int:
        with self.lock:
            return sum(1 for k in keys if self.by_key.get(k))

    def check(self, keys: list[str], last: int) -> tuple[int, int, int]:
        """(keys with exactly one run of the last input, keys with no run, keys with extra)."""
        with self.lock:
            runs = [self.by_key.get(k, []) for k in keys]
        good = sum(1 for r in runs if r == [last])
        return good, sum(1 for r in runs if not r), sum(1 for r in runs if len(r) > 1)


def main() -> None:
    args = parse_args()
    api = load_api(args.impl)
    DBOS = api.DBOS
    DBOS(config=dbos_config(args.db_url))
    runs = Runs()

    @DBOS.workflow()
    def target(key: str, value: int) -> None:
        runs.record(key, value)

    DBOS.launch()
    debouncer = api.Debouncer.create(target)
    result = Result()
    one_key(debouncer, runs, result, calls=min(args.size, 500))
    many_keys(debouncer, runs, result, args.size)
    DBOS.destroy()
    emit(result)


def one_key(debouncer: Any, runs: Runs, result: Result, calls: int) -> None:
    t0 = time.perf_counter()
    for i in range(calls):
        debouncer.debounce("solo", ONE_KEY_PERIOD, "solo", i)
    rate = calls / (time.perf_counter() - t0)
    result.add("calls/s, 1 key", rate, "call/s")
    wait_until(lambda: runs.keys_done(["solo"]) == 1, timeout=ONE_KEY_PERIOD + 30, interval=0.01)
    time.sleep(SETTLE)
    good, _, _ = runs.check(["solo"], calls - 1)
    result.add("1 key: correct", float(good), "keys")
    if not good:
        result.notes.append(f"1 key: runs {runs.by_key.get('solo')}, expected [{calls - 1}]")


def many_keys(debouncer: Any, runs: Runs, result: Result, n_keys: int) -> None:
    """Two passes over the keys. The first pass opens every window with a long period; the
    second (the last inputs) uses a period longer than a pass took, so each key's window is
    still open at its second call and the wait after it stays short."""
    keys = [f"key-{i}" for i in range(n_keys)]
    t0 = time.perf_counter()
    for key in keys:
        debouncer.debounce(key, OPENING_PERIOD, key, 0)
    first_pass = time.perf_counter() - t0
    period = max(1.0, 1.5 * first_pass + 1.0)
    for key in keys:
        debouncer.debounce(key, period, key, 1)
    result.add(f"calls/s, {n_keys} keys", 2 * n_keys / (time.perf_counter() - t0), "call/s")
    wait_until(lambda: runs.keys_done(keys) == n_keys, timeout=period + 60, interval=0.05)
    time.sleep(SETTLE)
    good, missing, extra = runs.check(keys, 1)
    result.add(f"{n_keys} keys: correct", float(good), "keys")
    result.notes.append(
        f"{n_keys} keys (final period {period:.1f}s): {good} correct, {missing} never ran, "
        f"{extra} ran more than once"
    )


if __name__ == "__main__":
    main()
