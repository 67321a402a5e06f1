"""The scheduler: one thread and one timer heap for every ``@DBOS.scheduled`` workflow.

Each tick starts its workflow under a deterministic ID (``sched-<name>-<tick>``), so replicas
and restarts that reach the same tick run it once.
"""

from __future__ import annotations

import heapq
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from engine.core.cron import CronSchedule, tick_workflow_id
from engine.error import DBOSInvalidArgumentError
from engine.runtime.context import SetWorkflowID
from engine.runtime.registry import RegisteredFunction

if TYPE_CHECKING:
    from engine.runtime.executor import Runtime

logger = logging.getLogger("keeptime.engine")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class ScheduledWorkflow:
    name: str
    schedule: CronSchedule
    function: RegisteredFunction


_SCHEDULED: dict[str, ScheduledWorkflow] = {}
_LOCK = threading.Lock()


def scheduled_decorator(cron: str) -> Callable[[F], F]:
    schedule = CronSchedule.parse(cron)

    def decorate(func: F) -> F:
        fn = getattr(func, "__keeptime_function__", None)
        if not isinstance(fn, RegisteredFunction) or fn.kind != "workflow":
            raise DBOSInvalidArgumentError(
                "@DBOS.scheduled must be placed above @DBOS.workflow() "
                f"(on {getattr(func, '__qualname__', func)!r})"
            )
        with _LOCK:
            _SCHEDULED[fn.name] = ScheduledWorkflow(fn.name, schedule, fn)
        return func

    return decorate


def scheduled_workflows() -> list[ScheduledWorkflow]:
    with _LOCK:
        return list(_SCHEDULED.values())


def start(runtime: Runtime) -> None:
    if scheduled_workflows():
        runtime.spawn("keeptime-scheduler", lambda: _loop(runtime))


def fire(runtime: Runtime, item: ScheduledWorkflow, tick: datetime) -> str:
    """Start the run for one tick; a tick already started elsewhere runs nothing new."""
    workflow_id = tick_workflow_id(item.name, tick)
    actual = datetime.fromtimestamp(runtime.clock(), tz=UTC)
    with SetWorkflowID(workflow_id):
        runtime.start_background(item.function, None, (tick, actual), {})
    return workflow_id


def _loop(runtime: Runtime) -> None:
    now = datetime.fromtimestamp(runtime.clock(), tz=UTC)
    heap: list[tuple[datetime, str]] = []
    items = {s.name: s for s in scheduled_workflows()}
    for item in items.values():
        heapq.heappush(heap, (item.schedule.next_after(now), item.name))
    while heap and not runtime.stopping.is_set():
        tick, name = heap[0]
        wait = (tick - datetime.fromtimestamp(runtime.clock(), tz=UTC)).total_seconds()
        if wait > 0:
            runtime.stopping.wait(min(wait, 60.0))
            continue
        heapq.heappop(heap)
        item = items[name]
        try:
            fire(runtime, item, tick)
        except Exception:
            logger.exception("scheduled workflow %s failed to start for tick %s", name, tick)
        heapq.heappush(heap, (item.schedule.next_after(tick), name))
