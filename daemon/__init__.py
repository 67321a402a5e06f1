"""Keeptime's daemon: TOML config, service lifecycle, HTTP API, CLI and systemd glue.

It uses only the public API of :mod:`engine`.
"""

__version__ = "0.1.0"
