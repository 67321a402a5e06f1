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
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from engine.core.catchup import CatchupPlan, OverlapPolicy, fell_behind, plan_catchup
from engine.core.cron import deterministic_jitter
from engine.error import DBOSInvalidArgumentError
from engine.runtime.debounce_timers import DebounceTimers
from engine.runtime.schedule_admin import (
    SOURCE_DECORATOR,
    SOURCE_MANAGED,
    SOURCE_REGISTRY,
    ScheduleAdmin,
    ScheduleDefinition,
    ScheduleState,
)
from engine.runtime.scheduled import (
    LIVE_SCHEDULERS,
    clear_scheduled,
    scheduled_definitions,
    unregister_scheduled,
)
from engine.runtime.scheduler_facade import (
    backfill_schedule,
    delete_schedule,
    get_scheduler,
    next_fire_times,
    pause_schedule,
    resume_schedule,
    schedule_state,
    schedule_states,
    set_schedules,
    trigger_schedule,
    upsert_schedule,
)
from engine.runtime.tick_firing import PreparedTick, ScheduleEntry, TickFiring, now_utc
from engine.storage.database import is_outage
from engine.storage.debounce import DebounceStore
from engine.storage.schedules import ScheduleStore, TickState

if TYPE_CHECKING:
    from engine.runtime.executor import Runtime

# The programmatic API lives in engine.runtime.scheduler_facade; it is re-exported here, where
# the daemon and the tests import it from.
__all__ = [
    "ScheduleAdmin",
    "ScheduleDefinition",
    "ScheduleState",
    "Scheduler",
    "backfill_schedule",
    "clear_scheduled",
    "delete_schedule",
    "get_scheduler",
    "next_fire_times",
    "pause_schedule",
    "resume_schedule",
    "schedule_state",
    "schedule_states",
    "set_schedules",
    "start",
    "trigger_schedule",
    "unregister_scheduled",
    "upsert_schedule",
]

logger = logging.getLogger("keeptime.engine")

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
_ERROR_BACKOFF_SECONDS = 1.0

#: Why a schedule catches up (the ``cause`` of its log line): it was not running (a start, a new
#: definition), its ticks came due while a pass failed (the database was unreachable), or the
#: process fell behind by more than an interval (a stall, a suspended VM).
CAUSE_DOWNTIME = "downtime"
CAUSE_FAILED_PASS = "failed pass"
CAUSE_STALL = "stall"


# -- the scheduler --------------------------------------------------------------------------------


@dataclass(order=True)
class _Timer:
    at: float  # epoch seconds on the runtime's clock
    seq: int
    kind: str = field(compare=False)  # "tick" or "debounce"
    key: tuple[str, str] = field(compare=False)  # (schedule, "") or (namespace, key)
    generation: int = field(compare=False, default=0)
    tick: datetime | None = field(compare=False, default=None)
    regular: bool = field(compare=False, default=False)  # a catch-up timer does not re-arm


_Due = tuple[ScheduleEntry, datetime, int]  # (schedule, nominal tick, timer seq)


