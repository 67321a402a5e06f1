"""Background services started at launch (queue workers, the scheduler) and decorator helpers."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from engine.runtime import queue_worker, scheduled, scheduler

if TYPE_CHECKING:
    from engine.runtime.executor import Runtime

F = TypeVar("F", bound=Callable[..., Any])


def after_launch(runtime: Runtime) -> None:
    """Start the queue worker and the scheduler of a launched runtime."""
    queue_worker.start(runtime)
    scheduler.start(runtime)


def scheduled_decorator(cron: str) -> Callable[[F], F]:
    """``@DBOS.scheduled``'s decorator."""
    return scheduled.scheduled_decorator(cron)
