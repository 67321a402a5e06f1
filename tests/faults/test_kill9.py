"""The kill -9 fault battery, on SQLite and PostgreSQL (see docs/testing.md).

CI runs ``CYCLES`` kill/restart cycles per backend; ``KEEPTIME_FAULTS_LONG=1`` runs
``LONG_CYCLES``, and ``KEEPTIME_FAULTS_CYCLES`` / ``KEEPTIME_FAULTS_SEED`` pick the count and the
random seed (printed with every summary, so a failing run can be repeated).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tests.faults.battery import SUMMARIES, Battery

CYCLES = 30
LONG_CYCLES = 200
LONG = os.environ.get("KEEPTIME_FAULTS_LONG") == "1"


def _cycles() -> int:
    return int(os.environ.get("KEEPTIME_FAULTS_CYCLES") or (LONG_CYCLES if LONG else CYCLES))


def _seed() -> int:
    return int(os.environ.get("KEEPTIME_FAULTS_SEED") or random.SystemRandom().randrange(2**31))


@pytest.mark.slow
@pytest.mark.timeout(4 * 3600 if LONG else 900)
def test_kill_9_loop_loses_and_repeats_nothing(
    db_url: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    backend = "sqlite" if db_url.startswith("sqlite") else "postgres"
    battery = Battery(db_url, tmp_path, _cycles(), _seed(), backend)
    summary, findings = battery.run()

    out = tmp_path_factory.getbasetemp() / "faults" / f"kill9-{backend}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(summary.as_json())
    print(summary.line())
    print(f"fault battery numbers: {out}")
    SUMMARIES.append({"line": summary.line(), "path": str(out)})

    assert summary.cycles == _cycles()
    assert findings.errors == [], "a worker's feeder failed"
    assert findings.wrong == [], "every workflow ends SUCCESS with the right output"
    assert findings.lost == [], "acknowledged work finished"
    assert findings.duplicates == [], "no step whose output was recorded ran again"
    assert findings.unexplained == [], "every re-run is one step in flight per crash"
    assert findings.debounce == [], "each window ran once, with its last call's input"
    assert findings.sleeps == [], "durable sleeps resumed toward their recorded wake-up"
    assert summary.queue_executors == ["w1", "w2"], "both workers served the shared queue"
    assert summary.ticks > 0 and summary.debounce_windows > 0 and summary.reruns >= 0
    # Guard the guard: the loop really put work in flight at the kills.
    assert summary.step_executions > summary.steps, "no kill ever interrupted a step"
