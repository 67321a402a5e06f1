"""Recovery: N workflows are interrupted by kill -9 between their two steps; a restarted process
must finish all of them. Measured from the restart (process spawn) to all N recorded SUCCESS.

Phases: ``drive`` (the default) runs ``load`` in a child, kills it with SIGKILL once every
workflow has finished its first step, then runs ``recover`` in a new child and times it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from benchmarks.scenarios.common import (
    Result,
    dbos_config,
    emit,
    load_api,
    parse_args,
    wait_until,
)

THREADS = 1024  # every interrupted workflow blocks a thread in the load phase


class Progress:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.first = 0
        self.second = 0

    def bump(self, which: str) -> None:
        with self.lock:
            setattr(self, which, getattr(self, which) + 1)


def child(args: Any) -> None:
    api = load_api(args.impl)
    DBOS = api.DBOS
    DBOS(config=dbos_config(args.db_url, max_executor_threads=THREADS))
    progress = Progress()
    block = threading.Event()

    @DBOS.step()
    def step_one(i: int) -> int:
        progress.bump("first")
        return i

    @DBOS.step()
    def step_two(i: int) -> int:
        if args.phase == "load":
            block.wait()  # the kill -9 lands here
        progress.bump("second")
        return i

    @DBOS.workflow()
    def interrupted(i: int) -> int:
        return step_two(step_one(i))

    DBOS.launch()
    if args.phase == "load":
        for i in range(args.size):
            DBOS.start_workflow(interrupted, i)
        wait_until(lambda: progress.first >= args.size, timeout=60, interval=0.01)
        print(f"READY {progress.first}", flush=True)
        time.sleep(3600)
        return
    wait_until(lambda: progress.second >= args.size, timeout=args.seconds, interval=0.002)
    wait_until(lambda: success_count(DBOS) >= args.size, timeout=args.seconds, interval=0.01)
    print(f"DONE {time.time()} {progress.second} {success_count(DBOS)}", flush=True)
    os._exit(0)


def success_count(DBOS: Any) -> int:
    return len(DBOS.list_workflows(status="SUCCESS"))


def drive(args: Any) -> None:
    base = [sys.executable, "-m", __spec__.name if __spec__ else "benchmarks.scenarios.recovery"]
    base += ["--impl", args.impl, "--db-url", args.db_url, "--size", str(args.size)]
    base += ["--seconds", str(args.seconds)]
    load = subprocess.Popen([*base, "--phase", "load"], stdout=subprocess.PIPE, text=True)
    assert load.stdout is not None
    ready = load.stdout.readline().split()
    os.kill(load.pid, signal.SIGKILL)
    load.wait()
    result = Result()
    if not ready or ready[0] != "READY":
        raise RuntimeError(f"the load phase did not get ready: {ready!r}")
    started = time.time()
    out = subprocess.run(
        [*base, "--phase", "recover"], stdout=subprocess.PIPE, text=True, check=True
    ).stdout.split()
    if not out or out[0] != "DONE":
        raise RuntimeError(f"the recover phase did not finish: {out!r}")
    done_at, second_steps, successes = float(out[1]), int(out[2]), int(out[3])
    result.add(f"restart→{args.size} done", done_at - started, "s", "lower")
    result.notes.append(
        f"{ready[1]} workflows past step one at the kill; after restart {second_steps} ran step "
        f"two, {successes} SUCCESS"
    )
    if successes < args.size:
        result.notes.append(f"only {successes}/{args.size} recovered in {args.seconds:.0f}s")
    emit(result)


def main() -> None:
    args = parse_args()
    if args.phase == "drive":
        drive(args)
    else:
        child(args)


if __name__ == "__main__":
    main()
