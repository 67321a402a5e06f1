"""``keeptime schedules``: list, next fire times, trigger, pause, resume and backfill."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from daemon import schedule_admin
from daemon.cli_common import Subcommands, add_output_option, client_for, management_config
from daemon.cli_output import format_left, print_records
from daemon.config_check import suggest
from daemon.config_model import Config, ScheduleConfig
from engine import CronSchedule, WorkflowSchedule
from engine.error import DBOSInvalidArgumentError

__all__ = ["add_commands", "next_fire_times"]

_LIST_COLUMNS = [
    ("name", "NAME"),
    ("cron", "CRON"),
    ("timezone", "TZ"),
    ("next", "NEXT"),
    ("left", "LEFT"),
    ("last", "LAST"),
    ("result", "RESULT"),
    ("paused", "PAUSED"),
]
_NEXT_COLUMNS = [("local", "TIME"), ("utc", "UTC"), ("left", "LEFT"), ("note", "NOTE")]


def add_commands(commands: Subcommands[argparse.ArgumentParser], common: Any) -> None:
    schedules = commands.add_parser("schedules", help="inspect and control schedules")
    actions = schedules.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", parents=[common], help="every schedule, like list-timers")
    add_output_option(listing)
    listing.set_defaults(handler=_list)

    upcoming = actions.add_parser(
        "next",
        parents=[common],
        help="the next fire times, with DST changes marked",
        description="Show the next N fire times of a configured schedule or of --cron EXPR.",
    )
    upcoming.add_argument("name", metavar="NAME", nargs="?", help="a [schedules.NAME]")
    upcoming.add_argument("--cron", metavar="EXPR", help="a crontab expression instead of NAME")
    upcoming.add_argument("--tz", metavar="ZONE", help="IANA time zone for --cron (default UTC)")
    upcoming.add_argument("-n", type=_count, default=5, help="how many (default 5, at most 1000)")
    add_output_option(upcoming)
    upcoming.set_defaults(handler=_next)

    for action, help_text, handler in (
        ("trigger", "run a schedule once now", _trigger),
        ("pause", "stop firing until resumed (survives restarts)", _pause),
        ("resume", "fire again", _resume),
    ):
        sub = actions.add_parser(action, parents=[common], help=help_text)
        sub.add_argument("name", metavar="NAME")
        add_output_option(sub)
        sub.set_defaults(handler=handler)

    backfill = actions.add_parser(
        "backfill", parents=[common], help="run the ticks of a past time range"
    )
    backfill.add_argument("name", metavar="NAME")
    backfill.add_argument("--from", dest="start", type=_instant, required=True, metavar="TIME")
    backfill.add_argument("--to", dest="end", type=_instant, required=True, metavar="TIME")
    add_output_option(backfill)
    backfill.set_defaults(handler=_backfill)


def _count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 1000:
        raise argparse.ArgumentTypeError(f"expected a number from 1 to 1000, got {text!r}")
    return int(text)


def _instant(text: str) -> datetime:
    """ISO 8601; a time without an offset is UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO 8601 time: {text!r} (e.g. 2024-06-01T02:00:00+02:00 or 2024-06-01)"
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _schedule_named(config: Config, name: str) -> ScheduleConfig:
    schedule = config.schedules.get(name)
    if schedule is None:
        hint = suggest(name, sorted(config.schedules), "configured schedules:") or "none"
        raise DBOSInvalidArgumentError(
            f"no schedule named {name!r} in {config.source_path} ({hint})"
        )
    return schedule


# -- next ------------------------------------------------------------------------------------------


def next_fire_times(schedule: CronSchedule, count: int, now: datetime) -> list[dict[str, Any]]:
    """The next ``count`` ticks after ``now``, each with a note when the zone's offset changed."""
    zone = ZoneInfo(schedule.timezone)
    records: list[dict[str, Any]] = []
    previous = now
    for _ in range(count):
        tick = schedule.next_after(previous)
        local = tick.astimezone(zone)
        records.append(
            {
                "local": local.isoformat(),
                "utc": tick.isoformat().replace("+00:00", "Z"),
                "left": format_left(tick - now),
                "note": _dst_note(previous.astimezone(zone), local),
            }
        )
        previous = tick
    return records


def _dst_note(before: datetime, after: datetime) -> str | None:
    """Say so when a DST transition lies between two consecutive instants."""
    old, new = before.utcoffset(), after.utcoffset()
    if old == new or old is None or new is None:
        return None
    direction = "clocks forward" if new > old else "clocks back"
    return f"DST: {direction} {before.tzname()} -> {after.tzname()} ({_offset(new - old)})"


