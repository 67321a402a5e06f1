"""The raw-commit floor: durable single-row commits with a bare driver loop, no engine.

A three-step workflow costs our engine five commits (start, three steps, result), so the
floor's workflows/s is commits/s divided by five. The phase picks the mode: ``wal`` (SQLite WAL
with synchronous=FULL, what ours uses), ``rollback`` (SQLite rollback journal with
synchronous=FULL, what the reference uses) or ``postgres`` (psycopg, autocommit, server defaults).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from benchmarks.scenarios.common import Result, emit, parse_args

COMMITS_PER_WORKFLOW = 5
PAYLOAD = b"x" * 64
Commit = Callable[[int], None]


def sqlite_committer(url: str, journal_mode: str) -> tuple[Commit, Callable[[], None]]:
    import sqlite3

    path = url.removeprefix("sqlite:///")
    if os.path.exists(path):
        os.remove(path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA journal_mode={journal_mode}")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER, payload BLOB)")

    def commit(i: int) -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t VALUES (?, ?, ?)", (f"row-{i}", i, PAYLOAD))
        conn.execute("COMMIT")

    return commit, conn.close


def postgres_committer(url: str) -> tuple[Commit, Callable[[], None]]:
    import psycopg

    conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)
    conn.execute("CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER, payload BYTEA)")

    def commit(i: int) -> None:
        conn.execute("INSERT INTO t VALUES (%s, %s, %s)", (f"row-{i}", i, PAYLOAD))

    return commit, conn.close


def main() -> None:
    args = parse_args()
    if args.phase == "postgres":
        commit, close = postgres_committer(args.db_url)
    else:
        commit, close = sqlite_committer(args.db_url, "WAL" if args.phase == "wal" else "DELETE")
    target = args.size * COMMITS_PER_WORKFLOW
    deadline = time.perf_counter() + args.seconds
    start = time.perf_counter()
    done = 0
    while done < target and time.perf_counter() < deadline:
        commit(done)
        done += 1
    elapsed = time.perf_counter() - start
    close()
    result = Result()
    result.add("commits/s", done / elapsed, "commit/s")
    result.add("workflows/s", done / elapsed / COMMITS_PER_WORKFLOW, "wf/s")
    result.notes.append(f"{done} commits in {elapsed:.2f}s ({args.phase})")
    emit(result)


if __name__ == "__main__":
    main()
