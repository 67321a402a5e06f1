"""The schedule registry API of ``DBOS`` and ``DBOSClient`` (``create_schedule`` and friends).

Thin facades over the scheduler (engine/runtime/scheduler.py) and the schedule store: a schedule
created here is a *managed* schedule, the same kind the daemon's configuration declares, so the
scheduler fires it with its timers, catch-up, overlap and jitter. The database is the source of
truth: every change reads the managed schedules stored there, applies the change and hands the
whole set to the scheduler in one write. See docs/scheduling.md ("The schedule registry API") and
docs/compatibility.md for how this differs from the reference.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypedDict, cast

from engine.error import DBOSInvalidArgumentError, DBOSInvalidCrontabError
from engine.runtime import scheduler as sched
from engine.runtime.schedule_admin import (
    SOURCE_DECORATOR,
    SOURCE_MANAGED,
    SOURCE_REGISTRY,
    ScheduleAdmin,
    ScheduleDefinition,
)
from engine.serialization import Codec
from engine.storage.schedules import ScheduleRow, ScheduleStore

if TYPE_CHECKING:
    from engine.client import DBOSClient

ACTIVE = "ACTIVE"
PAUSED = "PAUSED"
_ONE_MICROSECOND = timedelta(microseconds=1)


class WorkflowSchedule(TypedDict):
    """A schedule as ``list_schedules`` and ``get_schedule`` return it (the reference's fields,
    then Keeptime's).

    ``schedule_id`` is the schedule's name (Keeptime keys schedules by name),
    ``workflow_class_name`` is always None, ``last_fired_at`` is the catch-up watermark (ISO
    8601: the last tick handled, or the creation or resume time),
    ``automatic_backfill`` is true when the catch-up policy is ``all``.
    Keeptime adds ``catchup``, ``overlap``, ``source`` (``registry`` for this API, ``managed``
    for configured schedules, ``decorator`` for ``@DBOS.scheduled``), ``next_fire_time`` (None
    while paused), and the workflow ID and status of the last tick run (``last_workflow_id``,
    ``last_status``).
    """

    schedule_id: str
    schedule_name: str
    workflow_name: str
    workflow_class_name: str | None
    schedule: str
    status: str
    context: Any
    last_fired_at: str | None
    automatic_backfill: bool
    cron_timezone: str | None
    queue_name: str | None
    catchup: str
    overlap: str
    source: str
    next_fire_time: datetime | None
    last_workflow_id: str | None
    last_status: str | None


class _ScheduleOptions(TypedDict, total=False):
    """The optional keys of an ``apply_schedules`` entry: ``create_schedule``'s keyword
    arguments."""

    context: Any
    automatic_backfill: bool
    cron_timezone: str | None
    queue_name: str | None
    catchup: str | None
    catchup_window_seconds: float | None
    max_catchup: int | None
    overlap: str
    jitter_seconds: float
    timeout_seconds: float | None


class ScheduleInput(_ScheduleOptions, total=False):
    """One entry of ``DBOS.apply_schedules``: ``schedule_name``, ``workflow_fn`` and ``schedule``
    are required; the other keys are ``create_schedule``'s keyword arguments."""

    schedule_name: str
    workflow_fn: Callable[..., Any]
    schedule: str


class ClientScheduleInput(_ScheduleOptions, total=False):
    """One entry of ``DBOSClient.apply_schedules``: as :class:`ScheduleInput`, with the
    workflow named by ``workflow_name`` instead of ``workflow_fn``."""

    schedule_name: str
    workflow_name: str
    schedule: str


_OPTIONS = tuple(_ScheduleOptions.__annotations__)


def build(
    *,
    schedule_name: str,
    workflow_name: str,
    schedule: str,
    context: Any = None,
    automatic_backfill: bool = False,
    cron_timezone: str | None = None,
    queue_name: str | None = None,
    catchup: str | None = None,
    catchup_window_seconds: float | None = None,
    max_catchup: int | None = None,
    overlap: str = "allow",
    jitter_seconds: float = 0.0,
    timeout_seconds: float | None = None,
) -> ScheduleDefinition:
    """The definition behind a registry schedule. Reference defaults: every tick runs (overlap
    ``allow``), missed ticks are skipped unless ``automatic_backfill`` (catch-up ``none``, or
    ``all``); an explicit ``catchup`` wins. The workflow gets ``(scheduled_time, context)``."""
    if not isinstance(automatic_backfill, bool):
        raise DBOSInvalidArgumentError(
            f"automatic_backfill must be True or False, got {automatic_backfill!r}"
        )
    if catchup is None:
        catchup = "all" if automatic_backfill else "none"
    try:
        return ScheduleDefinition(
            name=schedule_name,
            cron=schedule,
            workflow_name=workflow_name,
            timezone=cron_timezone or "UTC",
            catchup=catchup,
            catchup_window_seconds=catchup_window_seconds,
            max_catchup=max_catchup,
            overlap=overlap,
            jitter_seconds=jitter_seconds,
            queue_name=queue_name,
            timeout_seconds=timeout_seconds,
            args=(context,),
            pass_actual_time=False,
        )
    except DBOSInvalidCrontabError as exc:
        raise DBOSInvalidCrontabError(
            f"Invalid cron schedule {schedule!r} for schedule {schedule_name!r}: {exc.message} "
            "(use 5 fields, or 6 with seconds first, e.g. '*/5 * * * *')"
        ) from exc


def build_from_fn(
    workflow_name_of: Callable[[Callable[..., Any]], str],
    *,
    schedule_name: str,
    workflow_fn: Callable[..., Any],
    schedule: str,
    **options: Any,
) -> ScheduleDefinition:
    return build(
        schedule_name=schedule_name,
        workflow_name=workflow_name_of(workflow_fn),
        schedule=schedule,
        **options,
    )


def from_entries(
    entries: Sequence[Any],
    name_keys: Sequence[str],
    to_definition: Callable[..., ScheduleDefinition],
) -> list[ScheduleDefinition]:
    """Validate every entry of an ``apply_schedules`` call before anything is written.

    An entry names its workflow with one of ``name_keys``; configured entries (two name keys) may
    also carry ``paused``.
    """
    if isinstance(entries, dict | str) or not isinstance(entries, Sequence):
        raise DBOSInvalidArgumentError(
            f"apply_schedules takes a list of schedule dicts, got {type(entries).__name__}"
        )
    extra = ("paused",) if len(name_keys) > 1 else ()
    definitions: list[ScheduleDefinition] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise DBOSInvalidArgumentError(f"apply_schedules entry {i} is not a dict: {entry!r}")
        missing = [k for k in ("schedule_name", "schedule") if k not in entry]
        if not any(k in entry for k in name_keys):
            missing.append(" or ".join(name_keys))
        known = {"schedule_name", "schedule", *name_keys, *_OPTIONS, *extra}
        unknown = sorted(set(entry) - known)
        if missing or unknown:
            raise DBOSInvalidArgumentError(
                f"apply_schedules entry {i}: missing keys {missing}, unknown keys {unknown}"
            )
        definitions.append(to_definition(**entry))
    names = [d.name for d in definitions]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DBOSInvalidArgumentError(f"apply_schedules: schedule names repeated: {repeated}")
    return definitions


# -- reading ---------------------------------------------------------------------------------------


def to_schedule(admin: ScheduleAdmin, row: ScheduleRow) -> WorkflowSchedule:
    state = admin._state(row)
    context = None
    if row.inputs is not None:
        args = admin.codec.decode_inputs(row.inputs)["args"]
        context = args[0] if args else None
    return WorkflowSchedule(
        schedule_id=row.name,
        schedule_name=row.name,
        workflow_name=state.workflow_name,
        workflow_class_name=None,
        schedule=state.cron,
        status=PAUSED if state.paused else ACTIVE,
        context=context,
        last_fired_at=None if state.last_tick is None else state.last_tick.isoformat(),
        automatic_backfill=state.catchup == "all",
        cron_timezone=state.timezone,
        queue_name=state.queue_name,
        catchup=state.catchup,
        overlap=state.overlap,
        source=row.source,
        next_fire_time=state.next_fire_time,
        last_workflow_id=state.last_workflow_id,
        last_status=state.last_status,
    )


def _as_set(value: str | Iterable[str] | None) -> set[str] | None:
    if value is None:
        return None
    return {value} if isinstance(value, str) else set(value)


def list_schedules(
    admin: ScheduleAdmin,
    status: str | Iterable[str] | None = None,
    workflow_name: str | Iterable[str] | None = None,
    schedule_name_prefix: str | Iterable[str] | None = None,
) -> list[WorkflowSchedule]:
    statuses = _as_set(status)
    if statuses is not None and not statuses <= {ACTIVE, PAUSED}:
        raise DBOSInvalidArgumentError(
            f"status must be 'ACTIVE' or 'PAUSED' (or a list of them), got {status!r}"
        )
    names = _as_set(workflow_name)
    prefixes = _as_set(schedule_name_prefix)
    found = [to_schedule(admin, row) for row in admin.schedules.list_all()]
    return [
        s
        for s in found
        if (statuses is None or s["status"] in statuses)
        and (names is None or s["workflow_name"] in names)
        and (prefixes is None or any(s["schedule_name"].startswith(p) for p in prefixes))
    ]


def get_schedule(admin: ScheduleAdmin, name: str) -> WorkflowSchedule | None:
    row = admin.schedules.get(name)
    return None if row is None else to_schedule(admin, row)


def _existing(admin: ScheduleAdmin, name: str) -> ScheduleRow:
    row = admin.schedules.get(name)
    if row is None:
        known = ", ".join(r.name for r in admin.schedules.list_all()) or "none"
        raise DBOSInvalidArgumentError(
            f"Schedule {name!r} does not exist (known schedules: {known})"
        )
    return row


# -- changing (a launched DBOS: through its scheduler) ---------------------------------------------


def _registry(store: ScheduleStore, codec: Codec) -> dict[str, ScheduleDefinition]:
    return {
        row.name: ScheduleDefinition.from_row(row, codec) for row in store.list_all(SOURCE_REGISTRY)
    }


def _refuse_decorated(store: ScheduleStore, names: Iterable[str]) -> None:
    for name in names:
        row = store.get(name)
        if row is not None and row.source == SOURCE_DECORATOR:
            raise DBOSInvalidArgumentError(
                f"schedule {name!r} is declared by @DBOS.scheduled; choose another schedule name"
            )


def _refuse_duplicate(store: ScheduleStore, name: str) -> None:
    if store.get(name) is not None:
        raise DBOSInvalidArgumentError(
            f"Schedule {name!r} already exists (delete_schedule it first, or use apply_schedules "
            "to create or replace schedules)"
        )


def create(definition: ScheduleDefinition) -> None:
    scheduler = sched.get_scheduler()
    store = scheduler.admin.schedules
    _refuse_duplicate(store, definition.name)
    managed = _registry(store, scheduler.admin.codec)
    scheduler.set_managed([*managed.values(), definition], SOURCE_REGISTRY)


def apply_entries(
    entries: Sequence[Any],
    to_definition: Callable[..., ScheduleDefinition],
    *,
    configured: bool = False,
) -> None:
    """``DBOS.apply_schedules``: validate every entry, then apply them in one write.

    With ``configured`` the entries are the process's configured schedules (the daemon's config):
    they replace the whole configured set, apart from the registry's own schedules.
    """
    if not isinstance(configured, bool):
        raise DBOSInvalidArgumentError(f"configured must be True or False, got {configured!r}")
    if configured:
        definitions = from_entries(entries, _CONFIGURED_KEYS, _configured(to_definition))
        sched.get_scheduler().set_managed(definitions, SOURCE_MANAGED)
        return
    apply(from_entries(entries, ("workflow_fn",), to_definition))


# A configured entry names its workflow by function or by registered name, and may be paused by
# its configuration (a flag apart from pause_schedule's durable one).
_CONFIGURED_KEYS = ("workflow_fn", "workflow_name")


def _configured(
    to_definition: Callable[..., ScheduleDefinition],
) -> Callable[..., ScheduleDefinition]:
    def build_configured(
        *,
        workflow_fn: Callable[..., Any] | None = None,
        workflow_name: str | None = None,
        paused: bool = False,
        **entry: Any,
    ) -> ScheduleDefinition:
        if (workflow_fn is None) == (workflow_name is None):
            raise DBOSInvalidArgumentError(
                f"configured schedule {entry.get('schedule_name')!r} needs exactly one of "
                "'workflow_fn' and 'workflow_name'"
            )
        if not isinstance(paused, bool):
            raise DBOSInvalidArgumentError(f"paused must be True or False, got {paused!r}")
        context = entry.get("context")
        if workflow_fn is not None:
            definition = to_definition(workflow_fn=workflow_fn, **entry)
        else:
            definition = build(workflow_name=cast(str, workflow_name), **entry)
        # Configured workflows take (scheduled_time, actual_time), plus the context if one is set.
        args = () if context is None else (context,)
        return replace(definition, args=args, pass_actual_time=True, paused=paused)

    return build_configured


def apply(definitions: Sequence[ScheduleDefinition]) -> None:
    scheduler = sched.get_scheduler()
    store = scheduler.admin.schedules
    _refuse_decorated(store, (d.name for d in definitions))
    managed = _registry(store, scheduler.admin.codec)
    managed.update({d.name: d for d in definitions})
    scheduler.set_managed(list(managed.values()), SOURCE_REGISTRY)


def delete(name: str) -> None:
    scheduler = sched.get_scheduler()
    store = scheduler.admin.schedules
    row = store.get(name)
    if row is None:
        return
    if row.source != SOURCE_REGISTRY:
        _refuse_decorated(store, [name])
    managed = _registry(store, scheduler.admin.codec)
    managed.pop(name, None)
    scheduler.set_managed(list(managed.values()), SOURCE_REGISTRY)


def running_admin() -> ScheduleAdmin:
    return sched.get_scheduler().admin


def pause(name: str, client: DBOSClient | None = None) -> None:
    sched.pause_schedule(name, client=client)


def resume(name: str, client: DBOSClient | None = None) -> None:
    sched.resume_schedule(name, client=client)


def trigger(name: str, client: DBOSClient | None = None) -> str:
    admin = ScheduleAdmin.from_client(client) if client is not None else running_admin()
    _existing(admin, name)
    return sched.trigger_schedule(name, client=client)


def backfill(
    name: str, start: datetime, end: datetime, client: DBOSClient | None = None
) -> list[str]:
    """The ticks strictly between ``start`` and ``end``, as the reference counts them."""
    admin = ScheduleAdmin.from_client(client) if client is not None else running_admin()
    _existing(admin, name)
    if not isinstance(start, datetime) or not isinstance(end, datetime):
        raise DBOSInvalidArgumentError("backfill_schedule takes start and end datetimes")
    first, last = start + _ONE_MICROSECOND, end - _ONE_MICROSECOND
    if last < first:
        return []
    return sched.backfill_schedule(name, first, last, client=client)


# -- changing (a client: the database only) --------------------------------------------------------


def client_create(client: DBOSClient, definition: ScheduleDefinition) -> None:
    store = ScheduleStore(client.store)
    _refuse_duplicate(store, definition.name)
    store.register([definition.registration(SOURCE_REGISTRY, client.codec)])


def client_apply(client: DBOSClient, definitions: Sequence[ScheduleDefinition]) -> None:
    store = ScheduleStore(client.store)
    _refuse_decorated(store, (d.name for d in definitions))
    store.register([d.registration(SOURCE_REGISTRY, client.codec) for d in definitions])


def client_delete(client: DBOSClient, name: str) -> None:
    store = ScheduleStore(client.store)
    row = store.get(name)
    if row is None:
        return
    if row.source != SOURCE_REGISTRY:
        _refuse_decorated(store, [name])
    store.delete(name)
