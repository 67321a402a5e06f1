"""The scheduler: one thread and one timer heap for every schedule and debounce window.

Each tick starts its workflow under a deterministic ID (``sched-<name>-<tick>``), so replicas
and restarts that reach the same tick run it once. A durable watermark per schedule (the last
nominal tick handled) drives catch-up after every gap in firing (downtime, a failed pass, a
stall) and tells a lagging replica that a tick was already handled. The thread sleeps until the
earliest timer; ``set_schedules``, local debounce calls and shutdown wake it. See
docs/scheduling.md and docs/debouncing.md.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from engine.core.catchup import (
    CatchupPlan,
    Overlap,
    OverlapPolicy,
    fell_behind,
    overlap_action,
    plan_catchup,
)
from engine.core.cron import deterministic_jitter, tick_workflow_id
from engine.error import DBOSInvalidArgumentError, DBOSNotLaunchedError, DBOSStorageError
from engine.runtime import queue_worker
from engine.runtime.context import SetWorkflowID, SetWorkflowTimeout
from engine.runtime.registry import REGISTRY
from engine.runtime.schedule_admin import (
    SOURCE_DECORATOR,
    SOURCE_MANAGED,
    SOURCE_REGISTRY,
    ScheduleAdmin,
    ScheduleDefinition,
    ScheduleState,
    trigger_workflow_id,
)
from engine.runtime.scheduled import (
    LIVE_SCHEDULERS,
    clear_scheduled,
    scheduled_definitions,
    unregister_scheduled,
)
from engine.runtime.starting import (
    PreparedStart,
    QueuePlacement,
    StartRequest,
    prepare_start,
)
from engine.storage.database import is_outage
from engine.storage.debounce import DebounceStore
from engine.storage.schedules import FiredTick, ScheduleStore, TickState, hold_queue_name
from engine.storage.store import WorkflowRow

if TYPE_CHECKING:
    from engine.client import DBOSClient
    from engine.runtime.executor import Runtime

__all__ = [
    "ScheduleAdmin",
    "ScheduleDefinition",
    "ScheduleState",
    "backfill_schedule",
    "clear_scheduled",
    "get_scheduler",
    "next_fire_times",
    "pause_schedule",
    "resume_schedule",
    "schedule_state",
    "schedule_states",
    "set_schedules",
    "trigger_schedule",
    "unregister_scheduled",
]

logger = logging.getLogger("keeptime.engine")
F = TypeVar("F", bound=Callable[..., Any])

#: How often windows opened by other processes (or before a restart) are looked for.
DEBOUNCE_POLL_SECONDS = 1.0
#: How often the scheduler re-reads the registry schedules (DBOS.create_schedule and friends), so
#: that changes made by a client or another process take effect here.
REGISTRY_SYNC_SECONDS = 2.0
#: While a schedule has buffered ticks, how often its previous run is checked for completion
#: (local completions wake the scheduler at once).
HOLD_RECHECK_SECONDS = 0.5
#: Ticks are prepared (state read, inputs encoded) this long before they are due, so that at
#: the tick only the rows, the insert and the start remain. The lead is twice what preparing
#: every schedule at once would take (the worst burst), measured per tick, within these bounds.
MIN_PREPARE_LEAD_SECONDS = 0.05
MAX_PREPARE_LEAD_SECONDS = 1.0
_INITIAL_PREPARE_SECONDS_PER_TICK = 50e-6
#: A prepared tick fired later than planned by more than this is decided afresh, so that its
#: ``actual_time`` and its state are current.
PREPARED_SLACK_SECONDS = 0.01
_ERROR_BACKOFF_SECONDS = 1.0

#: Why a schedule catches up (the ``cause`` of its log line): it was not running (a start, a new
#: definition), its ticks came due while a pass failed (the database was unreachable), or the
#: process fell behind by more than an interval (a stall, a suspended VM).
CAUSE_DOWNTIME = "downtime"
CAUSE_FAILED_PASS = "failed pass"
CAUSE_STALL = "stall"


# -- the scheduler --------------------------------------------------------------------------------


@dataclass
class _Entry:
    definition: ScheduleDefinition
    source: str
    generation: int


@dataclass(order=True)
class _Timer:
    at: float  # epoch seconds on the runtime's clock
    seq: int
    kind: str = field(compare=False)  # "tick" or "debounce"
    key: tuple[str, str] = field(compare=False)  # (schedule, "") or (namespace, key)
    generation: int = field(compare=False, default=0)
    tick: datetime | None = field(compare=False, default=None)
    regular: bool = field(compare=False, default=False)  # a catch-up timer does not re-arm


@dataclass(slots=True)
class _PreparedTick:
    """A tick decided ahead of time (overlap ``allow`` only: other policies depend on the
    previous run, so they are decided when the tick is due)."""

    planned_at: float
    fired: FiredTick | None  # None: paused, or handled already
    start: PreparedStart | None


_Due = tuple[_Entry, datetime, int]  # (schedule, nominal tick, timer seq)


class Scheduler:
    """The one scheduler of a runtime: schedule ticks, debounce deadlines and buffered ticks."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.schedules = ScheduleStore(runtime.store)
        self.debounces = DebounceStore(runtime.store)
        self.admin = ScheduleAdmin(runtime.store, runtime.codec, runtime.clock)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._entries: dict[str, _Entry] = {}
        self._heap: list[_Timer] = []
        self._seq = itertools.count()
        self._generations = itertools.count(1)
        self._holding: set[str] = set()
        self._next_debounce_poll = 0.0  # monotonic
        self._next_registry_sync = 0.0  # monotonic
        # Timers looked at ahead of time, by seq: a prepared tick, or None (decide when due).
        self._prepared: dict[int, _PreparedTick | None] = {}
        self._prepare_cost = _INITIAL_PREPARE_SECONDS_PER_TICK  # measured per tick
        # Schedules whose timers stopped at a gap in firing, with its cause: they catch up from
        # their durable watermarks (not before _catch_up_after, monotonic, after a failure).
        self._behind: dict[str, tuple[_Entry, str]] = {}
        self._catch_up_after = 0.0
        self._catch_up_waiting = False  # the database did not answer: said once per outage
        self._stale_after_ms = int(runtime.config.executor_timeout_sec * 1000)
        self._warned_runs: dict[str, str | None] = {}  # schedule -> stale run already logged

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        decorated = scheduled_definitions()
        self.schedules.register(
            [d.registration(SOURCE_DECORATOR, self.runtime.codec) for d in decorated]
        )
        self._install(decorated, SOURCE_DECORATOR)
        self._sync_registry()
        self.runtime.stop_listeners.append(self.wake)
        self.runtime.finish_listeners.append(self._on_finish)
        self.runtime.scheduler = self
        LIVE_SCHEDULERS.add(self)
        self.runtime.spawn("keeptime-scheduler", self.run)

    def wake(self) -> None:
        self._wake.set()

    def _on_finish(self, workflow_id: str) -> None:
        if self._holding:
            self._wake.set()

    def run(self) -> None:
        try:
            outage = False
            while not self.runtime.stopping.is_set():
                try:
                    wait = self.run_once()
                    outage = False
                except Exception as exc:
                    if not is_outage(exc):
                        logger.exception("scheduler pass failed; retrying")
                    elif not outage:  # the storage layer warns of the outage itself
                        outage = True
                        logger.info(
                            "scheduler paused by the database outage; missed ticks follow each "
                            "schedule's catch-up policy once it is back"
                        )
                    wait = _ERROR_BACKOFF_SECONDS
                self._wake.wait(wait)
                self._wake.clear()
        finally:
            LIVE_SCHEDULERS.discard(self)

    # -- definitions ------------------------------------------------------------------------------

    def set_managed(
        self, definitions: Sequence[ScheduleDefinition], source: str = SOURCE_MANAGED
    ) -> None:
        """Store ``definitions`` as the whole set of ``source`` and install them."""
        names = [d.name for d in definitions]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise DBOSInvalidArgumentError(f"schedule names must be unique; repeated: {duplicates}")
        with self._lock:
            taken = sorted(
                n for n in names if (e := self._entries.get(n)) and e.source == SOURCE_DECORATOR
            )
        if taken:
            raise DBOSInvalidArgumentError(
                f"schedule names {taken} are used by @DBOS.scheduled workflows; rename them"
            )
        codec = self.runtime.codec
        self.schedules.register(
            [d.registration(source, codec) for d in definitions], replace_source=source
        )
        self._reconcile(definitions, source)

    def _reconcile(self, definitions: Sequence[ScheduleDefinition], source: str) -> None:
        """Make the installed schedules of ``source`` these (timers of unchanged ones kept)."""
        with self._lock:
            current = {n: e for n, e in self._entries.items() if e.source == source}
        for name in current.keys() - {d.name for d in definitions}:
            self.drop(name, source)
        changed = [
            d for d in definitions if (old := current.get(d.name)) is None or old.definition != d
        ]
        self._install(changed, source)
        self.wake()

    def _sync_registry(self) -> None:
        """Install the registry schedules as stored: those created before this launch, and
        changes made by clients or other processes (at most REGISTRY_SYNC_SECONDS late)."""
        self._next_registry_sync = time.monotonic() + REGISTRY_SYNC_SECONDS
        codec = self.runtime.codec
        stored = [
            ScheduleDefinition.from_row(row, codec)
            for row in self.schedules.list_all(SOURCE_REGISTRY)
        ]
        self._reconcile(stored, SOURCE_REGISTRY)

    def managed(self) -> list[ScheduleDefinition]:
        with self._lock:
            return [e.definition for e in self._entries.values() if e.source == SOURCE_MANAGED]

    def drop(self, name: str, source: str) -> None:
        with self._lock:
            entry = self._entries.get(name)
            if entry is not None and entry.source == source:
                del self._entries[name]
                self._holding.discard(name)
                self._behind.pop(name, None)
                self._warned_runs.pop(name, None)

    def _install(self, definitions: Sequence[ScheduleDefinition], source: str) -> None:
        """Add or replace schedules: each catches up the gap since its watermark (the downtime
        before this start or this definition), then fires its regular ticks."""
        if not definitions:
            return
        states = self.schedules.tick_states((d.name for d in definitions), previous_runs=False)
        now = self._now()
        for definition in definitions:
            self._arm(definition, source, states.get(definition.name), now, CAUSE_DOWNTIME)

    def _arm(
        self,
        definition: ScheduleDefinition,
        source: str,
        state: TickState | None,
        now: datetime,
        cause: str,
        replacing: _Entry | None = None,
    ) -> None:
        """(Re)start a schedule's timers at ``now``: the ticks its catch-up policy picks from the
        gap since its watermark fire at once, then regular ticks from ``now`` on (never a burst
        of every missed tick). With ``replacing``, only if that entry is still the current one.
        """
        watermark = None if state is None or state.last_tick_ms is None else state.last_tick_ms
        plan = plan_catchup(
            definition.schedule,
            None if watermark is None else datetime.fromtimestamp(watermark / 1000, tz=UTC),
            now,
            definition.catchup_policy,
            definition.catchup_window,
            definition.max_catchup_count,
            paused=definition.paused or (state is not None and state.paused),
        )
        name = definition.name
        with self._lock:
            if replacing is not None and self._entries.get(name) is not replacing:
                return  # dropped or redefined meanwhile: that path armed it
            entry = _Entry(definition, source, next(self._generations))
            self._entries[name] = entry  # a new generation: the old timers are void
            for tick in plan.run:
                self._push("tick", (name, ""), now.timestamp(), entry.generation, tick)
            self._push_next_tick(entry, now)
            if definition.overlap_policy in (OverlapPolicy.BUFFER_ONE, OverlapPolicy.BUFFER_ALL):
                self._holding.add(name)  # pick up ticks buffered before a restart
        _log_plan(name, plan, cause)

    def _push(
        self,
        kind: str,
        key: tuple[str, str],
        at: float,
        generation: int = 0,
        tick: datetime | None = None,
        regular: bool = False,
    ) -> None:
        timer = _Timer(at, next(self._seq), kind, key, generation, tick, regular)
        heapq.heappush(self._heap, timer)

    def _push_next_tick(self, entry: _Entry, after: datetime) -> None:
        definition = entry.definition
        tick = definition.schedule.next_after(after)
        delay = deterministic_jitter(definition.name, tick, definition.jitter_seconds)
        at = tick.timestamp() + delay
        self._push("tick", (definition.name, ""), at, entry.generation, tick, regular=True)

    # -- the loop ---------------------------------------------------------------------------------

    def run_once(self) -> float | None:
        """Handle everything due now; returns seconds until the next timer (None: none)."""
        now = self.runtime.clock()
        ticks, windows, rearm = self._pop_due(now)
        try:
            if ticks:
                self._fire_ticks(ticks)
        except Exception:
            # Ticks of this pass may not have started: they are caught up from the watermarks
            # once the database answers, instead of being lost.
            self._fall_behind([entry for entry, _, _ in ticks], CAUSE_FAILED_PASS)
            raise
        finally:
            self._rearm(rearm)  # after firing: next-tick math for a thousand schedules takes ms
        self._catch_up()
        for namespace, key in windows:
            self._fire_window(namespace, key)
        if time.monotonic() >= self._next_debounce_poll:
            self._poll_windows()
            self._next_debounce_poll = time.monotonic() + DEBOUNCE_POLL_SECONDS
        if time.monotonic() >= self._next_registry_sync:
            self._sync_registry()
        if self._holding:
            self._release_holds()
        self._prepare_upcoming()
        return self._seconds_to_next(self.runtime.clock())

    def _pop_due(self, now: float) -> tuple[list[_Due], list[tuple[str, str]], list[_Due]]:
        """Timers due now: ticks to fire, debounce windows, and regular ticks to re-arm. A
        regular tick late by more than its interval marks its schedule behind instead."""
        ticks: list[_Due] = []
        windows: list[tuple[str, str]] = []
        rearm: list[_Due] = []
        with self._lock:
            while self._heap and self._heap[0].at <= now:
                timer = heapq.heappop(self._heap)
                if timer.kind == "debounce":
                    windows.append(timer.key)
                    continue
                entry = self._live_entry(timer)
                if entry is None or timer.tick is None:
                    self._prepared.pop(timer.seq, None)
                    continue  # the schedule was removed or replaced
                if timer.regular and fell_behind(
                    entry.definition.schedule, timer.tick, now - timer.at
                ):
                    self._prepared.pop(timer.seq, None)
                    self._behind.setdefault(entry.definition.name, (entry, CAUSE_STALL))
                    continue
                due = (entry, timer.tick, timer.seq)
                ticks.append(due)
                if timer.regular:
                    rearm.append(due)
        return ticks, windows, rearm

    def _live_entry(self, timer: _Timer) -> _Entry | None:
        entry = self._entries.get(timer.key[0])
        return entry if entry is not None and entry.generation == timer.generation else None

    def _rearm(self, fired: list[_Due]) -> None:
        with self._lock:
            for entry, tick, _ in fired:
                name = entry.definition.name
                if self._entries.get(name) is entry and name not in self._behind:
                    self._push_next_tick(entry, tick)

    def _fall_behind(self, entries: list[_Entry], cause: str) -> None:
        """Stop these schedules' timers: they catch up from their watermarks after a backoff."""
        with self._lock:
            for entry in entries:
                name = entry.definition.name
                if self._entries.get(name) is entry:
                    self._behind.setdefault(name, (entry, cause))
            self._catch_up_after = time.monotonic() + _ERROR_BACKOFF_SECONDS

    def _catch_up(self) -> None:
        """Catch up the schedules that fell behind, from their durable watermarks, with the same
        policy as at a start, as soon as the database answers; their regular timers restart
        from now. One query for all of them."""
        with self._lock:
            if not self._behind or time.monotonic() < self._catch_up_after:
                return
            behind = dict(self._behind)
        try:
            states = self.schedules.tick_states(behind, previous_runs=False)
        except Exception as exc:
            self._catch_up_after = time.monotonic() + _ERROR_BACKOFF_SECONDS
            if not self._catch_up_waiting:
                self._catch_up_waiting = True
                logger.warning(
                    "%d schedule(s) fell behind; their catch-up waits for the database (%s)",
                    len(behind),
                    exc,
                )
            return
        self._catch_up_waiting = False
        now = self._now()
        for name, (entry, cause) in behind.items():
            self._arm(entry.definition, entry.source, states.get(name), now, cause, entry)
        with self._lock:
            for name, (entry, _) in behind.items():
                if name in self._behind and self._behind[name][0] is entry:
                    del self._behind[name]

    def _seconds_to_next(self, now: float) -> float:
        waits = [DEBOUNCE_POLL_SECONDS]
        with self._lock:
            if self._heap:
                first = self._heap[0]
                looked_at = first.kind != "tick" or first.seq in self._prepared
                waits.append(first.at - now - (0.0 if looked_at else self._lead()))
            if self._holding:
                waits.append(HOLD_RECHECK_SECONDS)
            if self._behind:
                waits.append(self._catch_up_after - time.monotonic())
        return max(0.0, min(waits))

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.runtime.clock(), tz=UTC)

    # -- ticks ------------------------------------------------------------------------------------

    def _prepare_upcoming(self) -> None:
        """Decide the ticks due within the lead and encode their inputs now, ahead of the tick."""
        now = self.runtime.clock()
        upcoming: list[tuple[_Entry, _Timer]] = []
        with self._lock:
            soon = []
            lead = self._lead()
            while self._heap and self._heap[0].at <= now + lead:
                soon.append(heapq.heappop(self._heap))
            for timer in soon:
                heapq.heappush(self._heap, timer)
                if timer.kind != "tick" or timer.seq in self._prepared:
                    continue
                entry = self._live_entry(timer)
                self._prepared[timer.seq] = None  # until prepared below: decide when due
                if entry is not None and entry.definition.overlap_policy is OverlapPolicy.ALLOW:
                    upcoming.append((entry, timer))
        if not upcoming:
            return
        began = time.monotonic()
        try:
            names = {e.definition.name for e, _ in upcoming}
            states = self.schedules.tick_states(names, previous_runs=False)  # all `allow`
        except Exception:
            logger.warning("could not prepare upcoming ticks; deciding when due", exc_info=True)
            return
        prepared: dict[int, _PreparedTick | None] = {}
        for entry, timer in upcoming:
            state = states.get(entry.definition.name)
            if state is None or timer.tick is None:
                continue
            planned_at = max(timer.at, now)
            actual = datetime.fromtimestamp(planned_at, tz=UTC)
            try:
                prepared[timer.seq] = self._prepare_tick(
                    entry.definition, timer.tick, state, actual, planned_at
                )
            except Exception:
                continue  # left to be decided when due, where the failure is logged
        self._prepare_cost = (time.monotonic() - began) / len(upcoming)
        with self._lock:
            self._prepared.update(prepared)

    def _lead(self) -> float:
        """How long before a tick to prepare it (under ``self._lock``)."""
        worst = 2 * self._prepare_cost * len(self._entries)
        return min(MAX_PREPARE_LEAD_SECONDS, max(MIN_PREPARE_LEAD_SECONDS, worst))

    def _prepare_tick(
        self,
        definition: ScheduleDefinition,
        tick: datetime,
        state: TickState,
        actual: datetime,
        planned_at: float,
    ) -> _PreparedTick:
        """Decide an ``allow`` tick ahead (its decision has no side effects: no hold, no
        cancel) and encode its run's inputs."""
        requests: list[StartRequest] = []
        fired = self._fire_tick(definition, tick, state, requests, actual)
        start = prepare_start(self.runtime, requests[0]) if requests else None
        return _PreparedTick(planned_at, fired, start)

    def _fire_ticks(self, due: list[_Due]) -> None:
        """Fire every due tick, and start the runs together: one commit for a thousand ticks of
        the same second instead of a thousand. Most were prepared ahead of time."""
        now = self.runtime.clock()
        fired: list[FiredTick] = []
        starts: list[PreparedStart] = []
        undecided: list[tuple[_Entry, datetime]] = []
        with self._lock:
            plans = [(entry, tick, self._prepared.pop(seq, None)) for entry, tick, seq in due]
        for entry, tick, plan in plans:
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
                _wake_queues(self.runtime)
        self.schedules.record_fired(fired)

    def _decide_now(
        self,
        due: list[tuple[_Entry, datetime]],
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
                outcome = self._fire_tick(entry.definition, tick, state, requests)
            except Exception as exc:
                logger.exception("schedule %s: tick %s failed to start", name, tick.isoformat())
                if isinstance(exc, DBOSStorageError):
                    self._fall_behind([entry], CAUSE_FAILED_PASS)  # caught up once it answers
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

    def _fire_tick(
        self,
        definition: ScheduleDefinition,
        tick: datetime,
        state: TickState,
        starts: list[StartRequest],
        actual: datetime | None = None,
    ) -> FiredTick | None:
        """Decide one tick; a run to start now is appended to ``starts`` (``actual``: its
        ``actual_time``, by default now)."""
        tick_ms = _tick_ms(tick)
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
        running = policy is not OverlapPolicy.ALLOW and self._still_running(definition.name, state)
        action = overlap_action(policy, running, held)
        if action is Overlap.SKIP:
            logger.info("schedule %s: skipped tick %s (overlap)", definition.name, tick)
            return FiredTick(definition.name, tick_ms, None)
        if action is Overlap.HOLD:
            self.start_run(definition, workflow_id, tick, hold_queue_name(definition.name))
            with self._lock:
                self._holding.add(definition.name)
            return FiredTick(definition.name, tick_ms, None)
        if action is Overlap.CANCEL_AND_START and state.last_workflow_id is not None:
            self.runtime.cancel(state.last_workflow_id)
        starts.append(
            self._start_request(definition, workflow_id, tick, definition.queue_name, actual)
        )
        return FiredTick(definition.name, tick_ms, workflow_id)

    def _still_running(self, name: str, state: TickState) -> bool:
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
        args, kwargs = definition.tick_inputs(tick, actual or self._now())
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
        _wake_queues(self.runtime)

    def _release_holds(self) -> None:
        with self._lock:
            holding = [(n, self._entries.get(n)) for n in self._holding]
        for name, entry in holding:
            if entry is None:
                continue
            row = self.schedules.release_held(
                name,
                entry.definition.queue_name,
                self.runtime.executor_id,
                self.runtime.app_version,
                self._still_running,
            )
            if row is not None:
                self._run_released(row)
            elif self.schedules.held_count(name) == 0:
                with self._lock:
                    self._holding.discard(name)

    def _run_released(self, row: WorkflowRow) -> None:
        if row.status == "PENDING":
            self.runtime.execute_existing(row)
        else:
            _wake_queues(self.runtime)

    # -- debounce windows -------------------------------------------------------------------------

    def debounce_timer(self, namespace: str, key: str, fire_at_ms: int) -> None:
        """Fire the window at its deadline (called after a local debounce call)."""
        with self._lock:
            earliest = self._heap[0].at if self._heap else None
            self._push("debounce", (namespace, key), fire_at_ms / 1000)
        if earliest is None or fire_at_ms / 1000 < earliest:
            self.wake()

    def _fire_window(self, namespace: str, key: str) -> None:
        try:
            outcome = self.debounces.fire(
                namespace, key, self.runtime.executor_id, self.runtime.app_version
            )
        except Exception:
            logger.exception("debounce %s/%s failed to fire; retrying", namespace, key)
            with self._lock:
                self._push("debounce", (namespace, key), self.runtime.clock() + 1.0)
            return
        if outcome.released is not None:
            self._run_released(outcome.released)
        elif outcome.not_before_ms is not None:
            with self._lock:
                self._push("debounce", (namespace, key), outcome.not_before_ms / 1000)

    def _poll_windows(self) -> None:
        for window in self.debounces.due_windows(self.runtime.now_ms()):
            self._fire_window(window.namespace, window.key)


def _tick_ms(tick: datetime) -> int:
    return int(tick.timestamp() * 1000)


def _log_plan(name: str, plan: CatchupPlan, cause: str) -> None:
    """Log a catch-up decision that had missed ticks to decide (a paused schedule's, quietly)."""
    if plan.paused:
        logger.debug("%s", plan.describe(name, cause), extra=plan.fields(name, cause))
    elif plan.missed:
        logger.info("%s", plan.describe(name, cause), extra=plan.fields(name, cause))


def _wake_queues(runtime: Runtime) -> None:
    queue_worker.wake(runtime)


def start(runtime: Runtime) -> None:
    Scheduler(runtime).start()


def get_scheduler(runtime: Runtime | None = None) -> Scheduler:
    """The scheduler of ``runtime`` (by default, of the launched DBOS)."""
    if runtime is None:
        from engine.dbos import _runtime

        runtime = _runtime()
    scheduler = runtime.scheduler
    if scheduler is None or runtime.stopping.is_set():
        raise DBOSNotLaunchedError("the scheduler is not running (call DBOS.launch() first)")
    return scheduler


# -- the programmatic API (the daemon's) ----------------------------------------------------------


def set_schedules(definitions: Sequence[ScheduleDefinition]) -> None:
    """Replace the managed schedules (those from configuration) at once.

    Validation happens first: if any definition is invalid, nothing changes. Schedules kept with
    an identical definition keep their timers; new or changed ones catch up per their policy.
    ``@DBOS.scheduled`` workflows are not affected.
    """
    for definition in definitions:
        if not isinstance(definition, ScheduleDefinition):
            raise DBOSInvalidArgumentError(
                f"set_schedules takes ScheduleDefinition objects, got {definition!r}"
            )
    get_scheduler().set_managed(list(definitions))


def upsert_schedule(definition: ScheduleDefinition) -> None:
    """Create a managed schedule, or replace the one with the same name."""
    if not isinstance(definition, ScheduleDefinition):
        raise DBOSInvalidArgumentError(
            f"upsert_schedule takes a ScheduleDefinition, got {definition!r}"
        )
    scheduler = get_scheduler()
    others = [d for d in scheduler.managed() if d.name != definition.name]
    scheduler.set_managed([*others, definition])


def delete_schedule(name: str) -> None:
    """Remove a managed schedule: it stops firing, and its pause state is forgotten."""
    scheduler = get_scheduler()
    current = scheduler.managed()
    if name not in {d.name for d in current}:
        known = ", ".join(sorted(d.name for d in current)) or "none"
        raise DBOSInvalidArgumentError(
            f"no managed schedule named {name!r} (managed schedules: {known})"
        )
    scheduler.set_managed([d for d in current if d.name != name])


def _admin(client: DBOSClient | None) -> ScheduleAdmin:
    return ScheduleAdmin.from_client(client) if client is not None else get_scheduler().admin


def pause_schedule(name: str, *, client: DBOSClient | None = None) -> None:
    """Durably pause a schedule: its ticks are skipped until it is resumed.

    With ``client``, works on that client's database without a running scheduler (the running
    daemons see the flag at their next tick).
    """
    _admin(client).pause(name)


def resume_schedule(name: str, *, client: DBOSClient | None = None) -> None:
    """Resume a paused schedule; ticks that came due while paused do not run."""
    _admin(client).resume(name)


def trigger_schedule(name: str, *, client: DBOSClient | None = None) -> str:
    """Run the schedule's workflow now, outside its ticks; returns the new workflow's ID.

    The ID (``sched-<name>-trigger-<hex>``) never collides with a tick's, and overlap policies do
    not apply. In a launched process the run goes to the schedule's queue, or starts here. With
    ``client`` it is enqueued (on the schedule's queue, or the internal queue every executor
    serves) for a daemon to run.
    """
    if client is not None:
        return ScheduleAdmin.from_client(client).trigger(name)
    scheduler = get_scheduler()
    definition = scheduler.admin.definition(name)
    workflow_id = trigger_workflow_id(name)
    scheduler.start_run(definition, workflow_id, scheduler._now(), definition.queue_name)
    return workflow_id


def backfill_schedule(
    name: str, start: datetime, end: datetime, *, client: DBOSClient | None = None
) -> list[str]:
    """Enqueue every tick in [start, end] (both included); returns their tick workflow IDs.

    Tick IDs are deterministic, so ticks that already ran, or were backfilled before, run nothing
    new. Raises if start > end or the range holds more than ``MAX_BACKFILL_TICKS`` ticks.
    """
    ids = _admin(client).backfill(name, start, end)
    if client is None:
        _wake_queues(get_scheduler().runtime)
    return ids


def schedule_states(*, client: DBOSClient | None = None) -> list[ScheduleState]:
    """Every schedule in the database with its next fire time and last run."""
    return _admin(client).states()


def schedule_state(name: str, *, client: DBOSClient | None = None) -> ScheduleState:
    """One schedule's state; raises DBOSInvalidArgumentError naming the known ones if unknown."""
    return _admin(client).state(name)


def next_fire_times(name: str, count: int, *, client: DBOSClient | None = None) -> list[datetime]:
    """The next ``count`` nominal ticks of a schedule (1 to 1000)."""
    return _admin(client).next_fire_times(name, count)
