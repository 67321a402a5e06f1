"""What management commands share: the config file, ``-o``, and a client on the database."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator

from daemon.config import load_config
from daemon.config_model import Config
from daemon.engine_setup import open_client
from engine import DBOSClient

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_PATH",
    "Subcommands",
    "add_output_option",
    "client_for",
    "management_config",
    "resolve_config_path",
]

DEFAULT_CONFIG_PATH = "/etc/keeptime/keeptime.toml"
CONFIG_ENV = "KEEPTIME_CONFIG"
Subcommands = argparse._SubParsersAction  # the type argparse returns from add_subparsers()


def resolve_config_path(given: str | None) -> str:
    """``-c`` if given, else ``$KEEPTIME_CONFIG``, else :data:`DEFAULT_CONFIG_PATH`."""
    return given or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH


def add_output_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--output",
        choices=("table", "json"),
        default="table",
        help="table for people (default), json for scripts",
    )


def management_config(args: argparse.Namespace, *, import_targets: bool = False) -> Config:
    """The config named by ``-c``; files are checked, Python targets only when asked."""
    return load_config(resolve_config_path(args.config), import_targets=import_targets)


@contextlib.contextmanager
def client_for(config: Config) -> Iterator[DBOSClient]:
    """A client on the configured database, closed afterwards. Runs no workflows."""
    client = open_client(config)
    try:
        yield client
    finally:
        client.destroy()
