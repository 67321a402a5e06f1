"""Prints the fault battery's summary lines at the end of the session, past output capture."""

from __future__ import annotations

import pytest

from tests.faults.battery import SUMMARIES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not SUMMARIES:
        return
    terminalreporter.section("fault battery")
    for summary in SUMMARIES:
        terminalreporter.write_line(summary["line"])
        terminalreporter.write_line(f"  numbers: {summary['path']}")
