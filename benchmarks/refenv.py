"""The reference implementation's own virtual environment (created on first use)."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

REFERENCE_PACKAGE = "dbos"
REFERENCE_VERSION = "2.31.1"
DEFAULT_DIR = Path(__file__).resolve().parent / ".venv-dbos"


def python_of(env_dir: Path) -> Path:
    return env_dir / "bin" / "python"


def installed_version(python: Path) -> str | None:
    if not python.exists():
        return None
    probe = subprocess.run(
        [
            str(python),
            "-c",
            f"import importlib.metadata as m; print(m.version({REFERENCE_PACKAGE!r}))",
        ],
        capture_output=True,
        text=True,
    )
    return probe.stdout.strip() if probe.returncode == 0 else None


def ensure_reference_env(env_dir: Path = DEFAULT_DIR) -> Path:
    """The reference venv's python, with ``dbos==2.31.1`` installed (creating it if needed)."""
    python = python_of(env_dir)
    if installed_version(python) == REFERENCE_VERSION:
        return python
    if not python.exists():
        print(f"creating the reference venv in {env_dir}", file=sys.stderr)
        venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    spec = f"{REFERENCE_PACKAGE}=={REFERENCE_VERSION}"
    print(f"installing {spec} into {env_dir}", file=sys.stderr)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", spec],
        check=True,
    )
    return python
