"""systemd/keeptime.service: required settings, a hardening score <= 2.0, and a clean verify."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "keeptime.service"
INSTALLED_BINARY = "/opt/keeptime/bin/keeptime"
MAX_EXPOSURE = 2.0

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (it comes with systemd)",
)


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_unit_has_the_service_contract() -> None:
    s = unit_settings()
    assert s["Type"] == ["notify"]
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert s["Restart"] == ["on-failure"]
    assert s["StateDirectory"] == ["keeptime"]
    assert s["ConfigurationDirectory"] == ["keeptime"]
    assert s["DynamicUser"] == ["yes"]
    assert "WatchdogSec" in s
    credentials = {value.split(":")[0] for value in s["LoadCredential"]}
    assert credentials == {"api-token", "db-password"}
    assert s["ExecStart"] == [f"{INSTALLED_BINARY} run -c /etc/keeptime/keeptime.toml"]


def test_stop_timeout_leaves_room_for_the_daemons_own_bound() -> None:
    from daemon.service import STOP_TIMEOUT_SECONDS

    timeout = unit_settings()["TimeoutStopSec"][0]
    assert int(timeout.removesuffix("s")) > STOP_TIMEOUT_SECONDS


@needs_systemd_analyze
def test_security_exposure_is_at_most_two() -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", output)
    assert match, output
    assert float(match.group(1)) <= MAX_EXPOSURE, output


@needs_systemd_analyze
def test_verify_is_clean(tmp_path: Path) -> None:
    # verify checks that ExecStart= programs exist; point them at a stand-in executable.
    binary = tmp_path / "keeptime"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    unit = tmp_path / "keeptime.service"
    unit.write_text(UNIT.read_text().replace(INSTALLED_BINARY, str(binary)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"},
    )
    assert result.returncode == 0, result.stderr
    problems = [line for line in result.stderr.splitlines() if "keeptime" in line]
    assert problems == [], result.stderr
