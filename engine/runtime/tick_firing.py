"""Firing schedule ticks: what a due tick does, and starting the runs of a pass together.

The scheduler (``engine.runtime.scheduler``) decides *when* a tick is due; this module decides
*what* it does: nothing if its schedule is paused or the tick was handled already (by another
process, or before a restart), otherwise what the overlap policy says about the previous run
(start, skip, hold or cancel and start). A run starts under the tick's deterministic ID, so two
daemons on one database start it once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from engine.core.catchup import Overlap, OverlapPolicy, overlap_action
from engine.core.cron import tick_workflow_id
from engine.error import DBOSStorageError
from engine.runtime import queue_worker
from engine.runtime.context import SetWorkflowID, SetWorkflowTimeout
from engine.runtime.registry import REGISTRY
from engine.runtime.schedule_admin import ScheduleDefinition
from engine.runtime.starting import PreparedStart, QueuePlacement, StartRequest, prepare_start
from engine.storage.schedules import FiredTick, ScheduleStore, TickState, hold_queue_name
from engine.storage.store import WorkflowRow

if TYPE_CHECKING:
    from engine.runtime.executor import Runtime

logger = logging.getLogger("keeptime.engine")

#: A prepared tick fired later than planned by more than this is decided afresh, so that its
#: ``actual_time`` and its state are current.
PREPARED_SLACK_SECONDS = 0.01


@dataclass
class ScheduleEntry:
    """A schedule installed in the scheduler; a new generation voids the timers of the old."""

    definition: ScheduleDefinition
    source: str
    generation: int


@dataclass(slots=True)
class PreparedTick:
    """A tick decided ahead of time (overlap ``allow`` only: other policies depend on the
    previous run, so they are decided when the tick is due)."""

    planned_at: float
    fired: FiredTick | None  # None: paused, or handled already
    start: PreparedStart | None


#: A tick due now: its schedule, its nominal time, and its decision made ahead (or None).
DueTick = tuple[ScheduleEntry, datetime, PreparedTick | None]


class TickFiring:
    """Decides the ticks of one scheduler and starts their runs.

    ``hold`` tells the scheduler that a schedule holds a buffered tick now (it then watches the
    previous run to release it); ``failed`` that these schedules' ticks may not have started
    (they catch up from their watermarks once the database answers).
    """

    def __init__(
        self,
        runtime: Runtime,
        schedules: ScheduleStore,
        hold: Callable[[str], None],
        failed: Callable[[list[ScheduleEntry]], None],
    ) -> None:
        self.runtime = runtime
        self.schedules = schedules
        self._hold = hold
        self._failed = failed
        self._stale_after_ms = int(runtime.config.executor_timeout_sec * 1000)
        self._warned_runs: dict[str, str | None] = {}  # schedule -> stale run already logged

    def forget(self, name: str) -> None:
        """The schedule was removed: forget what was logged about it."""
        self._warned_runs.pop(name, None)

    def fire(self, due: list[DueTick], now: float) -> None:
        """Fire every due tick, and start the runs together: one commit for a thousand ticks of
        the same second instead of a thousand. Most were prepared ahead of time."""
        fired: list[FiredTick] = []
        starts: list[PreparedStart] = []
        undecided: list[tuple[ScheduleEntry, datetime]] = []
        for entry, tick, plan in due:
            if plan is None or now - plan.planned_at > PREPARED_SLACK_SECONDS:
                undecided.append((entry, tick))
                continue
            if plan.fired is not None:
                fired.append(plan.fired)
            if plan.start is not None:
                starts.append(plan.start)
        if undecided:
            self._decide_now(undecided, fired, starts)
        if starts:
            self.runtime.start_many(starts)
            if any(start.request.queue is not None for start in starts):
                wake_queues(self.runtime)
        self.schedules.record_fired(fired)

    def _decide_now(
        self,
        due: list[tuple[ScheduleEntry, datetime]],
        fired: list[FiredTick],
        starts: list[PreparedStart],
    ) -> None:
        """Decide ticks at the moment they are due (overlap policies, late or new timers)."""
        states = self.schedules.tick_states({e.definition.name for e, _ in due})
        requests: list[StartRequest] = []
        for entry, tick in due:
            name = entry.definition.name
            state = states.get(name)
            if state is None:
                continue  # deleted from the database (another daemon's set_schedules)
            try:
                outcome = self.decide(entry.definition, tick, state, requests)
            except Exception as exc:
                logger.exception("schedule %s: tick %s failed to start", name, tick.isoformat())
                if isinstance(exc, DBOSStorageError):
                    self._failed([entry])  # caught up once it answers
                continue
            if outcome is not None:
                fired.append(outcome)
                if outcome.workflow_id is not None:
                    # The run started here: the next tick of this pass sees it running.
                    states[name] = TickState(
                        state.paused,
                        outcome.tick_ms,
                        outcome.workflow_id,
                        "PENDING",
                        last_executor=self.runtime.executor_id,
                        last_version=self.runtime.app_version,
                    )
        starts.extend(prepare_start(self.runtime, request) for request in requests)

    def prepare(
        self,
        definition: ScheduleDefinition,
        tick: datetime,
        state: TickState,
        actual: datetime,
        planned_at: float,
    ) -> PreparedTick:
        """Decide an ``allow`` tick ahead (its decision has no side effects: no hold, no
        cancel) and encode its run's inputs."""
        requests: list[StartRequest] = []
        fired = self.decide(definition, tick, state, requests, actual)
        start = prepare_start(self.runtime, requests[0]) if requests else None
        return PreparedTick(planned_at, fired, start)

    def decide(
        self,
        definition: ScheduleDefinition,
        tick: datetime,
        state: TickState,
        starts: list[StartRequest],
        actual: datetime | None = None,
    ) -> FiredTick | None:
        """Decide one tick; a run to start now is appended to ``starts`` (``actual``: its
        ``actual_time``, by default now)."""
        tick_ms = tick_epoch_ms(tick)
        if state.paused or definition.paused:
            return None
        if state.last_tick_ms is not None and state.last_tick_ms >= tick_ms:
            return None  # handled already, by another process or before a restart
        workflow_id = tick_workflow_id(definition.name, tick)
        policy = definition.overlap_policy
        held = 0
        if policy in (OverlapPolicy.BUFFER_ONE, OverlapPolicy.BUFFER_ALL):
            held = self.schedules.held_count(definition.name)
        # `allow` never looks at the previous run (and prepared ticks are all `allow`).
        running = policy is not OverlapPolicy.ALLOW and self.still_running(definition.name, state)
        action = overlap_action(policy, running, held)
        if action is Overlap.SKIP:
            logger.info("schedule %s: skipped tick %s (overlap)", definition.name, tick)
            return FiredTick(definition.name, tick_ms, None)
        if action is Overlap.HOLD:
            self.start_run(definition, workflow_id, tick, hold_queue_name(definition.name))
            self._hold(definition.name)
            return FiredTick(definition.name, tick_ms, None)
        if action is Overlap.CANCEL_AND_START and state.last_workflow_id is not None:
            self.runtime.cancel(state.last_workflow_id)
        starts.append(
            self._start_request(definition, workflow_id, tick, definition.queue_name, actual)
        )
        return FiredTick(definition.name, tick_ms, workflow_id)

    def still_running(self, name: str, state: TickState) -> bool:
        """Whether the schedule's previous run still goes, for its overlap policy. A run that no
        live executor would finish is not waited on, with a warning once per run."""
        if not state.unfinished:
            return False
        running, reason = state.previous_run(
            now_ms=self.runtime.now_ms(),
            stale_after_ms=self._stale_after_ms,
            me=self.runtime.executor_id,
            my_version=self.runtime.app_version,
        )
        if reason is not None and self._warned_runs.get(name) != state.last_workflow_id:
            self._warned_runs[name] = state.last_workflow_id
            logger.warning(
                "schedule %s: not waiting on its previous run %s (executor %s): %s; the "
                "overlap policy treats it as finished",
                name,
                state.last_workflow_id,
                state.last_executor,
                reason,
                extra={
                    "schedule": name,
                    "workflow_id": state.last_workflow_id,
                    "executor_id": state.last_executor,
                    "reason": reason,
                },
            )
        return running

    def _start_request(
        self,
        definition: ScheduleDefinition,
        workflow_id: str,
        tick: datetime,
        queue: str | None,
        actual: datetime | None = None,
    ) -> StartRequest:
        args, kwargs = definition.tick_inputs(tick, actual or now_utc(self.runtime))
        return StartRequest(
            REGISTRY.require_workflow(definition.workflow_name),
            workflow_id,
            args,
            kwargs,
            definition.timeout_seconds,
            None if queue is None else QueuePlacement(queue),
        )

    def start_run(
        self, definition: ScheduleDefinition, workflow_id: str, tick: datetime, queue: str | None
    ) -> None:
        """Start one run now (a held tick, a trigger), with the ID checks of a single start."""
        run = self._start_request(definition, workflow_id, tick, queue)
        with SetWorkflowID(workflow_id), SetWorkflowTimeout(definition.timeout_seconds):
            if run.queue is None:
                self.runtime.start_background(run.fn, None, run.args, run.kwargs)
                return
            self.runtime.plan(run.fn, None, run.args, run.kwargs, run.queue)
        wake_queues(self.runtime)

    def run_released(self, row: WorkflowRow) -> None:
        """Run a held tick or a debounce window's run once released: here, or by the queues."""
        if row.status == "PENDING":
            self.runtime.execute_existing(row)
        else:
            wake_queues(self.runtime)


def tick_epoch_ms(tick: datetime) -> int:
    """A tick as the epoch milliseconds its watermark and ledger store."""
    return int(tick.timestamp() * 1000)


def now_utc(runtime: Runtime) -> datetime:
    """The runtime's clock as an aware UTC datetime."""
    return datetime.fromtimestamp(runtime.clock(), tz=UTC)


def wake_queues(runtime: Runtime) -> None:
    """Runs were enqueued here: the queue worker looks at once rather than at its next poll."""
    queue_worker.wake(runtime)
