"""Background services started at launch (queue workers, the scheduler) and decorator helpers."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from engine.runtime.registry import REGISTRY, RegisteredFunction

if TYPE_CHECKING:
    from engine.runtime.executor import Runtime

F = TypeVar("F", bound=Callable[..., Any])
_TEMP_PREFIX = "<temp>."


def after_launch(runtime: Runtime) -> None:
    from engine.runtime import queue_worker, scheduler

    queue_worker.start(runtime)
    scheduler.start(runtime)
    if runtime.config.run_admin_server:
        from engine.admin import start_embedded

        start_embedded(runtime)


def scheduled_decorator(cron: str) -> Callable[[F], F]:
    from engine.runtime import scheduler

    return scheduler.scheduled_decorator(cron)


def step_as_workflow(step: RegisteredFunction) -> RegisteredFunction:
    """Starting or enqueueing a bare step runs it inside a one-step workflow."""
    name = _TEMP_PREFIX + step.name
    existing = REGISTRY.find(name)
    if existing is not None:
        return existing
    assert step.wrapper is not None
    wrapper = step.wrapper

    @functools.wraps(step.func)
    def run_step(*args: Any, **kwargs: Any) -> Any:
        return wrapper(*args, **kwargs)

    fn = RegisteredFunction(
        name=name, kind="workflow", func=run_step, is_async=step.is_async, class_name=None
    )
    REGISTRY.register(fn)
    return fn
