"""Work that no process would ever finish, resolved on purpose instead of left PENDING.

A restart resumes every run in flight (the daemon's application version is fixed, see
:data:`daemon.engine_setup.DEFAULT_APPLICATION_VERSION`), except runs whose workflow no longer
exists: the command or webhook workflow of a schedule or debouncer removed from the config (or
whose target changed), or a Python workflow whose code was deleted. Recovery skips those with a
warning and leaves them PENDING, where they would stay forever (and count as running for the
schedule's overlap policy, and toward a queue's concurrency). The daemon cancels each, with one
``workflow.orphaned`` WARNING naming the run, its workflow and why:

* at start, after the engine's recovery and before the schedules are applied, and then every
  :data:`SCAN_INTERVAL_SECONDS` (work taken over from a dead daemon, or a debounce window of a
  removed debouncer that fired, can become such a run later): PENDING runs of this executor
  and version whose workflow this process cannot run (``DBOS.list_unrecoverable_workflows``);
* after each apply of the config (start and reload): the ENQUEUED runs of each schedule the
  apply removed (held ticks of ``buffer_one``/``buffer_all``, ticks, triggers and backfills
  waiting on a queue). A removed schedule stops firing, and its waiting ticks go with it.

Runs of a removed schedule that were already running and whose workflow still exists (a Python
workflow target) are resumed and finish normally. ``keeptime workflows resume ID`` brings a
cancelled run back once its code is there again.

At start the daemon also warns once (``workflows.other_versions``) when PENDING or ENQUEUED runs
of other application versions exist: it neither recovers nor dequeues them. The warning gives
the commands that list them and act on them.
"""

from __future__ import annotations

import shlex
import threading
import urllib.parse
from collections.abc import Mapping
from typing import Any

from daemon.config_model import Config
from daemon.engine_setup import application_version
from daemon.logging import get_logger
from engine import DBOS, WorkflowStatus

__all__ = [
    "SCAN_INTERVAL_SECONDS",
    "OrphanScanner",
    "cancel_removed_schedule_work",
    "cancel_unrecoverable",
    "managed_schedule_workflows",
    "warn_other_versions",
]

#: How often the daemon looks for PENDING runs of its own that it cannot run.
SCAN_INTERVAL_SECONDS = 30.0

log = get_logger("keeptime.daemon")


def cancel_unrecoverable() -> list[str]:
    """Cancel this executor's PENDING runs whose workflow this process cannot run; their IDs."""
    cancelled = []
    for item in DBOS.list_unrecoverable_workflows():
        _cancel(item.status, f"it cannot be resumed: {item.reason}")
        cancelled.append(item.status.workflow_id)
    return cancelled


def managed_schedule_workflows() -> dict[str, str]:
    """``{schedule: workflow name}`` of the config's schedules now in the database."""
    return {
        s["schedule_name"]: s["workflow_name"]
        for s in DBOS.list_schedules()
        if s["source"] == "managed"
    }


def cancel_removed_schedule_work(before: Mapping[str, str], config: Config) -> list[str]:
    """Cancel the ENQUEUED runs of the schedules in ``before`` that ``config`` no longer has
    (``before``: :func:`managed_schedule_workflows` read before the apply); their IDs."""
    cancelled = []
    for name, workflow in sorted(before.items()):
        if name in config.schedules:
            continue
        prefix = f"sched-{name}-"
        waiting = DBOS.list_workflows(
            status="ENQUEUED",
            workflow_id_prefix=prefix,
            name=workflow,
            load_input=False,
            load_output=False,
        )
        for status in waiting:
            if _of_another_schedule(status.workflow_id, name, config):
                continue
            _cancel(
                status,
                f"schedule {name!r} was removed from the config, so this "
                f"{_waiting_kind(status)} of it never runs",
            )
            cancelled.append(status.workflow_id)
    return cancelled


def _of_another_schedule(workflow_id: str, removed: str, config: Config) -> bool:
    """Whether the ID is a run of a current schedule whose name extends ``removed`` with a
    dash (``sched-a-b-...`` is schedule ``a-b``'s, not ``a``'s)."""
    return any(
        other != removed and workflow_id.startswith(f"sched-{other}-")
        for other in config.schedules
        if other.startswith(f"{removed}-")
    )


def _waiting_kind(status: WorkflowStatus) -> str:
    queue = status.queue_name or ""
    if queue.startswith("_keeptime_hold:"):
        return "tick held by the overlap policy"
    return f"run waiting on queue {queue!r}"


def _cancel(status: WorkflowStatus, reason: str) -> None:
    DBOS.cancel_workflow(status.workflow_id)
    log.warning(
        "workflow.orphaned",
        workflow_id=status.workflow_id,
        workflow=status.name,
        previous_status=status.status,
        queue=status.queue_name,
        reason=reason,
        action="cancelled",
        hint="`keeptime workflows resume ID` runs it again once its workflow exists",
    )


class OrphanScanner:
    """A thread that runs :func:`cancel_unrecoverable` every :data:`SCAN_INTERVAL_SECONDS`.

    A thread of its own, so that a database outage never holds up the main loop's signals.
    """

    def __init__(self, interval: float = SCAN_INTERVAL_SECONDS) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="keeptime-orphans", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                cancel_unrecoverable()
            except Exception as exc:
                if self._stop.is_set():
                    return
                log.warning("orphans.scan_failed", error=f"{type(exc).__name__}: {exc}")


# -- other application versions --------------------------------------------------------------------


def warn_other_versions(config: Config, api_base: str | None) -> dict[str, int]:
    """Log one WARNING if PENDING or ENQUEUED runs of other application versions exist;
    returns ``{version: count}``."""
    counts = DBOS.count_other_version_workflows()
    if not counts:
        return counts
    mine = application_version(config)
    cfg = shlex.quote(str(config.source_path))
    fields: dict[str, Any] = {
        "application_version": mine,
        "versions": counts,
        "total": sum(counts.values()),
        "list_commands": [
            f"keeptime workflows list -c {cfg} --app-version {shlex.quote(v)} "
            "--status PENDING --status ENQUEUED"
            for v in counts
        ],
        "act_commands": [
            f"keeptime workflows cancel -c {cfg} ID",
            f"keeptime workflows fork -c {cfg} ID --step N --app-version {shlex.quote(mine)}",
        ],
    }
    if api_base is not None:
        fields["list_urls"] = [
            f"GET {api_base}/api/v1/workflows?"
            + urllib.parse.urlencode(
                [("app_version", v), ("status", "PENDING"), ("status", "ENQUEUED")]
            )
            for v in counts
        ]
        fields["act_urls"] = [
            f"POST {api_base}/api/v1/workflows/ID/cancel",
            f"POST {api_base}/api/v1/workflows/ID/resume",
            f'POST {api_base}/api/v1/workflows/ID/fork {{"start_step": N, '
            f'"application_version": "{mine}"}}',
        ]
    log.warning(
        "workflows.other_versions",
        **fields,
        hint=(
            f"this daemon runs application version {mine!r}: it neither resumes nor dequeues "
            "runs of other versions. A daemon of their version finishes them; otherwise cancel "
            "each, fork it onto this version from the step after its last recorded one "
            "(`keeptime workflows steps ID`), or cancel it and resume it through this daemon's "
            "HTTP API, which runs it here on the current code (see docs/operations.md, "
            "'Restarts and application versions')"
        ),
    )
    return counts
