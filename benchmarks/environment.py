"""Date, machine and versions for the report header."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path

_VERSIONS = """
import importlib.metadata as m, json, platform, sqlite3
out = {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version}
for name in ("keeptime", "dbos", "SQLAlchemy", "psycopg", "APScheduler"):
    try:
        out[name] = m.version(name)
    except m.PackageNotFoundError:
        pass
print(json.dumps(out))
"""


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def versions(python: Path) -> dict[str, str]:
    proc = subprocess.run([str(python), "-c", _VERSIONS], capture_output=True, text=True)
    return json.loads(proc.stdout) if proc.returncode == 0 else {"error": proc.stderr[-200:]}


def header(ours: Path, ref: Path, pg_version: str | None, mode: str) -> list[str]:
    o, r = versions(ours), versions(ref)
    ours_desc = ", ".join(f"{k} {v}" for k, v in o.items() if k != "dbos")
    ref_desc = ", ".join(
        f"{k} {v}"
        for k, v in r.items()
        if k in ("python", "dbos", "SQLAlchemy", "psycopg", "sqlite")
    )
    lines = [
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} ({mode} mode)",
        f"- machine: {os.cpu_count()} CPUs, {cpu_model()}, {platform.system()} "
        f"{platform.release()}",
        f"- ours: {ours_desc}",
        f"- reference: {ref_desc}",
    ]
    if pg_version:
        lines.append(
            f"- PostgreSQL server: {pg_version} (one throwaway server, fresh database per run)"
        )
    return lines
