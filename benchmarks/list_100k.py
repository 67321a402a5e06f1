"""Workflow listing with 100,000 workflows in the table: the time of each spec filter.

usage: python -m benchmarks.list_100k [--pg-url URL]   (SQLite in a temp dir, and PostgreSQL
when a URL is given or the test server module can start one)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine import DBOSClient
from engine.storage.schema import workflow_status

ROWS = 100_000
STATUSES = ("SUCCESS", "ERROR", "PENDING", "ENQUEUED", "CANCELLED")


def fill(client: DBOSClient) -> int:
    start_ms = int(time.time() * 1000) - ROWS * 1000
    rows = [
        {
            "workflow_uuid": f"wf-{i:06d}",
            "status": STATUSES[i % len(STATUSES)],
            "name": f"workflow_{i % 50}",
            "authenticated_user": f"user-{i % 100}",
            "application_version": f"v{i % 3}",
            "queue_name": "q" if i % 5 == 3 else None,
            "created_at": start_ms + i * 1000,
            "updated_at": start_ms + i * 1000,
            "recovery_attempts": 1,
        }
        for i in range(ROWS)
    ]
    with client.db.write() as conn:
        for chunk in range(0, ROWS, 5000):
            conn.execute(workflow_status.insert(), rows[chunk : chunk + 5000])
    return start_ms


def timed(call: Callable[[], Any], repeat: int = 5) -> tuple[float, int]:
    samples, found = [], 0
    for _ in range(repeat):
        began = time.perf_counter()
        found = len(call())
        samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples), found


def queries(client: DBOSClient, start_ms: int) -> dict[str, Callable[[], Any]]:
    mid = datetime.fromtimestamp((start_ms + ROWS * 500) / 1000, tz=UTC).isoformat()
    end = datetime.fromtimestamp((start_ms + ROWS * 500 + 60_000) / 1000, tz=UTC).isoformat()
    fast = {"load_input": False, "load_output": False}
    return {
        "workflow_ids (10)": lambda: client.list_workflows(
            workflow_ids=[f"wf-{i:06d}" for i in range(0, 100_000, 10_000)], **fast
        ),
        "workflow_id_prefix": lambda: client.list_workflows(workflow_id_prefix="wf-09999", **fast),
        "status, limit 100": lambda: client.list_workflows(status="PENDING", limit=100, **fast),
        "start..end (1 min)": lambda: client.list_workflows(start_time=mid, end_time=end, **fast),
        "name, limit 100, desc": lambda: client.list_workflows(
            name="workflow_7", limit=100, sort_desc=True, **fast
        ),
        "app_version, limit 100": lambda: client.list_workflows(
            app_version="v2", limit=100, **fast
        ),
        "user, limit 100": lambda: client.list_workflows(user="user-42", limit=100, **fast),
        "limit 100 offset 50000": lambda: client.list_workflows(limit=100, offset=50_000, **fast),
        "queued on q, limit 100": lambda: client.list_queued_workflows(
            queue_name="q", limit=100, load_input=False
        ),
    }


def run(url: str, label: str) -> None:
    client = DBOSClient(system_database_url=url)
    try:
        start_ms = fill(client)
        print(f"\n### {label}: {ROWS:,} workflows\n\n| filter | rows | median ms |\n|---|---|---|")
        for name, call in queries(client, start_ms).items():
            ms, found = timed(call)
            print(f"| {name} | {found} | {ms:.2f} |")
    finally:
        client.destroy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pg-url", help="an empty PostgreSQL database to fill")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        run(f"sqlite:///{Path(folder) / 'list.sqlite'}", "SQLite")
    if args.pg_url:
        run(args.pg_url, "PostgreSQL")
        return
    from tests.pgserver import start_postgres

    server = start_postgres()
    try:
        run(server.url_for("postgres"), "PostgreSQL")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
