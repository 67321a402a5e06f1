"""Two daemons on one PostgreSQL database: every tick of a schedule runs exactly once."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.daemon.daemon_process import DaemonProcess, free_port
from tests.daemon.test_service_e2e import JOBS, base_config, every_second

pytestmark = pytest.mark.slow

RUN_SECONDS = 30


def test_two_daemons_run_each_tick_once(pg_url: str, tmp_path: Path) -> None:
    (tmp_path / "e2e_jobs.py").write_text(JOBS)
    daemons = []
    for name in ("host-a", "host-b"):
        config = tmp_path / f"{name}.toml"
        text = base_config(pg_url, free_port()).replace(
            '[engine]\nname = "e2e"', f'[engine]\nname = "e2e"\nexecutor_id = "{name}"'
        )
        config.write_text(text + every_second("tick", 'workflow = "e2e_jobs:tick"'))
        daemons.append(DaemonProcess(config, tmp_path / f"{name}.log"))
    try:
        for daemon in daemons:
            daemon.wait_ready()
        both_up = datetime.now(UTC)
        time.sleep(RUN_SECONDS)  # the run itself: the schedule fires once a second meanwhile
        both_running_until = datetime.now(UTC)
        for daemon in daemons:
            assert daemon.stop() == 0, daemon.output()
    finally:
        for daemon in daemons:
            daemon.close()

    lines = (tmp_path / "ticks.jsonl").read_text().split()
    executions = Counter(line.strip('"') for line in lines)
    duplicates = [wf_id for wf_id, n in executions.items() if n > 1]
    assert duplicates == [], f"ticks run more than once: {duplicates}"

    def tick_of(wf_id: str) -> datetime:
        return datetime.fromisoformat(wf_id.removeprefix("sched-tick-").replace("Z", "+00:00"))

    ticks = {tick_of(wf_id) for wf_id in executions}
    first = both_up.replace(microsecond=0) + timedelta(seconds=2)
    last = both_running_until.replace(microsecond=0) - timedelta(seconds=2)
    expected = {first + timedelta(seconds=i) for i in range(int((last - first).total_seconds()))}
    assert expected - ticks == set(), "ticks missed while both daemons ran"
    assert len(expected) >= RUN_SECONDS - 5
