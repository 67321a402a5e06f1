"""The kill -9 loop: two real worker processes, SIGKILLed at random moments and restarted.

The test process feeds the shared queue through a DBOSClient, kills one worker per cycle and
restarts it under the same executor ID; now and then it keeps the victim down past the executor
timeout, so the survivor takes its work over. Then it lets everything finish and judges the
database against the ledger (tests/faults/ledger.py). Sleeps here only choose *when* a fault
lands; every wait for an outcome polls a condition with a deadline.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

from engine import DBOSClient, EnqueueOptions, WorkflowStatus
from tests.faults import workload
from tests.faults.ledger import Attempt, attempts_from, judge_steps, read_ledger

ROOT = Path(__file__).resolve().parents[2]
EXECUTORS = ("w1", "w2")
# A kill lands this long after the victim became ready (or after the previous kill).
KILL_DELAY_RANGE = (0.2, 1.6)
# One cycle in this many keeps its victim down long enough for the survivor to take over.
OUTAGE_EVERY = 8
OUTAGE_SECONDS = workload.EXECUTOR_TIMEOUT_SEC + 2.5
# Some restarts are killed again while the process launches, before it is ready.
EARLY_KILL_RATE = 0.2
EARLY_KILL_DELAY_RANGE = (0.3, 2.0)
QUEUE_ITEMS_PER_CYCLE = 2
LAUNCH_TIMEOUT = 90.0
DRAIN_TIMEOUT = 120.0

# Filled by each battery run; tests/faults/conftest.py prints them at the end of the session.
SUMMARIES: list[dict[str, Any]] = []


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


class Worker:
    """One worker process slot (an executor ID), relaunched under the same ID after each kill."""

    def __init__(
        self,
        executor_id: str,
        db_url: str,
        files: workload.Files,
        mode: str = workload.MODE_KILL9,
    ) -> None:
        self.executor_id = executor_id
        self.db_url = db_url
        self.files = files
        self.mode = mode
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, generation: int) -> None:
        self.spawn(generation)
        wait_until(self._ready_or_dead, LAUNCH_TIMEOUT, f"worker {self.executor_id} to launch")
        assert self.process is not None
        assert self.process.poll() is None, f"worker {self.executor_id} exited early: {self.tail()}"

    def spawn(self, generation: int) -> None:
        """Start the process without waiting for it to launch."""
        self._close_log()
        self._log = self.files.worker_log(self.executor_id, generation).open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.faults.fault_app",
                self.db_url,
                self.executor_id,
                str(generation),
                str(self.files.folder),
                self.mode,
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def _ready_or_dead(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            return True
        ready = self.files.ready.read_text().split() if self.files.ready.exists() else []
        return str(self.process.pid) in ready

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> int:
        """SIGKILL the running process; returns its pid."""
        assert self.process is not None and self.alive(), f"the victim died: {self.tail()}"
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        return self.process.pid

    def stop(self, timeout: float = 60) -> int | None:
        """Wait for a clean exit after ``quit`` was created; SIGKILL if it does not come."""
        if self.process is None:
            return None
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
            code = None
        self._close_log()
        return code

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None and not self._log.closed:
            self._log.close()

    def tail(self) -> str:
        logs = sorted(self.files.folder.glob(f"{self.executor_id}-*.log"), key=os.path.getmtime)
        return logs[-1].read_text(errors="replace")[-3000:] if logs else "(no log)"


@dataclass
class Findings:
    """Everything the judgement found; the test asserts the lists are empty."""

    wrong: list[str] = field(default_factory=list)  # not SUCCESS, or a wrong output
    lost: list[str] = field(default_factory=list)  # acknowledged work that never finished
    duplicates: list[str] = field(default_factory=list)
    unexplained: list[str] = field(default_factory=list)
    debounce: list[str] = field(default_factory=list)
    sleeps: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class Counts:
    """What the judgement counts (both batteries' summaries extend it)."""

    workflows: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    steps: int = 0
    step_executions: int = 0
    reruns: int = 0
    duplicates: int = 0
    lost: int = 0
    ticks: int = 0
    tick_gaps: int = 0
    debounce_windows: int = 0
    taken_over: int = 0
    queue_executors: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class Summary(Counts):
    backend: str
    seed: int
    cycles: int = 0
    kills: int = 0
    early_kills: int = 0
    outages: int = 0
    wall_seconds: float = 0.0

    def line(self) -> str:
        return (
            f"kill -9 battery [{self.backend}]: cycles={self.cycles} "
            f"kills={self.kills + self.early_kills} (at launch {self.early_kills}) "
            f"outages={self.outages} "
            f"workflows={self.workflows} steps={self.steps} executions={self.step_executions} "
            f"re-runs={self.reruns} duplicates={self.duplicates} lost={self.lost} "
            f"ticks={self.ticks} tick_gaps={self.tick_gaps} "
            f"debounce_windows={self.debounce_windows} taken_over={self.taken_over} "
            f"wall={self.wall_seconds:.0f}s seed={self.seed}"
        )

    def as_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


class Battery:
    """One run of the loop on one database; ``run()`` returns the summary and the findings."""

    def __init__(self, db_url: str, folder: Path, cycles: int, seed: int, backend: str) -> None:
        self.files = workload.Files(folder)
        self.db_url = db_url
        self.cycles = cycles
        self.rng = random.Random(seed)
        self.summary = Summary(backend=backend, seed=seed)
        self.workers = [Worker(e, db_url, self.files) for e in EXECUTORS]
        self.killed: set[int] = set()
        self.enqueued: list[str] = []
        self._generation = 0
        self._started_at = time.monotonic()

    def run(self) -> tuple[Summary, Findings]:
        client = DBOSClient(system_database_url=self.db_url)
        try:
            self._loop(client)
            cutoff = drain(self.files, client)
            quit_workers(self.files, self.workers)
            findings = Judge(
                self.files, client, cutoff, self.enqueued, self.killed, self.summary
            ).judge()
        finally:
            for worker in self.workers:
                worker.close()
            client.destroy()
        self.summary.wall_seconds = round(time.monotonic() - self._started_at, 1)
        return self.summary, findings

    def _next_generation(self) -> int:
        self._generation += 1
        return self._generation

    def _loop(self, client: DBOSClient) -> None:
        for worker in self.workers:
            worker.start(self._next_generation())
        for cycle in range(self.cycles):
            enqueue(client, self.enqueued, QUEUE_ITEMS_PER_CYCLE)
            victim = self.rng.choice(self.workers)
            time.sleep(self.rng.uniform(*KILL_DELAY_RANGE))  # the fault's moment, not a wait
            self.killed.add(victim.kill())
            self.summary.kills += 1
            if cycle % OUTAGE_EVERY == OUTAGE_EVERY - 1:
                # Down past the executor timeout: the survivor takes the victim's work over.
                self.summary.outages += 1
                time.sleep(OUTAGE_SECONDS)
            if self.rng.random() < EARLY_KILL_RATE:
                self._kill_while_launching(victim)
            victim.start(self._next_generation())
            self.summary.cycles += 1

    def _kill_while_launching(self, victim: Worker) -> None:
        """A second kill soon after the restart: mid-import, mid-migration, mid-recovery."""
        victim.spawn(self._next_generation())
        time.sleep(self.rng.uniform(*EARLY_KILL_DELAY_RANGE))  # the fault's moment
        assert victim.alive(), f"worker {victim.executor_id} exited by itself: {victim.tail()}"
        self.killed.add(victim.kill())
        self.summary.early_kills += 1


def enqueue(client: DBOSClient, enqueued: list[str], count: int) -> None:
    """Put ``count`` items on the shared queue through the client; ``enqueued`` gets their IDs."""
    for _ in range(count):
        item = len(enqueued) + 1
        options: EnqueueOptions = {
            "queue_name": workload.QUEUE_NAME,
            "workflow_name": workload.QUEUED,
            # No app_version, as DBOSClient callers usually do: the claim records the
            # claimant's, so recovery and takeover find the run after a kill.
            "workflow_id": f"q-{item}",
        }
        client.enqueue(options, item)
        enqueued.append(options["workflow_id"])


def drain(files: workload.Files, client: DBOSClient) -> datetime:
    """Stop new work and wait until everything that matters has finished; returns the cutoff:
    ticks after it are left out (the schedule keeps firing until the workers exit)."""
    files.stop_feeding.touch()
    cutoff = datetime.now().astimezone() + timedelta(seconds=1)

    def unfinished() -> list[WorkflowStatus]:
        rows = client.list_workflows(
            status=["PENDING", "ENQUEUED"], load_input=False, load_output=False
        )
        return [r for r in rows if (workload.tick_of(r.workflow_id) or cutoff) <= cutoff]

    deadline = time.monotonic() + DRAIN_TIMEOUT
    while left := unfinished():
        if time.monotonic() > deadline:
            stuck = [(r.workflow_id, r.status, r.executor_id, r.queue_name) for r in left]
            raise AssertionError(f"work still unfinished after the drain: {stuck[:20]}")
        time.sleep(0.2)
    return cutoff


def quit_workers(files: workload.Files, workers: list[Worker]) -> None:
    files.quit.touch()
    for worker in workers:
        worker.stop()


class Judge:
    """Compares the database with the ledger once the workers have exited."""

    def __init__(
        self,
        files: workload.Files,
        client: DBOSClient,
        cutoff: datetime,
        enqueued: list[str],
        killed: set[int],
        counts: Counts,
    ) -> None:
        self.client = client
        self.cutoff = cutoff
        self.enqueued = enqueued
        self.killed = killed
        self.summary = counts
        self.records = read_ledger(files.ledger)
        self.attempts = attempts_from(self.records)
        self.attempt_by_id = {a.attempt: a for a in self.attempts}
        self.findings = Findings()
        self.ticks: list[datetime] = []  # the nominal ticks of the judged tick runs, in order

    def judge(self) -> Findings:
        rows = self._rows_in_scope()
        self._check_outputs(rows)
        self._check_acknowledged(rows)
        recorded = self._check_steps(rows)
        self._check_sleeps(rows, recorded)
        self._check_debounces(rows)
        self._count_ticks(rows)
        self._count_executors(rows)
        self.findings.errors = [str(r) for r in self.records if r.get("ev") == "error"]
        self.summary.duplicates = len(self.findings.duplicates)
        self.summary.lost = len(self.findings.lost)
        return self.findings

    def _rows_in_scope(self) -> dict[str, WorkflowStatus]:
        rows = {}
        for status in self.client.list_workflows():
            tick = workload.tick_of(status.workflow_id)
            if tick is not None and tick > self.cutoff:
                if status.status not in ("SUCCESS", "PENDING", "ENQUEUED"):
                    self.findings.wrong.append(f"{status.workflow_id}: {status.status}")
                continue
            rows[status.workflow_id] = status
        self.summary.workflows = len(rows)
        self.summary.by_kind = dict(Counter(str(s.name) for s in rows.values()))
        self.summary.statuses = dict(Counter(str(s.status) for s in rows.values()))
        return rows

    def _check_outputs(self, rows: dict[str, WorkflowStatus]) -> None:
        for wf, status in rows.items():
            if status.status != "SUCCESS":
                self.findings.wrong.append(f"{wf}: ended {status.status} ({status.error!r})")
                continue
            expected = workload.expected_output(str(status.name), _args(status))
            if status.output != expected:
                self.findings.wrong.append(f"{wf}: output {status.output!r}, want {expected!r}")

    def _check_acknowledged(self, rows: dict[str, WorkflowStatus]) -> None:
        acknowledged = set(self.enqueued)
        acknowledged |= {r["wf"] for r in self.records if r.get("ev") in ("started", "deb_ok")}
        for wf in sorted(acknowledged):
            status = rows.get(wf)
            if status is None or status.status != "SUCCESS":
                self.findings.lost.append(f"{wf}: {status.status if status else 'no row'}")

    def _check_steps(self, rows: dict[str, WorkflowStatus]) -> dict[tuple[str, int], Any]:
        """Judge every step execution; returns the recorded outputs of every step, by key."""
        recorded_attempts: dict[tuple[str, int], str] = {}
        outputs: dict[tuple[str, int], Any] = {}
        for wf, status in rows.items():
            if status.status != "SUCCESS":
                continue
            for step in self.client.list_workflow_steps(wf):
                key = (wf, step["function_id"])
                outputs[key] = (step["function_name"], step["output"])
                if isinstance(step["output"], dict) and "att" in step["output"]:
                    recorded_attempts[key] = step["output"]["att"]
        verdict = judge_steps(self.attempts, recorded_attempts, self.killed)
        self.findings.duplicates.extend(verdict.duplicates)
        self.findings.unexplained.extend(verdict.unexplained)
        self.summary.steps = verdict.steps
        self.summary.step_executions = verdict.attempts
        self.summary.reruns = verdict.reruns
        return outputs

    def _check_sleeps(self, rows: dict[str, WorkflowStatus], outputs: dict[Any, Any]) -> None:
        """A step after a durable sleep began no earlier than the recorded wake-up time, however
        many crashes fell in between (the sleep resumed, it did not restart or get skipped)."""
        for (wf, function_id), (name, output) in outputs.items():
            if name != "DBOS.sleep":
                continue
            after = outputs.get((wf, function_id + 1))
            if after is None:
                self.findings.sleeps.append(f"{wf}: nothing recorded after the sleep")
                continue
            attempt: Attempt | None = self.attempt_by_id.get(after[1]["att"])
            if attempt is not None and attempt.at < output / 1000 - 0.05:
                self.findings.sleeps.append(
                    f"{wf}: the step after the sleep began {output / 1000 - attempt.at:.3f}s "
                    "before the recorded wake-up time"
                )

    def _check_debounces(self, rows: dict[str, WorkflowStatus]) -> None:
        """Each window ran once (its row, its step: judged above) with the input of its last
        call: no older than the last acknowledged call, and one that really was sent."""
        tried: dict[str, set[int]] = defaultdict(set)
        last_ok: dict[str, tuple[str, int]] = {}
        for r in self.records:
            if r.get("ev") == "deb_try":
                tried[r["key"]].add(r["value"])
            elif r.get("ev") == "deb_ok":
                key, value = last_ok.get(r["wf"], (r["key"], 0))
                last_ok[r["wf"]] = (r["key"], max(value, r["value"]))
        self.summary.debounce_windows = len(last_ok)
        for wf, (key, newest) in last_ok.items():
            status = rows.get(wf)
            if status is None or status.status != "SUCCESS":
                continue  # reported as lost
            got_key, got_value = _args(status)
            if got_key != key or got_value < newest or got_value not in tried[key]:
                self.findings.debounce.append(
                    f"{wf}: ran with ({got_key}, {got_value}); the window's key is {key} and "
                    f"its newest acknowledged value {newest}"
                )

    def _count_ticks(self, rows: dict[str, WorkflowStatus]) -> None:
        ticks = sorted(t for wf in rows if (t := workload.tick_of(wf)) is not None)
        self.ticks = ticks
        self.summary.ticks = len(ticks)
        if ticks:
            span = int((ticks[-1] - ticks[0]).total_seconds()) + 1
            self.summary.tick_gaps = span - len(set(ticks))

    def _count_executors(self, rows: dict[str, WorkflowStatus]) -> None:
        queue_runs = {s.executor_id for s in rows.values() if s.name == workload.QUEUED}
        self.summary.queue_executors = sorted(e for e in queue_runs if e)
        self.summary.taken_over = sum(
            1
            for wf, s in rows.items()
            if s.name in (workload.CHAIN, workload.SLEEPER, workload.PULSE)
            and not wf.startswith(f"{s.executor_id}-")
        )


def _args(status: WorkflowStatus) -> tuple[Any, ...]:
    assert status.input is not None, f"{status.workflow_id}: no input loaded"
    return tuple(status.input["args"])
