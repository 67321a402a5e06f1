"""``keeptime workflows|queues|debounce|db``: manage work in the database, no daemon needed."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from typing import Any

from daemon.cli_common import (
    Subcommands,
    add_output_option,
    client_for,
    management_config,
    resolve_config_path,
)
from daemon.cli_output import OutputFormat, format_time_ms, jsonable, print_records
from daemon.config_check import database_url_with_password
from daemon.debounce import debounce_by_config
from daemon.engine_setup import application_version
from engine import (
    DBOSClient,
    StepInfo,
    WorkflowStatus,
    WorkflowStatusString,
    migrate_system_database_url,
)
from engine.error import DBOSException, DBOSNonExistentWorkflowError

__all__ = ["add_commands"]

_WORKFLOW_COLUMNS = [
    ("workflow_id", "ID"),
    ("name", "NAME"),
    ("status", "STATUS"),
    ("queue_name", "QUEUE"),
    ("created_at", "CREATED"),
    ("updated_at", "UPDATED"),
]
_STEP_COLUMNS = [
    ("function_id", "STEP"),
    ("function_name", "NAME"),
    ("result", "RESULT"),
    ("child_workflow_id", "CHILD"),
]
_QUEUE_COLUMNS = [
    ("name", "NAME"),
    ("concurrency", "CONCURRENCY"),
    ("worker_concurrency", "PER-WORKER"),
    ("limiter", "LIMIT"),
    ("enqueued", "ENQUEUED"),
    ("running", "RUNNING"),
]


def add_commands(commands: Subcommands[argparse.ArgumentParser], common: Any) -> None:
    _add_workflows(commands, common)
    queues = commands.add_parser("queues", help="inspect queues").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    listing = queues.add_parser("list", parents=[common], help="configured queues and their load")
    add_output_option(listing)
    listing.set_defaults(handler=_queues_list)
    _add_debounce(commands, common)
    db = commands.add_parser("db", help="the system database").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    migrate = db.add_parser(
        "migrate", parents=[common], help="create or upgrade the schema (keeptime run does too)"
    )
    migrate.set_defaults(handler=_db_migrate)


def _add_workflows(commands: Subcommands[argparse.ArgumentParser], common: Any) -> None:
    workflows = commands.add_parser("workflows", help="list, inspect and control workflow runs")
    actions = workflows.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", parents=[common], help="recent runs, newest first")
    listing.add_argument(
        "--status",
        choices=[s.value for s in WorkflowStatusString],
        action="append",
        help="repeatable",
    )
    listing.add_argument("--name", help="only runs of this workflow")
    listing.add_argument("--queue", help="only runs enqueued on this queue")
    listing.add_argument("--prefix", help="only IDs starting with this, e.g. sched-backup-")
    listing.add_argument(
        "--app-version",
        metavar="V",
        help="only runs of this application version (see `keeptime workflows get ID`)",
    )
    listing.add_argument("--limit", type=_positive_int, default=20, help="default 20")
    add_output_option(listing)
    listing.set_defaults(handler=_workflows_list)
    for action, help_text, handler in (
        ("get", "one run's status, input and result", _workflows_get),
        ("steps", "the recorded steps of a run", _workflows_steps),
        ("cancel", "cancel a run and its children", _workflows_cancel),
        ("resume", "resume a cancelled or failed run from its last step", _workflows_resume),
        ("fork", "start a new run from a step of an old one", _workflows_fork),
    ):
        sub = actions.add_parser(action, parents=[common], help=help_text)
        sub.add_argument("workflow_id", metavar="ID")
        if action == "fork":
            sub.add_argument(
                "--step", type=_positive_int, default=1, help="first step to run again (default 1)"
            )
            sub.add_argument(
                "--app-version",
                metavar="V",
                help="application version of the new run (default: the original's); a daemon "
                "of that version runs it",
            )
        add_output_option(sub)
        sub.set_defaults(handler=handler)


def _add_debounce(commands: Subcommands[argparse.ArgumentParser], common: Any) -> None:
    debounce = commands.add_parser(
        "debounce",
        parents=[common],
        help="send one input to a debouncer",
        description="Debounce KEY of debouncer NAME with a JSON input (the last input wins).",
    )
    debounce.add_argument("name", metavar="NAME", help="a [debouncers.NAME] of the config")
    debounce.add_argument("key", metavar="KEY", help="the debounce key, e.g. a user ID")
    debounce.add_argument("--input", type=_json_value, default=None, help="a JSON value")
    add_output_option(debounce)
    debounce.set_defaults(handler=_debounce)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def _json_value(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(
            f"not valid JSON ({exc.msg} at column {exc.colno}); quote strings: '\"text\"'"
        ) from None


# -- workflows -------------------------------------------------------------------------------------


def workflow_record(status: WorkflowStatus) -> dict[str, Any]:
    record = jsonable(status)
    record["created_at"] = format_time_ms(status.created_at)
    record["updated_at"] = format_time_ms(status.updated_at)
    return dict(record)


def _workflows_list(args: argparse.Namespace) -> int:
    with client_for(management_config(args)) as client:
        if args.queue:
            found = client.list_queued_workflows(
                queue_name=args.queue,
                status=args.status,
                limit=None if args.app_version else args.limit,
                sort_desc=True,
            )
            if args.app_version:
                found = [s for s in found if s.app_version == args.app_version][: args.limit]
        else:
            found = client.list_workflows(
                status=args.status,
                name=args.name,
                workflow_id_prefix=args.prefix,
                app_version=args.app_version,
                limit=args.limit,
                sort_desc=True,
            )
    print_records([workflow_record(s) for s in found], _WORKFLOW_COLUMNS, args.output)
    return 0


def _workflows_get(args: argparse.Namespace) -> int:
    with client_for(management_config(args)) as client:
        status = client.get_workflow_status(args.workflow_id)
    if status is None:
        raise DBOSNonExistentWorkflowError(
            f"no workflow with ID {args.workflow_id!r} (list them with `keeptime workflows list`)"
        )
    _print_one(workflow_record(status), args.output)
    return 0


def _print_one(record: dict[str, Any], output: OutputFormat) -> None:
    if output == "json":
        print(json.dumps(record, indent=2))
        return
    width = max(len(key) for key in record)
    for key, value in record.items():
        shown = json.dumps(value) if isinstance(value, dict | list) else value
        print(f"{key.ljust(width)}  {'-' if shown is None else shown}")


def _workflows_steps(args: argparse.Namespace) -> int:
    with client_for(management_config(args)) as client:
        steps = client.list_workflow_steps(args.workflow_id)
    print_records([_step_record(s) for s in steps], _STEP_COLUMNS, args.output)
    return 0


def _step_record(step: StepInfo) -> dict[str, Any]:
    record = dict(jsonable(dict(step)))
    error = step["error"]
    if error is not None:
        record["result"] = f"error: {type(error).__name__}: {error}"
    else:
        record["result"] = json.dumps(record.get("output"))
    return record


def _workflows_cancel(args: argparse.Namespace) -> int:
    with client_for(management_config(args)) as client:
        client.cancel_workflow(args.workflow_id)
    _print_one({"workflow_id": args.workflow_id, "action": "cancelled"}, args.output)
    return 0


def _workflows_resume(args: argparse.Namespace) -> int:
    config = management_config(args)
    mine = application_version(config)
    with client_for(config) as client:
        status = _require_status(client, args.workflow_id)
        if status.status == "PENDING":
            raise DBOSException(_pending_hint(client, status, mine, args.config))
        handle = client.resume_workflow(args.workflow_id)
    record: dict[str, Any] = {"workflow_id": handle.workflow_id, "action": "resumed"}
    if status.app_version is not None and status.app_version != mine:
        # Resumed work keeps its version: only an executor of that version dequeues it.
        record["waits_for_app_version"] = status.app_version
        print(
            f"keeptime: note: {args.workflow_id} belongs to application version "
            f"{status.app_version!r} and waits for a daemon of that version; this config runs "
            f"{mine!r} (to run it there, fork it instead: "
            f"{_fork_command(client, status, mine, args.config)})",
            file=sys.stderr,
        )
    _print_one(record, args.output)
    return 0


def _require_status(client: DBOSClient, workflow_id: str) -> WorkflowStatus:
    status = client.get_workflow_status(workflow_id)
    if status is None:
        raise DBOSNonExistentWorkflowError(
            f"no workflow with ID {workflow_id!r} (list them with `keeptime workflows list`)"
        )
    return status


def _fork_command(
    client: DBOSClient, status: WorkflowStatus, version: str, config: str | None
) -> str:
    """The fork that continues a run after its last recorded step, on ``version``."""
    steps = client.list_workflow_steps(status.workflow_id)
    next_step = max((s["function_id"] for s in steps), default=0) + 1
    return (
        f"keeptime workflows fork{_config_option(config)} {shlex.quote(status.workflow_id)} "
        f"--step {next_step} --app-version {shlex.quote(version)}"
    )


def _config_option(config: str | None) -> str:
    return f" -c {shlex.quote(config)}" if config else ""


def _pending_hint(client: DBOSClient, status: WorkflowStatus, mine: str, config: str | None) -> str:
    """Why ``resume`` does nothing to a PENDING run, and what does."""
    version = status.app_version
    owner = f"executor {status.executor_id!r}, application version {version!r}"
    text = (
        f"workflow {status.workflow_id!r} is PENDING ({owner}): resume restarts only CANCELLED, "
        "MAX_RECOVERY_ATTEMPTS_EXCEEDED and ENQUEUED runs. A PENDING run resumes by itself when "
        "its executor runs (or, on PostgreSQL, when a live daemon of its version takes it over)"
    )
    if version is not None and version != mine:
        text += (
            f". This config runs application version {mine!r}, whose daemons never resume it: "
            f"continue it as a new run with `{_fork_command(client, status, mine, config)}` (then "
            f"`keeptime workflows cancel{_config_option(config)} "
            f"{shlex.quote(status.workflow_id)}`), or cancel it and "
            "resume it through the running daemon's HTTP API (POST "
            "/api/v1/workflows/ID/cancel, then /resume), which runs it there on its code"
        )
    return text


def _workflows_fork(args: argparse.Namespace) -> int:
    with client_for(management_config(args)) as client:
        handle = client.fork_workflow(
            args.workflow_id, args.step, application_version=args.app_version
        )
    record: dict[str, Any] = {"workflow_id": handle.workflow_id, "forked_from": args.workflow_id}
    record["start_step"] = args.step
    if args.app_version:
        record["app_version"] = args.app_version
    _print_one(record, args.output)
    return 0


# -- queues, debounce, db --------------------------------------------------------------------------


def _queues_list(args: argparse.Namespace) -> int:
    config = management_config(args)
    records: list[dict[str, Any]] = []
    with client_for(config) as client:
        for queue in config.queues.values():
            waiting = client.list_queued_workflows(queue_name=queue.name, load_input=False)
            limiter = queue.limiter
            records.append(
                {
                    "name": queue.name,
                    "concurrency": queue.concurrency,
                    "worker_concurrency": queue.worker_concurrency,
                    "limiter": (
                        f"{limiter.limit}/{limiter.period.total_seconds():g}s" if limiter else None
                    ),
                    "enqueued": sum(1 for s in waiting if s.status == "ENQUEUED"),
                    "running": sum(1 for s in waiting if s.status == "PENDING"),
                }
            )
    print_records(records, _QUEUE_COLUMNS, args.output)
    return 0


def _debounce(args: argparse.Namespace) -> int:
    config = management_config(args, import_targets=True)
    with client_for(config) as client:
        workflow_id = debounce_by_config(client, config, args.name, args.key, args.input)
    _print_one({"debouncer": args.name, "key": args.key, "workflow_id": workflow_id}, args.output)
    return 0


def _db_migrate(args: argparse.Namespace) -> int:
    config = management_config(args)
    done = migrate_system_database_url(database_url_with_password(config))
    where = resolve_config_path(args.config)
    if not done.changed:
        print(f"{where}: the database is up to date (schema version {done.schema_version})")
    else:
        print(
            f"{where}: migrated the database from schema version {done.found_version} "
            f"to {done.schema_version}"
        )
    sys.stdout.flush()
    return 0
