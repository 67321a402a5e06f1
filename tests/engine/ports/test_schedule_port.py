"""The SchedulePort contract: a source's set of schedules, pause state, watermarks, held ticks."""

from __future__ import annotations

import socket

from engine.core.liveness import ProcessIdentity
from engine.storage.executors import Holder
from engine.storage.ports import ExecutorPort, SchedulePort, WorkflowPort
from engine.storage.schedules import (
    FiredTick,
    Registration,
    ScheduleRow,
    TickState,
    hold_queue_name,
)
from tests.engine.ports.support import FakeClock, workflow_row


def _reg(name: str, source: str = "config", definition: str = "{}") -> Registration:
    return Registration(name, source, definition, None)


def _names(rows: list[ScheduleRow]) -> list[str]:
    return [row.name for row in rows]


def _schedule(schedules: SchedulePort, name: str) -> ScheduleRow:
    row = schedules.get(name)
    assert row is not None, f"no schedule {name!r}"
    return row


# -- definitions ----------------------------------------------------------------------------------


def test_a_new_schedule_starts_unpaused_at_now(schedules: SchedulePort, clock: FakeClock) -> None:
    now = clock.now_ms()
    schedules.register([Registration("b", "config", '{"cron": "* * * * *"}', "[1]"), _reg("a")])
    assert _schedule(schedules, "b") == ScheduleRow(
        "b", "config", '{"cron": "* * * * *"}', "[1]", False, now, None, None, now
    )
    assert _names(schedules.list_all()) == ["a", "b"]
    assert schedules.get("nobody") is None


def test_registering_again_keeps_pause_and_watermark(
    schedules: SchedulePort, clock: FakeClock
) -> None:
    created = clock.now_ms()
    schedules.register([_reg("a", definition="old")])
    schedules.set_paused("a", True)
    clock.advance(60_000)
    schedules.register([Registration("a", "registry", "new", "[2]")])
    row = _schedule(schedules, "a")
    assert (row.source, row.definition, row.inputs) == ("registry", "new", "[2]")
    assert (row.paused, row.last_tick_ms) == (True, created)


def test_replacing_a_source_leaves_other_sources_alone(schedules: SchedulePort) -> None:
    schedules.register([_reg("a"), _reg("b")], replace_source="config")
    schedules.register([_reg("mine", "registry")])
    schedules.register([_reg("b"), _reg("c")], replace_source="config")
    assert _names(schedules.list_all()) == ["b", "c", "mine"]
    assert _names(schedules.list_all("config")) == ["b", "c"]
    schedules.register([], replace_source="config")
    assert _names(schedules.list_all()) == ["mine"]
    assert schedules.list_all("nobody") == []


def test_delete_reports_whether_there_was_one(schedules: SchedulePort) -> None:
    schedules.register([_reg("a")])
    assert schedules.delete("a")
    assert not schedules.delete("a")
    assert schedules.list_all() == []


# -- pause state and watermarks -------------------------------------------------------------------


def test_a_resumed_schedule_does_not_catch_up_its_pause(
    schedules: SchedulePort, clock: FakeClock
) -> None:
    created = clock.now_ms()
    schedules.register([_reg("a")])
    assert schedules.set_paused("a", True)
    paused = _schedule(schedules, "a")
    assert (paused.paused, paused.last_tick_ms) == (True, created)
    resumed_at = clock.advance(3_600_000)
    assert schedules.set_paused("a", False)
    resumed = _schedule(schedules, "a")
    assert (resumed.paused, resumed.last_tick_ms) == (False, resumed_at)
    assert not schedules.set_paused("nobody", True)


def test_resuming_never_moves_a_watermark_back(schedules: SchedulePort, clock: FakeClock) -> None:
    schedules.register([_reg("a")])
    ahead = clock.now_ms() + 60_000
    schedules.record_fired([FiredTick("a", ahead, "run")])
    schedules.set_paused("a", True)
    schedules.set_paused("a", False)
    assert _schedule(schedules, "a").last_tick_ms == ahead


def test_a_watermark_only_moves_forward(
    schedules: SchedulePort, workflows: WorkflowPort, clock: FakeClock
) -> None:
    start = clock.now_ms()
    schedules.register([_reg("a"), _reg("b")])
    workflows.insert_workflow(workflow_row("a-3", clock, "SUCCESS"))
    schedules.record_fired(
        [
            FiredTick("a", start + 3000, "a-3"),
            FiredTick("a", start + 1000, "a-1"),
            FiredTick("b", start + 5000, "b-5"),
        ]
    )
    schedules.record_fired([FiredTick("a", start + 2000, "a-2")])  # behind: ignored
    a, b = _schedule(schedules, "a"), _schedule(schedules, "b")
    assert (a.last_tick_ms, a.last_workflow_id, a.last_status) == (start + 3000, "a-3", "SUCCESS")
    assert (b.last_tick_ms, b.last_workflow_id, b.last_status) == (start + 5000, "b-5", None)
    schedules.record_fired([FiredTick("a", start + 4000, None)])  # skipped: no run
    a = _schedule(schedules, "a")
    assert (a.last_tick_ms, a.last_workflow_id) == (start + 4000, "a-3")
    schedules.record_fired([])


