"""``@DBOS.scheduled``: the decorated workflows of this process, and the running schedulers that
must hear when one is forgotten (tests). engine.runtime.scheduler installs them at launch."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from engine.core.catchup import CatchupPolicy, OverlapPolicy
from engine.core.cron import CronSchedule
from engine.error import DBOSInvalidArgumentError
from engine.runtime.registry import RegisteredFunction
from engine.runtime.schedule_admin import SOURCE_DECORATOR, ScheduleDefinition

__all__ = [
    "LIVE_SCHEDULERS",
    "clear_scheduled",
    "scheduled_decorator",
    "scheduled_definitions",
    "unregister_scheduled",
]

F = TypeVar("F", bound=Callable[..., Any])


class _Dropping(Protocol):
    def drop(self, name: str, source: str) -> None: ...


#: The running schedulers (each runtime also holds its own as ``runtime.scheduler``). Weak: a
#: destroyed runtime's scheduler goes with it.
LIVE_SCHEDULERS: weakref.WeakSet[_Dropping] = weakref.WeakSet()

_DECORATED: dict[str, ScheduleDefinition] = {}
_LOCK = threading.Lock()


def scheduled_decorator(cron: str) -> Callable[[F], F]:
    """``@DBOS.scheduled(cron)``: validated now (a bad crontab raises at decoration time)."""
    CronSchedule.parse(cron)

    def decorate(func: F) -> F:
        fn = getattr(func, "__keeptime_function__", None)
        if not isinstance(fn, RegisteredFunction) or fn.kind != "workflow":
            raise DBOSInvalidArgumentError(
                "@DBOS.scheduled must be placed above @DBOS.workflow() "
                f"(on {getattr(func, '__qualname__', func)!r})"
            )
        definition = ScheduleDefinition(
            name=fn.name,
            cron=cron,
            workflow_name=fn.name,
            catchup=CatchupPolicy.NONE,
            overlap=OverlapPolicy.ALLOW,
        )
        with _LOCK:
            _DECORATED[fn.name] = definition
        return func

    return decorate


def scheduled_definitions() -> list[ScheduleDefinition]:
    """The schedules of this process's ``@DBOS.scheduled`` workflows."""
    with _LOCK:
        return list(_DECORATED.values())


def unregister_scheduled(name: str) -> None:
    """Forget one ``@DBOS.scheduled`` workflow (tests); running schedulers drop it at once."""
    with _LOCK:
        _DECORATED.pop(name, None)
    for scheduler in list(LIVE_SCHEDULERS):
        scheduler.drop(name, SOURCE_DECORATOR)


def clear_scheduled() -> None:
    """Forget every ``@DBOS.scheduled`` workflow (tests)."""
    for definition in scheduled_definitions():
        unregister_scheduled(definition.name)
