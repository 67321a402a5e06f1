"""Example workflows for config/keeptime.example.toml.

They use the engine's API exactly as an application would (only the import line names
``engine``). Each one is small and only writes into a reports folder: ``$KEEPTIME_REPORT_DIR``,
or ``reports/`` beside this file.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

from engine import DBOS


def _report_dir() -> Path:
    folder = Path(os.environ.get("KEEPTIME_REPORT_DIR") or Path(__file__).parent / "reports")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@DBOS.step()
def count_report_files() -> int:
    """The data of the report: how many files the reports folder holds."""
    return sum(1 for entry in _report_dir().iterdir() if entry.is_file())


@DBOS.step()
def write_report(day: str, file_count: int) -> str:
    """Write the report for ``day``; rewriting it on a retry gives the same file."""
    path = _report_dir() / f"nightly-{day}.txt"
    path.write_text(f"nightly report for {day}: {file_count} files in the reports folder\n")
    return str(path)


@DBOS.workflow()
def nightly_report(scheduled_time: datetime, actual_time: datetime) -> str:
    """Scheduled: counts the files in the reports folder and writes a one-line report."""
    day = scheduled_time.strftime("%Y-%m-%d")
    file_count = count_report_files()
    return write_report(day, file_count)


@DBOS.step()
def record_input(user_input: object) -> None:
    """Append the input as one JSON line to reindex.jsonl."""
    line = json.dumps({"input": user_input}, default=str)
    with open(_report_dir() / "reindex.jsonl", "a", encoding="utf-8") as out:
        out.write(line + "\n")


@DBOS.workflow()
def reindex_user(user_input: object) -> None:
    """Debounced: runs once per quiet period with the last input it got."""
    record_input(user_input)


@DBOS.workflow()
def heartbeat(scheduled_time: datetime, actual_time: datetime) -> str:
    """Scheduled every minute: shows the daemon is alive (see `keeptime schedules list`)."""
    return scheduled_time.isoformat()
