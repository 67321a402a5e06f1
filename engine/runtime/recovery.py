"""Running PENDING workflows again from their rows: this executor's at launch, those taken over
from a dead executor, and released or claimed ones. Recorded steps replay, so only the step in
flight at the crash runs again."""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import logging
from typing import TYPE_CHECKING

from engine.runtime.registry import REGISTRY, RegisteredFunction
from engine.storage.store import StepRecord, WorkflowRow

if TYPE_CHECKING:
    from engine.runtime.executor import Runtime

logger = logging.getLogger("keeptime.engine")


def execute_existing(
    runtime: Runtime, row: WorkflowRow, recorded: dict[int, StepRecord] | None = None
) -> bool:
    """Run a PENDING workflow from its row, replaying recorded steps (``recorded``, when the
    caller loaded them already). False if its function or instance is unknown here."""
    fn = REGISTRY.find_workflow(row.name)
    if fn is None:
        logger.warning(
            "cannot run workflow %s: no workflow named %r is registered in this process",
            row.workflow_uuid,
            row.name,
        )
        return False
    instance = None
    if row.config_name is not None and row.class_name is not None:
        instance = REGISTRY.find_instance(row.class_name, row.config_name)
        if instance is None:
            logger.warning(
                "cannot run workflow %s: no %s instance with config_name %r exists",
                row.workflow_uuid,
                row.class_name,
                row.config_name,
            )
            return False
    inputs = runtime.codec.decode_inputs(row.inputs)
    if recorded is None:
        recorded = runtime.store.load_steps(row.workflow_uuid)
    runtime.submit(
        row.workflow_uuid,
        fn,
        instance,
        tuple(inputs["args"]),
        inputs["kwargs"],
        row.deadline_epoch_ms,
        recorded,
        row.authenticated_user,
    )
    return True


def recover_pending(runtime: Runtime, executor_ids: list[str] | None = None) -> list[str]:
    """Resume the PENDING workflows of ``executor_ids`` (by default, the runtime's own) of the
    current application version; returns the IDs started."""
    recovered: list[str] = []
    rows = runtime.store.pending_workflows(
        executor_ids or [runtime.executor_id], runtime.app_version
    )
    for row in rows:
        if runtime.runs_here(row.workflow_uuid):
            continue
        if restart(runtime, row):
            recovered.append(row.workflow_uuid)
    if recovered:
        logger.info("recovered %d pending workflow(s)", len(recovered))
    return recovered


def restart(runtime: Runtime, row: WorkflowRow) -> bool:
    """Count a recovery attempt (within the workflow's limit) and run it again if still
    PENDING."""
    fn = REGISTRY.find_workflow(row.name)
    limit = fn.max_recovery_attempts if fn is not None else None
    current = runtime.store.start_recovery_attempt(row.workflow_uuid, runtime.executor_id, limit)
    if current is None or current.status != "PENDING":
        return False
    return execute_existing(runtime, current)


def compute_app_version(workflows: list[RegisteredFunction]) -> str:
    """A hash of the workflow sources, so recovery never replays changed code."""
    digest = hashlib.sha256()
    for fn in sorted(workflows, key=lambda f: f.name):
        digest.update(fn.name.encode())
        with contextlib.suppress(OSError, TypeError):
            digest.update(inspect.getsource(fn.func).encode())
    return digest.hexdigest()[:32]