def test_tick_states_of_existing_schedules_in_one_read(
    schedules: SchedulePort,
    workflows: WorkflowPort,
    executors: ExecutorPort,
    clock: FakeClock,
) -> None:
    start = clock.now_ms()
    schedules.register([_reg("a"), _reg("b")])
    executors.claim(
        Holder("e1", "v1", "inc-1", ProcessIdentity(socket.gethostname(), 1, None, None)), None
    )
    run = workflow_row("a-run", clock, executor_id="e1", application_version="v1", queue_name="q")
    workflows.insert_workflow(run)
    schedules.record_fired([FiredTick("a", start + 1000, "a-run")])
    schedules.set_paused("b", True)
    states = schedules.tick_states(["a", "b", "nobody"])
    assert states == {
        "a": TickState(False, start + 1000, "a-run", "PENDING", "q", "e1", "v1", "v1", start),
        "b": TickState(True, start, None, None),
    }
    assert states["a"].unfinished
    light = schedules.tick_states(iter(["a"]), previous_runs=False)
    assert light == {"a": TickState(False, start + 1000, "a-run", None)}
    assert schedules.tick_states([]) == {}


# -- ticks ----------------------------------------------------------------------------------------


def test_each_tick_is_inserted_once(
    schedules: SchedulePort, workflows: WorkflowPort, clock: FakeClock
) -> None:
    hold = hold_queue_name("a")

    def tick(workflow_id: str) -> list[str]:
        row = workflow_row(workflow_id, clock, "ENQUEUED", queue_name=hold)
        return schedules.insert_enqueued([row])

    assert tick("sched-a-1") == ["sched-a-1"]
    assert tick("sched-a-1") == []
    rows = [workflow_row(w, clock, "ENQUEUED", queue_name=hold) for w in ("sched-a-1", "sched-a-2")]
    assert schedules.insert_enqueued(rows) == ["sched-a-2"]
    assert schedules.held_count("a") == 2
    assert schedules.held_count("b") == 0
    assert workflows.get_workflow("sched-a-2") == rows[1]


def _hold_ticks(schedules: SchedulePort, clock: FakeClock, name: str, *ticks: str) -> None:
    hold = hold_queue_name(name)
    rows = [workflow_row(f"sched-{name}-{t}", clock, "ENQUEUED", queue_name=hold) for t in ticks]
    schedules.insert_enqueued(rows)


def test_held_ticks_are_released_one_at_a_time_in_tick_order(
    schedules: SchedulePort, workflows: WorkflowPort, clock: FakeClock
) -> None:
    schedules.register([_reg("a")])
    _hold_ticks(schedules, clock, "a", "2024-01-01T00:02:00Z", "2024-01-01T00:01:00Z")
    asked: list[tuple[str, TickState]] = []

    def still_running(name: str, state: TickState) -> bool:
        asked.append((name, state))
        return False

    now = clock.advance(5000)
    first = schedules.release_held("a", None, "e1", "v1", still_running)
    assert first is not None and first.workflow_uuid == "sched-a-2024-01-01T00:01:00Z"
    assert (first.status, first.queue_name, first.executor_id) == ("PENDING", None, "e1")
    assert (first.application_version, first.started_at_epoch_ms) == ("v1", now)
    assert asked[0][0] == "a" and asked[0][1].last_workflow_id is None
    assert _schedule(schedules, "a").last_workflow_id == first.workflow_uuid
    assert schedules.held_count("a") == 1

    second = schedules.release_held("a", "work-q", "e1", "v1", still_running)
    assert second is not None and second.workflow_uuid == "sched-a-2024-01-01T00:02:00Z"
    assert (second.status, second.queue_name) == ("ENQUEUED", "work-q")
    assert asked[1][1].last_workflow_id == first.workflow_uuid
    assert schedules.held_count("a") == 0
    assert schedules.release_held("a", None, "e1", "v1", still_running) is None


def test_a_held_tick_waits_while_the_previous_run_goes_on(
    schedules: SchedulePort, clock: FakeClock
) -> None:
    schedules.register([_reg("a")])
    _hold_ticks(schedules, clock, "a", "1")
    assert schedules.release_held("a", None, "e1", "v1", lambda _n, _s: True) is None
    assert schedules.held_count("a") == 1
    assert schedules.release_held("nobody", None, "e1", "v1", lambda _n, _s: False) is None
