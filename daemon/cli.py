"""The ``keeptime`` command: ``run``, ``check``, and management commands on the database.

Exit codes: 0 success, 1 failure (invalid config, unknown name, database error), 2 bad command
line (argparse). Every command takes ``-c FILE``, defaulting to ``$KEEPTIME_CONFIG`` and then to
``/etc/keeptime/keeptime.toml``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from importlib import metadata

from daemon import cli_schedules, cli_workflows
from daemon.cli_common import CONFIG_ENV, DEFAULT_CONFIG_PATH, Subcommands, resolve_config_path
from daemon.config import load_config
from daemon.config_model import LOG_FORMATS, ConfigInvalid
from engine.error import DBOSException

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]


def version() -> str:
    try:
        return metadata.version("keeptime")
    except metadata.PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help=f"config file (default: ${CONFIG_ENV}, then {DEFAULT_CONFIG_PATH})",
    )
    parser = argparse.ArgumentParser(
        prog="keeptime",
        description="A durable cron and debounce daemon.",
        epilog="Run 'keeptime COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"keeptime {version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_run(commands, common)
    _add_check(commands, common)
    cli_schedules.add_commands(commands, common)
    cli_workflows.add_commands(commands, common)
    return parser


def _add_run(
    commands: Subcommands[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    run = commands.add_parser(
        "run",
        parents=[common],
        help="run the daemon in the foreground (under systemd: Type=notify)",
        description="Run schedules and debouncers until SIGTERM; SIGHUP reloads the config.",
    )
    run.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        help="override [log] format: json lines (for journald) or console (for a terminal)",
    )
    run.set_defaults(handler=_run)


def _add_check(
    commands: Subcommands[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    check = commands.add_parser(
        "check",
        parents=[common],
        help="validate the config file (like nginx -t)",
        description="Validate the config: exit 0 when valid, 1 with FILE:LINE problems if not.",
    )
    check.set_defaults(handler=_check)


def _check(args: argparse.Namespace) -> int:
    path = resolve_config_path(args.config)
    try:
        config = load_config(path)
    except ConfigInvalid as exc:
        print(str(exc), file=sys.stderr)
        count = len(exc.problems)
        print(f"{path}: {count} problem{'s' if count != 1 else ''}", file=sys.stderr)
        return 1
    print(
        f"{path}: ok ({len(config.schedules)} schedules, {len(config.debouncers)} debouncers, "
        f"{len(config.queues)} queues)"
    )
    return 0


def _run(args: argparse.Namespace) -> int:
    from daemon.logging import configure_logging, get_logger
    from daemon.service import Service

    path = resolve_config_path(args.config)
    try:
        config = load_config(path)
    except ConfigInvalid as exc:
        print(str(exc), file=sys.stderr)
        print(f"{path}: refusing to start with an invalid config", file=sys.stderr)
        return 1
    configure_logging(args.log_format or config.log.format, config.log.level)
    service = Service(config)
    try:
        code = service.run()
    except DBOSException as exc:
        get_logger("keeptime.daemon").error("daemon.failed", error=str(exc))
        return 1
    if not service.stopped_cleanly:
        # Workflow threads still run; they are recovered at the next start. Do not wait on them.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: parse ``argv`` and run the command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except ConfigInvalid as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except DBOSException as exc:
        print(f"keeptime: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
