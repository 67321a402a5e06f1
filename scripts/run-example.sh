#!/usr/bin/env bash
# Sets up everything on a fresh machine and runs the daemon on the example config (SQLite).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
exec .venv/bin/keeptime run -c config/keeptime.example.toml "$@"
