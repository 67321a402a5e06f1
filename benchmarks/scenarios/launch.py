"""Launch: time from process spawn to a launched DBOS that ran one workflow, on a new database
(schema created) and again on the existing one; then, idle for a few seconds, RSS, threads and
CPU. The ``drive`` phase spawns the ``idle`` child and times it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from benchmarks.scenarios.common import (
    Result,
    cpu_seconds,
    dbos_config,
    emit,
    load_api,
    parse_args,
    proc_status,
)


def idle(args: Any) -> None:
    t0 = time.time()
    api = load_api(args.impl)
    imported = time.time()
    DBOS = api.DBOS
    DBOS(config=dbos_config(args.db_url))

    @DBOS.workflow()
    def hello() -> int:
        return 1

    DBOS.launch()
    hello()
    print(f"LAUNCHED {time.time()}", flush=True)
    cpu0 = cpu_seconds()
    time.sleep(args.seconds)
    status = proc_status()
    report = {
        "import_s": imported - t0,
        "cpu_share": (cpu_seconds() - cpu0) / args.seconds,
        "rss_mib": status["VmRSS"] / 1024.0,
        "threads": status["Threads"],
    }
    print("IDLE " + json.dumps(report), flush=True)
    DBOS.destroy()


def spawn(args: Any, idle_seconds: float) -> tuple[float, dict[str, str]]:
    """Run the idle child; (seconds from spawn to launched, its report lines)."""
    argv = [sys.executable, "-m", "benchmarks.scenarios.launch", "--impl", args.impl]
    argv += ["--db-url", args.db_url, "--seconds", str(idle_seconds), "--phase", "idle"]
    started = time.time()
    lines = subprocess.run(argv, stdout=subprocess.PIPE, text=True, check=True).stdout
    fields = dict(line.split(" ", 1) for line in lines.splitlines() if " " in line)
    return float(fields["LAUNCHED"]) - started, fields


def drive(args: Any) -> None:
    first, fields = spawn(args, args.seconds)
    again, _ = spawn(args, 0.1)
    report = json.loads(fields["IDLE"])
    result = Result()
    result.add("spawn→launched+1 wf, new DB", first, "s", "lower")
    result.add("spawn→launched+1 wf, existing DB", again, "s", "lower")
    result.add("import", report["import_s"], "s", "lower")
    result.add("idle RSS", report["rss_mib"], "MiB", "lower")
    result.add("idle threads", float(report["threads"]), "threads", "lower")
    result.add("idle CPU", 100.0 * report["cpu_share"], "% of a core", "lower")
    emit(result)


def main() -> None:
    args = parse_args()
    if args.phase == "drive":
        drive(args)
    else:
        idle(args)


if __name__ == "__main__":
    main()
