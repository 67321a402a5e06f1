"""The process-wide registry of workflow, step and transaction functions.

It outlives ``DBOS.destroy()`` on purpose: decorators run at import time, once, and a test that
destroys and recreates DBOS must still find the functions it decorated earlier.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.error import DBOSInvalidArgumentError, DBOSWorkflowFunctionNotFoundError

FunctionKind = Literal["workflow", "step", "transaction"]
#: Names of the one-step workflows that run a started or enqueued bare step.
STEP_WORKFLOW_PREFIX = "<temp>."


@dataclass(frozen=True)
class StepOptions:
    retries_allowed: bool = False
    interval_seconds: float = 1.0
    max_attempts: int = 3
    backoff_rate: float = 2.0


@dataclass
class RegisteredFunction:
    """One decorated function. ``func`` is the undecorated original."""

    name: str
    kind: FunctionKind
    func: Callable[..., Any]
    is_async: bool
    step_options: StepOptions = field(default_factory=StepOptions)
    isolation_level: str | None = None
    max_recovery_attempts: int | None = None
    class_name: str | None = None
    wrapper: Callable[..., Any] | None = None


class Registry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._functions: dict[str, RegisteredFunction] = {}
        self._instances: dict[tuple[str, str], Any] = {}
        self._classes: dict[str, type] = {}

    def register(self, fn: RegisteredFunction) -> None:
        with self._lock:
            self._functions[fn.name] = fn

    def find(self, name: str) -> RegisteredFunction | None:
        with self._lock:
            return self._functions.get(name)

    def find_workflow(self, name: str) -> RegisteredFunction | None:
        """The workflow called ``name``, if this process can run it. A ``<temp>.`` name (a bare
        step started or enqueued, maybe by another process) gets its one-step workflow built
        here when the step is registered, so recovery and takeover find it too."""
        fn = self.find(name)
        if fn is None and name.startswith(STEP_WORKFLOW_PREFIX):
            step = self.find(name[len(STEP_WORKFLOW_PREFIX) :])
            if step is not None and step.kind == "step":
                fn = self.step_workflow(step)
        return fn if fn is not None and fn.kind == "workflow" else None

    def step_workflow(self, step: RegisteredFunction) -> RegisteredFunction:
        """The one-step workflow that runs ``step`` when it is started or enqueued by itself."""
        name = STEP_WORKFLOW_PREFIX + step.name
        with self._lock:
            existing = self._functions.get(name)
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
        with self._lock:
            return self._functions.setdefault(name, fn)

    def require_workflow(self, name: str) -> RegisteredFunction:
        fn = self.find(name)
        if fn is None or fn.kind == "transaction":
            known = ", ".join(sorted(self.workflow_names())) or "none"
            raise DBOSWorkflowFunctionNotFoundError(
                f"no workflow named {name!r} is registered in this process (registered workflows: "
                f"{known}; decorate it with @DBOS.workflow() and import its module before launch)"
            )
        return fn

    def workflow_names(self) -> list[str]:
        with self._lock:
            return [n for n, f in self._functions.items() if f.kind == "workflow"]

    def step_names(self) -> list[str]:
        with self._lock:
            return [n for n, f in self._functions.items() if f.kind == "step"]

    def workflows(self) -> list[RegisteredFunction]:
        with self._lock:
            return [f for f in self._functions.values() if f.kind == "workflow"]

    def register_class(self, cls: type) -> None:
        with self._lock:
            self._classes[cls.__qualname__] = cls

    def register_instance(self, class_name: str, config_name: str, instance: Any) -> None:
        with self._lock:
            self._instances[(class_name, config_name)] = instance

    def find_instance(self, class_name: str, config_name: str) -> Any | None:
        with self._lock:
            return self._instances.get((class_name, config_name))


REGISTRY = Registry()


def qualified_name(func: Callable[..., Any]) -> str:
    """The name stored with each workflow and step: the function's qualified name."""
    return getattr(func, "__qualname__", getattr(func, "__name__", repr(func)))


def is_coroutine_function(func: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(func)


def owning_class_name(func: Callable[..., Any]) -> str | None:
    """For a method defined in a class body, the class's qualified name (from ``__qualname__``)."""
    qualname = qualified_name(func)
    if "." not in qualname:
        return None
    owner = qualname.rsplit(".", 1)[0]
    return None if owner.endswith("<locals>") else owner


def startable_function(func: Callable[..., Any]) -> RegisteredFunction:
    """The workflow that starting or enqueueing ``func`` runs: its own, or a one-step workflow
    for a bare step. Raises DBOSInvalidArgumentError for anything else."""
    fn = getattr(func, "__keeptime_function__", None)
    if fn is None:
        fn = getattr(getattr(func, "__func__", None), "__keeptime_function__", None)
    if not isinstance(fn, RegisteredFunction) or fn.kind == "transaction":
        raise DBOSInvalidArgumentError(
            f"{qualified_name(func)!r} is not a workflow or step (decorate it with "
            "@DBOS.workflow() or @DBOS.step())"
        )
    return REGISTRY.step_workflow(fn) if fn.kind == "step" else fn
