"""The execution ledger of the fault battery, and the rules that judge it.

Every step body appends one ``step`` line *before* doing its work, naming a fresh attempt ID,
and returns that attempt ID inside its output. So for each checkpointed step the database says
which attempt's output was recorded, and the ledger lists, in the order they happened, every
attempt that began. Lines are appended with ``O_APPEND`` (one ``write`` each, far below the size
the kernel keeps whole) and fsynced, so a SIGKILL never loses or tears a line that was written.

The rules, per (workflow, step):

* the recorded attempt is in the ledger, and it is the **last** attempt: an attempt that began
  after it is a step whose output was recorded running again (a *duplicate*);
* every earlier attempt is a *re-run* of a step in flight: it must have run in a process that
  the battery SIGKILLed, and one killed process accounts for at most one of them (a step in
  flight runs at most once more per crash).
"""

from __future__ import annotations

import json
import os
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class LedgerWriter:
    """Appends JSON lines to the ledger, each one flushed and fsynced before it returns."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._lock = threading.Lock()

    def close(self) -> None:
        os.close(self._fd)

    def append(self, record: Mapping[str, Any]) -> None:
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        with self._lock:
            os.write(self._fd, line)
            os.fsync(self._fd)


def read_ledger(path: Path) -> list[dict[str, Any]]:
    """Every complete line of the ledger, in the order they were appended."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        records.append(json.loads(line))  # a torn line would be a finding: let it raise
    return records


@dataclass(frozen=True)
class Attempt:
    """One execution of a step body, as its ledger line tells."""

    workflow_id: str
    step_id: int
    attempt: str
    pid: int
    at: float


@dataclass
class StepVerdict:
    """What the ledger and the recorded outputs say about the steps of the judged workflows."""

    steps: int = 0  # recorded step outputs judged
    attempts: int = 0  # step executions in the ledger for them
    reruns: int = 0  # executions interrupted by a kill and run again
    duplicates: list[str] = field(default_factory=list)  # a recorded step that ran again
    unexplained: list[str] = field(default_factory=list)  # any other broken rule


def attempts_from(records: Iterable[Mapping[str, Any]]) -> list[Attempt]:
    return [
        Attempt(r["wf"], int(r["step"]), r["att"], int(r["pid"]), float(r["t"]))
        for r in records
        if r.get("ev") == "step"
    ]


def judge_steps(
    attempts: list[Attempt],
    recorded: Mapping[tuple[str, int], str],
    killed_pids: set[int],
) -> StepVerdict:
    """Apply the rules above. ``recorded`` maps (workflow ID, step ID) to the attempt whose output
    the database holds, for every workflow being judged; ``attempts`` is the ledger, in order."""
    by_step: dict[tuple[str, int], list[Attempt]] = defaultdict(list)
    for attempt in attempts:
        by_step[(attempt.workflow_id, attempt.step_id)].append(attempt)
    verdict = StepVerdict()
    for key, recorded_attempt in recorded.items():
        verdict.steps += 1
        _judge_one(key, by_step.get(key, []), recorded_attempt, killed_pids, verdict)
    judged_workflows = {wf for wf, _ in recorded}
    for (wf, step), runs in by_step.items():
        if wf in judged_workflows and (wf, step) not in recorded:
            verdict.unexplained.append(
                f"{wf} step {step}: ran {len(runs)} time(s) but no output is recorded"
            )
    return verdict


def _judge_one(
    key: tuple[str, int],
    runs: list[Attempt],
    recorded_attempt: str,
    killed_pids: set[int],
    verdict: StepVerdict,
) -> None:
    wf, step = key
    verdict.attempts += len(runs)
    ids = [run.attempt for run in runs]
    if recorded_attempt not in ids:
        verdict.unexplained.append(
            f"{wf} step {step}: the recorded attempt {recorded_attempt} is not in the ledger "
            f"(ledger has {ids})"
        )
        return
    position = ids.index(recorded_attempt)
    for later in runs[position + 1 :]:
        verdict.duplicates.append(
            f"{wf} step {step}: attempt {later.attempt} (pid {later.pid}) began after the "
            f"recorded attempt {recorded_attempt}"
        )
    earlier = runs[:position]
    verdict.reruns += len(earlier)
    per_pid: dict[int, int] = defaultdict(int)
    for run in earlier:
        per_pid[run.pid] += 1
        if run.pid not in killed_pids:
            verdict.unexplained.append(
                f"{wf} step {step}: attempt {run.attempt} in pid {run.pid} was not recorded, "
                "yet that process was never killed"
            )
    for pid, count in per_pid.items():
        if count > 1:
            verdict.unexplained.append(
                f"{wf} step {step}: {count} unrecorded attempts in pid {pid}, one crash allows one"
            )
