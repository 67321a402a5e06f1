"""One run of one scenario for one peer, in its own process; a failure becomes a reason."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.plan import Peer, Size
from benchmarks.scenarios.common import RESULT_PREFIX

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Outcome:
    metrics: dict[str, float | None] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    better: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0


def run(
    python: Path, peer: Peer, size: Size, db_url: str, timeout: float, failure_log: Path
) -> Outcome:
    argv = [str(python), "-m", peer.module, "--impl", peer.impl, "--db-url", db_url]
    argv += ["--size", str(size.size), "--seconds", str(size.seconds), "--phase", peer.phase]
    argv += ["--timeout", str(timeout)]
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1")
    env.pop("DBOS_SYSTEM_DATABASE_URL", None)
    try:
        proc = subprocess.run(
            argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout + 30
        )
    except subprocess.TimeoutExpired as exc:
        _log_failure(failure_log, argv, str(exc.stderr or ""))
        return Outcome(error=f"timed out after {timeout + 30:.0f}s")
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return _parse(line.removeprefix(RESULT_PREFIX))
    _log_failure(failure_log, argv, proc.stderr)
    return Outcome(error=_reason(proc.returncode, proc.stderr))


def _log_failure(path: Path, argv: list[str], stderr: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(f"=== {' '.join(argv)}\n{stderr}\n")


def _parse(payload: str) -> Outcome:
    data = json.loads(payload)
    outcome = Outcome(notes=list(data.get("notes", [])))
    for metric in data["metrics"]:
        outcome.metrics[metric["name"]] = metric["value"]
        outcome.units[metric["name"]] = metric["unit"]
        outcome.better[metric["name"]] = metric["better"]
    return outcome


def _reason(returncode: int, stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    if "Timeout (0:" in stderr:
        return "hung: timed out (stacks dumped to stderr)"
    errors = [ln for ln in lines if "Error" in ln or "Exception" in ln]
    last = (errors or lines or [f"exit code {returncode}"])[-1]
    return f"exit {returncode}: {last[:200]}"
