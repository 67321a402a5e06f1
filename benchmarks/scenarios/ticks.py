"""Tick bookkeeping shared by the schedule scenarios (ours, the reference, APScheduler)."""

from __future__ import annotations

import math
import threading
import time
from collections import Counter

from benchmarks.scenarios.common import Result, cpu_seconds, ms, proc_status
from benchmarks.scenarios.common import percentile as pct

WARMUP_SECONDS = 1.5  # ticks before this are launch noise, not steady state
GRACE_SECONDS = 2.0  # a tick of the window that starts later than this counts as missed


class TickLog:
    """Ticks seen, keyed by (schedule, nominal second), with the lateness of each start."""

    def __init__(self, n_schedules: int, window: float) -> None:
        self.lock = threading.Lock()
        self.n = n_schedules
        self.first = math.ceil(time.time() + WARMUP_SECONDS)
        self.seconds = max(1, int(window))
        self.seen: Counter[tuple[int, int]] = Counter()
        self.lateness: list[float] = []
        self.max_threads = 0
        self.max_rss_kib = 0

    def record(self, schedule: int, nominal: float, started: float) -> None:
        second = round(nominal)
        if not self.first <= second < self.first + self.seconds:
            return
        with self.lock:
            self.seen[(schedule, second)] += 1
            self.lateness.append(started - nominal)

    def watch(self) -> float:
        """Sample threads and RSS until the window and its grace period end; CPU share used."""
        until = self.first + self.seconds + GRACE_SECONDS
        while time.time() < self.first:
            time.sleep(0.05)
        cpu0, t0 = cpu_seconds(), time.time()
        while time.time() < until:
            status = proc_status()
            self.max_threads = max(self.max_threads, status.get("Threads", 0))
            self.max_rss_kib = max(self.max_rss_kib, status.get("VmRSS", 0))
            time.sleep(0.25)
        return (cpu_seconds() - cpu0) / (time.time() - t0)

    def result(self, cpu_share: float) -> Result:
        expected = self.n * self.seconds
        with self.lock:
            distinct = len(self.seen)
            duplicates = sum(c - 1 for c in self.seen.values())
            late = list(self.lateness)
        result = Result()
        result.add("lateness p50", ms(pct(late, 50)), "ms", "lower")
        result.add("lateness p99", ms(pct(late, 99)), "ms", "lower")
        result.add("missed ticks", float(expected - distinct), "ticks", "lower")
        result.add("missed %", 100.0 * (expected - distinct) / expected, "%", "lower")
        result.add("duplicate ticks", float(duplicates), "ticks", "lower")
        result.add("threads (max)", float(self.max_threads), "threads", "lower")
        result.add("RSS (max)", self.max_rss_kib / 1024.0, "MiB", "lower")
        result.add("CPU", 100.0 * cpu_share, "% of a core", "lower")
        result.notes.append(f"{expected} ticks expected over {self.seconds}s")
        return result
