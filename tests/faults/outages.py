"""The PostgreSQL outage battery: the server restarted and stopped under the battery's load.

Two worker processes (``fault_app`` in its ``outages`` mode: the kill -9 battery's workload plus
pulses, with feeders that outlast an outage) share a database on a PostgreSQL server of the
test's own. The server is restarted ten times (five ``fast``, five ``immediate`` shutdowns, in
random order, each down a random 1 to 5 s) and then stopped once for 60 s; the test process
feeds the shared queue through a DBOSClient between the outages. Nothing is killed. Then the
database is judged against the ledger with the kill -9 battery's rules (tests/faults/ledger.py),
where no step may run twice at all, and each outage is judged on its own:

* **resume**: per worker, the time from the server's return (``start()`` returned) to the first
  step that a workflow already in flight at the halt began afterwards;
* **ticks**: ``fault_tick`` is a ``@DBOS.scheduled`` workflow, whose catch-up policy is ``none``
  (docs/scheduling.md): the ticks that came due while the server was down never run, and the
  schedule resumes with its next future tick. The workers write each catch-up decision of the
  schedule (its log record's fields) to the ledger.

Sleeps here only choose *when* a fault lands and how long it lasts; every wait for an outcome
polls a condition with a deadline.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine import DBOSClient
from tests.faults import workload
from tests.faults.battery import (
    EXECUTORS,
    Counts,
    Findings,
    Judge,
    Worker,
    drain,
    enqueue,
    quit_workers,
)
from tests.pgserver import PostgresServer

RESTARTS_PER_MODE = 5
RESTART_MODES = ("fast", "immediate")
DOWN_RANGE = (1.0, 5.0)  # seconds the server stays down at each restart
STOP_SECONDS = 60.0  # the long stop, last
STOP_MODE = "fast"
# The load runs this long before each outage (also the fault's random moment).
UP_RANGE = (3.0, 4.5)
# After the long stop: time to see the schedule resume before the drain.
AFTER_STOP_SECONDS = 8.0
QUEUE_ITEMS_PER_OUTAGE = 4
# Work in flight continues within this long after the server is back (DESIGN.md, outages).
RESUME_BOUND_SECONDS = 2.0
# A tick due up to this long after the server went down may have been in flight at the halt
# (each worker's scheduler thread fires one tick at a time, and retries it): past that, a tick
# that ran before the schedule's catch-up was caught up, which policy `none` never does.
IN_FLIGHT_TICK_SECONDS = 1.5
# Per-second ticks resume within this long after the server is back: the catch-up is retried
# every second, and the next future tick follows.
TICKS_RESUME_SECONDS = 4.0
CATCHUP_POLICY = "none"  # @DBOS.scheduled's (engine/runtime/scheduled.py, scheduled_decorator)


@dataclass
class Outage:
    """One outage as the test made it, and what was seen around it (epoch seconds)."""

    kind: str  # "fast", "immediate" (a restart) or "stop" (the long one)
    mode: str  # pg_ctl's shutdown mode
    halt_began: float = 0.0
    halt_done: float = 0.0
    back: float = 0.0  # start() returned: the server accepts connections
    resume: dict[str, float | None] = field(default_factory=dict)  # per executor, seconds
    catchups: list[dict[str, Any]] = field(default_factory=list)  # the schedule's decisions
    ticks_caught_up: list[str] = field(default_factory=list)  # ran although missed: none allowed
    ticks_missed: int = 0  # seconds from the halt to the server's return with no tick run
    first_tick_after: float | None = None  # seconds from back to the first tick due after it

    @property
    def seconds(self) -> float:
        return self.back - self.halt_began


@dataclass
class OutageFindings(Findings):
    slow_resumes: list[str] = field(default_factory=list)
    catchup: list[str] = field(default_factory=list)  # ticks against the catch-up policy


@dataclass(kw_only=True)
class OutageSummary(Counts):
    seed: int
    restarts: dict[str, int] = field(default_factory=dict)
    stops: int = 0
    outage_seconds: float = 0.0
    longest_outage_seconds: float = 0.0
    outage_calls: int = 0  # calls from outside workflows that gave up on an outage (documented)
    resume_max: dict[str, float] = field(default_factory=dict)  # per outage kind, seconds
    stop_ticks_missed: int = 0
    stop_ticks_dropped_logged: int = 0
    wall_seconds: float = 0.0
    outages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return self.statuses.get("ERROR", 0)

    def line(self) -> str:
        restarts = " ".join(f"{kind}={n}" for kind, n in self.restarts.items())
        resume = " ".join(f"{kind}={s:.2f}s" for kind, s in self.resume_max.items())
        return (
            f"postgres outage battery: restarts={sum(self.restarts.values())} ({restarts}) "
            f"stops={self.stops} outage_seconds={self.outage_seconds:.0f} "
            f"(longest {self.longest_outage_seconds:.0f}) "
            f"workflows={self.workflows} steps={self.steps} executions={self.step_executions} "
            f"re-runs={self.reruns} duplicates={self.duplicates} lost={self.lost} "
            f"ERROR={self.errors} taken_over={self.taken_over} resume_max[{resume}] "
            f"ticks={self.ticks} tick_gaps={self.tick_gaps} "
            f"stop_ticks_missed={self.stop_ticks_missed} "
            f"debounce_windows={self.debounce_windows} outage_calls={self.outage_calls} "
            f"wall={self.wall_seconds:.0f}s seed={self.seed}"
        )

    def as_json(self) -> str:
        return json.dumps(asdict(self) | {"errors": self.errors}, indent=2, sort_keys=True)


class OutageRun:
    """One run on one server; ``run()`` returns the summary and the findings."""

    def __init__(self, server: PostgresServer, db_url: str, folder: Path, seed: int) -> None:
        self.server = server
        self.files = workload.Files(folder)
        self.db_url = db_url
        self.rng = random.Random(seed)
        self.summary = OutageSummary(seed=seed)
        self.workers = [Worker(e, db_url, self.files, workload.MODE_OUTAGES) for e in EXECUTORS]
        self.enqueued: list[str] = []
        self.outages: list[Outage] = []
        self._started_at = time.monotonic()

    def plan(self) -> list[tuple[Outage, float]]:
        """The restarts in random order, each with its length, then the long stop."""
        kinds = [mode for mode in RESTART_MODES for _ in range(RESTARTS_PER_MODE)]
        self.rng.shuffle(kinds)
        plan = [(Outage(kind, kind), self.rng.uniform(*DOWN_RANGE)) for kind in kinds]
        return [*plan, (Outage("stop", STOP_MODE), STOP_SECONDS)]

    def run(self) -> tuple[OutageSummary, OutageFindings]:
        client = DBOSClient(system_database_url=self.db_url)
        try:
            for generation, worker in enumerate(self.workers, start=1):
                worker.start(generation)
            for outage, down in self.plan():
                enqueue(client, self.enqueued, QUEUE_ITEMS_PER_OUTAGE)
                time.sleep(self.rng.uniform(*UP_RANGE))  # the load runs; the fault's moment
                self._outage(outage, down)
            enqueue(client, self.enqueued, QUEUE_ITEMS_PER_OUTAGE)
            time.sleep(AFTER_STOP_SECONDS)  # the schedule resumes; not a wait for a result
            cutoff = drain(self.files, client)
            quit_workers(self.files, self.workers)
            judge = Judge(self.files, client, cutoff, self.enqueued, set(), self.summary)
            findings = OutageFindings(**asdict(judge.judge()))
            self._judge_outages(judge, findings)
        finally:
            for worker in self.workers:
                worker.close()
            client.destroy()
        self._summarize()
        return self.summary, findings

    def _outage(self, outage: Outage, down: float) -> None:
        outage.halt_began = time.time()
        self.server.halt(outage.mode)
        outage.halt_done = time.time()
        time.sleep(max(0.0, down - (outage.halt_done - outage.halt_began)))  # the outage
        self.server.start()
        outage.back = time.time()
        self.outages.append(outage)
        for worker in self.workers:
            assert worker.alive(), f"worker {worker.executor_id} died: {worker.tail()}"

    # -- judging each outage ----------------------------------------------------------------------

    def _judge_outages(self, judge: Judge, findings: OutageFindings) -> None:
        steps = [r for r in judge.records if r.get("ev") == "step"]
        catchups = [r for r in judge.records if r.get("ev") == "catchup"]
        ticks = [t.timestamp() for t in judge.ticks]
        self.summary.outage_calls = sum(1 for r in judge.records if r.get("ev") == "outage_call")
        for decision in catchups:
            if decision["policy"] != CATCHUP_POLICY or decision["ticks_run"]:
                findings.catchup.append(f"a catch-up against policy {CATCHUP_POLICY}: {decision}")
        for index, outage in enumerate(self.outages):
            following = self.outages[index + 1] if index + 1 < len(self.outages) else None
            until = following.halt_began if following is not None else float("inf")
            self._measure_resume(outage, steps, until, findings)
            outage.catchups = [c for c in catchups if outage.halt_began < c["t"] < until]
            self._judge_ticks(outage, ticks, until, findings)

    def _measure_resume(
        self, outage: Outage, steps: list[dict[str, Any]], until: float, findings: OutageFindings
    ) -> None:
        """Per worker: from the server's return to the first step begun, after it, by a workflow
        that was in flight at the halt (it had begun a step before it)."""
        in_flight = {r["wf"] for r in steps if r["t"] < outage.halt_began}
        for executor in EXECUTORS:
            after = [
                r["t"]
                for r in steps
                if r["exec"] == executor and r["wf"] in in_flight and outage.back < r["t"] < until
            ]
            resume = min(after) - outage.back if after else None
            outage.resume[executor] = None if resume is None else round(resume, 3)
            if resume is None or resume >= RESUME_BOUND_SECONDS:
                findings.slow_resumes.append(
                    f"{outage.kind} outage of {outage.seconds:.1f}s: worker {executor} continued "
                    f"its work in flight after {resume if resume is None else round(resume, 2)}s"
                )

    def _judge_ticks(
        self, outage: Outage, ticks: list[float], until: float, findings: OutageFindings
    ) -> None:
        """Policy `none`: no tick that came due while the server was down, or before the
        schedule's catch-up, ever runs; the schedule resumes with the next future tick."""
        resumed_from = min(
            (datetime.fromisoformat(c["gap_end"]).timestamp() for c in outage.catchups),
            default=outage.back,
        )
        caught_up = [
            t for t in ticks if outage.halt_done + IN_FLIGHT_TICK_SECONDS <= t < resumed_from
        ]
        outage.ticks_caught_up = [
            workload.tick_text(datetime.fromtimestamp(t, tz=UTC)) for t in caught_up
        ]
        if caught_up:
            findings.catchup.append(
                f"{outage.kind} outage: ticks missed during it ran: {outage.ticks_caught_up}"
            )
        seen = {int(t) for t in ticks}
        due = range(int(outage.halt_began) + 1, int(outage.back))
        outage.ticks_missed = sum(1 for second in due if second not in seen)
        later = [t - outage.back for t in ticks if outage.back <= t < until]
        outage.first_tick_after = round(min(later), 3) if later else None
        if outage.first_tick_after is None or outage.first_tick_after > TICKS_RESUME_SECONDS:
            findings.catchup.append(
                f"{outage.kind} outage: the schedule resumed {outage.first_tick_after}s after "
                "the server was back"
            )

    def _summarize(self) -> None:
        summary = self.summary
        summary.restarts = dict(Counter(o.kind for o in self.outages if o.kind != "stop"))
        summary.stops = sum(1 for o in self.outages if o.kind == "stop")
        summary.outage_seconds = round(sum(o.seconds for o in self.outages), 1)
        summary.longest_outage_seconds = round(max((o.seconds for o in self.outages), default=0), 1)
        for outage in self.outages:
            worst = max((s for s in outage.resume.values() if s is not None), default=0.0)
            summary.resume_max[outage.kind] = round(
                max(summary.resume_max.get(outage.kind, 0.0), worst), 3
            )
            if outage.kind == "stop":
                summary.stop_ticks_missed = outage.ticks_missed
                summary.stop_ticks_dropped_logged = max(
                    (int(c["ticks_dropped"]) for c in outage.catchups), default=0
                )
        summary.outages = [asdict(o) | {"seconds": round(o.seconds, 2)} for o in self.outages]
        summary.wall_seconds = round(time.monotonic() - self._started_at, 1)
