"""Which runtime a call works on: the calling workflow's, or else the one ``DBOS`` launched.

``DBOS`` installs its runtime here at launch and clears it at destroy; the facades that act on
"the launched DBOS" (``Queue.enqueue``, ``Debouncer.debounce``, the admin routes) ask
:func:`current_runtime` instead of reaching into ``engine.dbos``.
"""

from __future__ import annotations

import threading

from engine.error import DBOSNotLaunchedError, DBOSWorkflowCancelledError
from engine.runtime.context import current_workflow
from engine.runtime.executor import Runtime

__all__ = ["LAUNCHED", "Launched", "current_runtime"]


class Launched:
    """Holds the launched runtime of this process (at most one at a time)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runtime: Runtime | None = None

    def install(self, runtime: Runtime) -> None:
        with self._lock:
            self._runtime = runtime

    def clear(self, runtime: Runtime) -> None:
        """Forget ``runtime`` unless another one was installed since."""
        with self._lock:
            if self._runtime is runtime:
                self._runtime = None

    def get(self) -> Runtime | None:
        return self._runtime


LAUNCHED = Launched()


def current_runtime() -> Runtime:
    """The runtime of the calling workflow, or else the launched one.

    Raises DBOSNotLaunchedError outside a workflow when nothing is launched, and
    DBOSWorkflowCancelledError inside a workflow whose runtime was destroyed.
    """
    ctx = current_workflow()
    if ctx is not None and isinstance(ctx.runtime, Runtime):
        if ctx.runtime.stopping.is_set():
            raise DBOSWorkflowCancelledError(
                f"workflow {ctx.workflow_id!r} stopped: its DBOS instance was destroyed"
            )
        return ctx.runtime
    runtime = LAUNCHED.get()
    if runtime is None:
        raise DBOSNotLaunchedError(
            "DBOS is not launched (configure it with DBOS(config=...) and call DBOS.launch() first)"
        )
    return runtime
