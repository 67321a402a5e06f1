"""``python -m benchmarks``: run the scenarios for ours and the reference, alternating."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from benchmarks import environment, refenv, runner
from benchmarks.databases import BACKENDS, Databases
from benchmarks.plan import Scenario, Size, select
from benchmarks.report import Key, Report

RESULTS = Path(__file__).resolve().parent / "results"
OUR_VENV_PYTHON = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "python"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, one run (< 2 min)")
    parser.add_argument("--backend", choices=(*BACKENDS, "both"), default="both")
    parser.add_argument("--only", action="append", help="a scenario name (repeatable)")
    parser.add_argument("--pg-url", help="an admin URL of a PostgreSQL server to use instead")
    parser.add_argument("--repeats", type=int, help="override the runs per scenario")
    parser.add_argument("--output", type=Path, default=RESULTS / "latest.md")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    backends = BACKENDS if args.backend == "both" else (args.backend,)
    scenarios = [s for s in select(args.only) if not args.quick or s.quick is not None]
    ours_python = OUR_VENV_PYTHON if OUR_VENV_PYTHON.exists() else Path(sys.executable)
    ref_python = refenv.ensure_reference_env()
    pythons = {"ours": ours_python, "ref": ref_python}
    databases = Databases(args.pg_url)
    started = time.monotonic()
    try:
        databases.start(backends)
        results = run_all(scenarios, backends, args, pythons, databases)
        pg_version = databases.server_version() if "postgres" in backends else None
    finally:
        databases.close()
    mode = "quick" if args.quick else "full"
    text = render(scenarios, backends, results, pythons, pg_version, mode, started)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(text)
    return 0


def run_all(
    scenarios: list[Scenario],
    backends: tuple[str, ...],
    args: argparse.Namespace,
    pythons: dict[str, Path],
    databases: Databases,
) -> dict[Key, list[runner.Outcome]]:
    results: dict[Key, list[runner.Outcome]] = {}
    failure_log = RESULTS / "failures.raw.log"
    for scenario in scenarios:
        size = scenario.quick if args.quick and scenario.quick else scenario.full
        if args.repeats:
            size = Size(size.size, size.seconds, args.repeats)
        for backend in backends:
            for rep in range(size.repeats):
                peers = scenario.peers(backend)
                # Alternate who goes first, so warm caches and drift favour neither side.
                if rep % 2:
                    peers.reverse()
                for peer in peers:
                    peer_size = scenario.size_for(peer, size, args.quick)
                    t0 = time.monotonic()
                    with databases.fresh(backend) as url:
                        outcome = runner.run(
                            pythons[peer.impl], peer, peer_size, url, scenario.timeout, failure_log
                        )
                    outcome.seconds = time.monotonic() - t0
                    status = outcome.error or "ok"
                    print(
                        f"[{scenario.name} {backend} {peer.label} #{rep + 1}] "
                        f"{outcome.seconds:.1f}s {status}",
                        file=sys.stderr,
                        flush=True,
                    )
                    results.setdefault((scenario.name, backend, peer.label), []).append(outcome)
    return results


def render(
    scenarios: list[Scenario],
    backends: tuple[str, ...],
    results: dict[Key, list[runner.Outcome]],
    pythons: dict[str, Path],
    pg_version: str | None,
    mode: str,
    started: float,
) -> str:
    report = Report(results, backends)
    lines = ["# keeptime engine vs reference dbos: benchmark results", ""]
    lines += environment.header(pythons["ours"], pythons["ref"], pg_version, mode)
    lines.append(f"- wall time of the whole run: {time.monotonic() - started:.0f}s")
    lines += ["", "Medians over runs; ratios are ours/reference (see benchmarks/README.md).", ""]
    lines += report.main_table(scenarios)
    if any(s.name == "steps" for s in scenarios):
        lines += ["", "## Raw-commit floor (steps scenario)", "", *report.floor_table()]
    if any(s.name.startswith("schedules-") for s in scenarios):
        lines += ["", "## Schedules, three peers", "", *report.schedules_table(scenarios)]
    lines += ["", "## Targets missed", ""]
    lines += [f"- {m}" for m in report.misses] or ["- none"]
    lines += ["", "## Notes", "", *report.notes()]
    return "\n".join(lines) + "\n"