def _offset(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    hours, mins = divmod(abs(minutes), 60)
    return f"{sign}{hours}h{mins:02d}" if mins else f"{sign}{hours}h"


def _next(args: argparse.Namespace) -> int:
    if (args.name is None) == (args.cron is None):
        raise DBOSInvalidArgumentError(
            "give a schedule NAME or --cron EXPR (not both): "
            "keeptime schedules next NAME | --cron '0 2 * * *' --tz Europe/Berlin"
        )
    if args.cron is not None:
        schedule = CronSchedule.parse(args.cron, args.tz or "UTC")
    else:
        configured = _schedule_named(management_config(args), args.name)
        schedule = CronSchedule.parse(configured.cron, args.tz or configured.timezone)
    records = next_fire_times(schedule, args.n, datetime.now(tz=UTC))
    print_records(records, _NEXT_COLUMNS, args.output)
    return 0


# -- list ------------------------------------------------------------------------------------------


def _list(args: argparse.Namespace) -> int:
    config = management_config(args)
    now = datetime.now(tz=UTC)
    with client_for(config) as client:
        registered = schedule_admin.states(client)
    records = [
        _list_record(schedule, registered.get(schedule.name), now)
        for schedule in config.schedules.values()
    ]
    # Schedules in the database but not in this config (@DBOS.scheduled workflows).
    records += [
        _state_record(state, now)
        for name, state in registered.items()
        if name not in config.schedules
    ]
    print_records(records, _LIST_COLUMNS, args.output)
    return 0


def _list_record(
    schedule: ScheduleConfig, state: WorkflowSchedule | None, now: datetime
) -> dict[str, Any]:
    """A configured schedule; before a daemon registered it, its state comes from the config."""
    if state is not None:
        return _state_record(state, now)
    upcoming = None
    if not schedule.paused:
        upcoming = CronSchedule.parse(schedule.cron, schedule.timezone).next_after(now)
    return _record(schedule.name, schedule.cron, schedule.timezone, upcoming, now, schedule.paused)


def _state_record(state: WorkflowSchedule, now: datetime) -> dict[str, Any]:
    record = _record(
        state["schedule_name"],
        state["schedule"],
        state["cron_timezone"] or "UTC",
        state["next_fire_time"],
        now,
        state["status"] == "PAUSED",
    )
    if state["last_workflow_id"] is not None:
        last = state["last_fired_at"]
        record["last"] = _iso(datetime.fromisoformat(last) if last is not None else None)
        record["result"] = state["last_status"]
        record["last_workflow_id"] = state["last_workflow_id"]
    return record


def _record(
    name: str, cron: str, timezone: str, upcoming: datetime | None, now: datetime, paused: bool
) -> dict[str, Any]:
    return {
        "name": name,
        "cron": cron,
        "timezone": timezone,
        "next": _iso(upcoming),
        "left": format_left(upcoming - now) if upcoming is not None else None,
        "last": None,
        "result": None,
        "last_workflow_id": None,
        "paused": paused,
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None


# -- control ---------------------------------------------------------------------------------------


def _trigger(args: argparse.Namespace) -> int:
    config = management_config(args)
    _schedule_named(config, args.name)
    with client_for(config) as client:
        workflow_id = schedule_admin.trigger(client, args.name)
    print_records(
        [{"schedule": args.name, "workflow_id": workflow_id}],
        [("schedule", "SCHEDULE"), ("workflow_id", "WORKFLOW")],
        args.output,
    )
    return 0


def _pause(args: argparse.Namespace) -> int:
    return _set_paused(args, paused=True)


def _resume(args: argparse.Namespace) -> int:
    return _set_paused(args, paused=False)


def _set_paused(args: argparse.Namespace, *, paused: bool) -> int:
    config = management_config(args)
    _schedule_named(config, args.name)
    with client_for(config) as client:
        if paused:
            schedule_admin.pause(client, args.name)
        else:
            schedule_admin.resume(client, args.name)
    print_records(
        [{"schedule": args.name, "paused": paused}],
        [("schedule", "SCHEDULE"), ("paused", "PAUSED")],
        args.output,
    )
    return 0


def _backfill(args: argparse.Namespace) -> int:
    if args.start >= args.end:
        raise DBOSInvalidArgumentError(
            f"--from {args.start.isoformat()} must be before --to {args.end.isoformat()}"
        )
    config = management_config(args)
    _schedule_named(config, args.name)
    with client_for(config) as client:
        workflow_ids = schedule_admin.backfill(client, args.name, args.start, args.end)
    print_records(
        [{"schedule": args.name, "workflow_id": wf_id} for wf_id in workflow_ids],
        [("schedule", "SCHEDULE"), ("workflow_id", "WORKFLOW")],
        args.output,
    )
    return 0
