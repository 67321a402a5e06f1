"""The PostgreSQL outage battery (see tests/faults/outages.py and docs/testing.md).

PostgreSQL only, on a server of the test's own: restarting the session's server would break the
tests that share it. ``KEEPTIME_FAULTS_SEED`` repeats a run's random choices (the seed is in the
summary line).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import _create_database
from tests.faults.battery import SUMMARIES
from tests.faults.outages import RESTARTS_PER_MODE, STOP_SECONDS, OutageRun
from tests.pgserver import PostgresServer, start_postgres


@pytest.fixture(scope="module")
def outage_server() -> Iterator[PostgresServer]:
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()


def _seed() -> int:
    return int(os.environ.get("KEEPTIME_FAULTS_SEED") or random.SystemRandom().randrange(2**31))


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_postgres_outages_pause_work_and_lose_and_repeat_nothing(
    outage_server: PostgresServer, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    _create_database(outage_server, "faults")
    run = OutageRun(outage_server, outage_server.url_for("faults"), tmp_path, _seed())
    summary, findings = run.run()

    out = tmp_path_factory.getbasetemp() / "faults" / "outages-postgres.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(summary.as_json())
    print(summary.line())
    print(f"fault battery numbers: {out}")
    SUMMARIES.append({"line": summary.line(), "path": str(out)})

    assert summary.restarts == {"fast": RESTARTS_PER_MODE, "immediate": RESTARTS_PER_MODE}
    assert summary.stops == 1 and summary.longest_outage_seconds >= STOP_SECONDS
    assert findings.errors == [], "a worker's feeder failed other than on an outage"
    assert summary.errors == 0, "no workflow ends in ERROR because of an outage"
    assert findings.wrong == [], "every workflow ends SUCCESS with the right output"
    assert findings.lost == [], "acknowledged work finished (nothing stranded)"
    assert findings.duplicates == [], "no step whose output was recorded ran again"
    assert findings.unexplained == [], "nothing was killed: no step ran twice at all"
    assert summary.reruns == 0
    assert summary.taken_over == 0, "no live executor's work was taken over"
    assert findings.debounce == [], "each window ran once, with its last call's input"
    assert findings.sleeps == [], "durable sleeps resumed toward their recorded wake-up"
    assert findings.slow_resumes == [], "work in flight continued within 2 s of the return"
    assert findings.catchup == [], "missed ticks follow @DBOS.scheduled's policy, none"
    assert summary.queue_executors == ["w1", "w2"], "both workers served the shared queue"
    assert summary.stop_ticks_missed >= STOP_SECONDS - 5, "the long stop's ticks never ran"
    assert summary.ticks > 0 and summary.debounce_windows > 0
