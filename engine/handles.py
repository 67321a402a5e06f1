"""Workflow handles: what start_workflow, enqueue and retrieve_workflow return."""

from __future__ import annotations

import asyncio
from typing import Any, Generic, Protocol, TypeVar

from engine.runtime.management import SystemAccess, require_row, to_status
from engine.status import WorkflowStatus

R = TypeVar("R")


class HandleSource(SystemAccess, Protocol):
    """What a handle reads through: a launched runtime, or a ``DBOSClient``."""

    def wait_result(self, workflow_id: str, timeout: float | None = None) -> Any: ...


class WorkflowHandle(Generic[R]):
    """A handle to one workflow, as ``start_workflow``, ``enqueue`` and ``retrieve_workflow``
    return. It holds only the ID and reads the database on every call."""

    def __init__(self, runtime: HandleSource, workflow_id: str) -> None:
        self._runtime = runtime
        self.workflow_id = workflow_id

    def get_workflow_id(self) -> str:
        """The workflow's ID."""
        return self.workflow_id

    def get_result(self, *, polling_interval_sec: float | None = None) -> R:
        """Wait for the workflow to finish; return its result or raise its error.

        An error is re-raised with its original type; a cancelled (or timed-out) workflow raises
        DBOSAwaitedWorkflowCancelledError, and one that exhausted its recovery attempts
        DBOSAwaitedWorkflowMaxRecoveryAttemptsExceededError. Keeptime: ``polling_interval_sec`` is
        accepted and not used.
        """
        result: R = self._runtime.wait_result(self.workflow_id)
        return result

    def get_status(self) -> WorkflowStatus:
        """The workflow's current ``WorkflowStatus``. Raises DBOSNonExistentWorkflowError if it does
        not exist."""
        return to_status(require_row(self._runtime, self.workflow_id), self._runtime.codec)

    def __repr__(self) -> str:
        return f"WorkflowHandle({self.workflow_id!r})"


class WorkflowHandleAsync(Generic[R]):
    """``WorkflowHandle`` for coroutines, as the ``_async`` methods return: the same calls,
    awaited."""

    def __init__(self, runtime: HandleSource, workflow_id: str) -> None:
        self._runtime = runtime
        self.workflow_id = workflow_id

    def get_workflow_id(self) -> str:
        """The workflow's ID."""
        return self.workflow_id

    async def get_result(self, *, polling_interval_sec: float | None = None) -> R:
        """Async ``WorkflowHandle.get_result``: the same result, errors and unused
        ``polling_interval_sec``."""
        result: R = await asyncio.to_thread(self._runtime.wait_result, self.workflow_id)
        return result

    async def get_status(self) -> WorkflowStatus:
        """Async ``WorkflowHandle.get_status``."""
        return await asyncio.to_thread(
            lambda: to_status(require_row(self._runtime, self.workflow_id), self._runtime.codec)
        )

    def __repr__(self) -> str:
        return f"WorkflowHandleAsync({self.workflow_id!r})"


def result_of(handle: WorkflowHandle[Any]) -> Any:
    """``handle.get_result()`` as a plain function."""
    return handle.get_result()
