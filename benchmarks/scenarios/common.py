"""What every scenario script shares: the import switch, arguments, measurements, output."""

from __future__ import annotations

import argparse
import faulthandler
import importlib
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from types import ModuleType
from typing import Any

RESULT_PREFIX = "BENCH-RESULT "
IMPLS = {"ours": "engine", "ref": "dbos"}


@dataclass
class Metric:
    name: str
    value: float | None
    unit: str
    better: str  # "higher" or "lower"


@dataclass
class Result:
    metrics: list[Metric] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, value: float | None, unit: str, better: str = "higher") -> None:
        self.metrics.append(Metric(name, value, unit, better))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--impl", choices=sorted(IMPLS), required=True)
    parser.add_argument("--db-url", required=True)
    parser.add_argument("--size", type=int, default=100, help="the scenario's main count")
    parser.add_argument("--seconds", type=float, default=5.0, help="the scenario's time budget")
    parser.add_argument("--phase", default="drive", help="for scenarios that spawn children")
    parser.add_argument(
        "--timeout", type=float, default=0, help="dump all stacks and exit after this long"
    )
    args = parser.parse_args(argv)
    if args.timeout > 0:
        # A hung run leaves evidence (every thread's stack on stderr) instead of nothing.
        faulthandler.dump_traceback_later(args.timeout, exit=True)
    return args


def load_api(impl: str) -> ModuleType:
    """``engine`` for ours, ``dbos`` for the reference: the only line that differs."""
    module = importlib.import_module(IMPLS[impl])
    # The reference logs each launch at INFO; keep the benchmark's stderr for real errors.
    for name in ("dbos", "engine", "keeptime"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return module


def dbos_config(db_url: str, **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "name": "bench",
        "system_database_url": db_url,
        "log_level": "WARNING",
    }
    config.update(extra)
    return config


def emit(result: Result) -> None:
    payload = {"metrics": [asdict(m) for m in result.metrics], "notes": result.notes}
    sys.stdout.write(RESULT_PREFIX + json.dumps(payload) + "\n")
    sys.stdout.flush()


def percentile(samples: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile; None for no samples."""
    if not samples:
        return None
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), round(pct / 100.0 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def proc_status() -> dict[str, int]:
    """VmRSS, VmHWM (KiB) and Threads of this process, from /proc."""
    wanted = {"VmRSS", "VmHWM", "Threads"}
    values: dict[str, int] = {}
    with open(f"/proc/{os.getpid()}/status", encoding="ascii") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in wanted:
                values[key] = int(rest.split()[0])
    return values


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def wait_until(predicate: Any, timeout: float, interval: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