class Scheduler:
    """The one scheduler of a runtime: schedule ticks, debounce deadlines and buffered ticks."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.schedules = ScheduleStore(runtime.store)
        self.debounces = DebounceStore(runtime.store)
        self.debounce_timers = DebounceTimers(self.debounce_timer)
        self.admin = ScheduleAdmin(runtime.store, runtime.codec, runtime.clock)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._entries: dict[str, ScheduleEntry] = {}
        self._heap: list[_Timer] = []
        self._seq = itertools.count()
        self._generations = itertools.count(1)
        self._holding: set[str] = set()
        self._next_debounce_poll = 0.0  # monotonic
        self._next_registry_sync = 0.0  # monotonic
        # Timers looked at ahead of time, by seq: a prepared tick, or None (decide when due).
        self._prepared: dict[int, PreparedTick | None] = {}
        self._prepare_cost = _INITIAL_PREPARE_SECONDS_PER_TICK  # measured per tick
        # Schedules whose timers stopped at a gap in firing, with its cause: they catch up from
        # their durable watermarks (not before _catch_up_after, monotonic, after a failure).
        self._behind: dict[str, tuple[ScheduleEntry, str]] = {}
        self._catch_up_after = 0.0
        self._catch_up_waiting = False  # the database did not answer: said once per outage
        # What a due tick does, and starting the runs of a pass.
        self.firing = TickFiring(runtime, self.schedules, self._hold, self._failed_pass)

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        """Install the decorated and registry schedules and start the scheduler thread."""
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
        """Make the thread look at its timers now."""
        self._wake.set()

    def _on_finish(self, workflow_id: str) -> None:
        if self._holding:
            self._wake.set()

    def run(self) -> None:
        """The scheduler thread: passes until shutdown; a failed pass is retried."""
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
        """The installed managed schedules (those from configuration)."""
        with self._lock:
            return [e.definition for e in self._entries.values() if e.source == SOURCE_MANAGED]

    def drop(self, name: str, source: str) -> None:
        """Uninstall the schedule ``name`` if it came from ``source``."""
        with self._lock:
            entry = self._entries.get(name)
            if entry is not None and entry.source == source:
                del self._entries[name]
                self._holding.discard(name)
                self._behind.pop(name, None)
                self.firing.forget(name)

    def _install(self, definitions: Sequence[ScheduleDefinition], source: str) -> None:
        """Add or replace schedules: each catches up the gap since its watermark (the downtime
        before this start or this definition), then fires its regular ticks."""
        if not definitions:
            return
        states = self.schedules.tick_states((d.name for d in definitions), previous_runs=False)
        now = now_utc(self.runtime)
        for definition in definitions:
            self._arm(definition, source, states.get(definition.name), now, CAUSE_DOWNTIME)

    def _arm(
        self,
        definition: ScheduleDefinition,
        source: str,
        state: TickState | None,
        now: datetime,
        cause: str,
        replacing: ScheduleEntry | None = None,
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
            entry = ScheduleEntry(definition, source, next(self._generations))
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

    def _push_next_tick(self, entry: ScheduleEntry, after: datetime) -> None:
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

    def _live_entry(self, timer: _Timer) -> ScheduleEntry | None:
        entry = self._entries.get(timer.key[0])
        return entry if entry is not None and entry.generation == timer.generation else None

    def _rearm(self, fired: list[_Due]) -> None:
        with self._lock:
            for entry, tick, _ in fired:
                name = entry.definition.name
                if self._entries.get(name) is entry and name not in self._behind:
                    self._push_next_tick(entry, tick)

    def _fall_behind(self, entries: list[ScheduleEntry], cause: str) -> None:
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
        now = now_utc(self.runtime)
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

    # -- ticks ------------------------------------------------------------------------------------

    def _prepare_upcoming(self) -> None:
        """Decide the ticks due within the lead and encode their inputs now, ahead of the tick."""
        now = self.runtime.clock()
        upcoming: list[tuple[ScheduleEntry, _Timer]] = []
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
        prepared: dict[int, PreparedTick | None] = {}
        for entry, timer in upcoming:
            state = states.get(entry.definition.name)
            if state is None or timer.tick is None:
                continue
            planned_at = max(timer.at, now)
            actual = datetime.fromtimestamp(planned_at, tz=UTC)
            try:
                prepared[timer.seq] = self.firing.prepare(
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

    def _fire_ticks(self, due: list[_Due]) -> None:
        """Fire the due ticks with their decisions made ahead of time, if any."""
        now = self.runtime.clock()
        with self._lock:
            plans = [(entry, tick, self._prepared.pop(seq, None)) for entry, tick, seq in due]
        self.firing.fire(plans, now)

    def _hold(self, name: str) -> None:
        """The schedule holds a buffered tick: watch its previous run to release it."""
        with self._lock:
            self._holding.add(name)

    def _failed_pass(self, entries: list[ScheduleEntry]) -> None:
        self._fall_behind(entries, CAUSE_FAILED_PASS)

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
                self.firing.still_running,
            )
            if row is not None:
                self.firing.run_released(row)
            elif self.schedules.held_count(name) == 0:
                with self._lock:
                    self._holding.discard(name)

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
            self.firing.run_released(outcome.released)
        elif outcome.not_before_ms is not None:
            with self._lock:
                self._push("debounce", (namespace, key), outcome.not_before_ms / 1000)

    def _poll_windows(self) -> None:
        for window in self.debounces.due_windows(self.runtime.now_ms()):
            self._fire_window(window.namespace, window.key)


def _log_plan(name: str, plan: CatchupPlan, cause: str) -> None:
    """Log a catch-up decision that had missed ticks to decide (a paused schedule's, quietly)."""
    if plan.paused:
        logger.debug("%s", plan.describe(name, cause), extra=plan.fields(name, cause))
    elif plan.missed:
        logger.info("%s", plan.describe(name, cause), extra=plan.fields(name, cause))


def start(runtime: Runtime) -> None:
    """Start the runtime's scheduler (at launch)."""
    Scheduler(runtime).start()
