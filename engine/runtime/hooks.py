"""Background services started at launch (queue workers, the scheduler) and decorator helpers."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from engine.runtime import queue_worker, scheduled, scheduler

if TYPE_CHECKING:
    from engine.runtime.executor import Runtime

F = TypeVar("F", bound=Callable[..., Any])


def after_launch(runtime: Runtime) -> None:
    queue_worker.start(runtime)
    scheduler.start(runtime)
    if runtime.config.run_admin_server:
        # Imported only when asked for: the HTTP stack is the heaviest import of the engine.
        from engine.admin import start_embedded

        start_embedded(runtime)


def scheduled_decorator(cron: str) -> Callable[[F], F]:
    return scheduled.scheduled_decorator(cron)
