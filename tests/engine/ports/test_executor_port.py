"""The ExecutorPort contract: claiming an ID, heartbeats, and taking over a dead executor."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from engine.core.liveness import ExecutorRecord, ProcessIdentity
from engine.storage.executors import Beat, Holder
from engine.storage.ports import ExecutorPort, WorkflowPort
from tests.engine.ports.support import FakeClock, workflow_row


def _holder(executor_id: str, incarnation: str, pid: int = 100) -> Holder:
    process = ProcessIdentity("host-a", pid, "boot-1/pid:[1]", f"start-{pid}")
    return Holder(executor_id, "v1", incarnation, process)


def _record(executors: ExecutorPort, executor_id: str) -> ExecutorRecord:
    record = executors.read(executor_id)
    assert record is not None, f"executor {executor_id!r} has no row"
    return record


def test_a_free_id_is_claimed_once(executors: ExecutorPort, clock: FakeClock) -> None:
    assert executors.read("e1") is None
    assert executors.claim(_holder("e1", "inc-1"), None)
    assert _record(executors, "e1") == ExecutorRecord(
        "e1", "v1", clock.now_ms(), "host-a", 100, "boot-1/pid:[1]", "start-100", "inc-1"
    )
    assert not executors.claim(_holder("e1", "inc-2", pid=200), None)
    assert _record(executors, "e1").incarnation == "inc-1"
    assert executors.claim(_holder("e1", "inc-1"), None), "a repeat of the winning claim wins"


def test_of_concurrent_claims_exactly_one_wins(executors: ExecutorPort) -> None:
    holders = [_holder("e1", f"inc-{i}", pid=i) for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        won = list(pool.map(lambda h: executors.claim(h, None), holders))
    assert won.count(True) == 1, won
    winner = holders[won.index(True)]
    assert _record(executors, "e1").incarnation == winner.incarnation


def test_a_claim_needs_the_row_as_it_was_seen(executors: ExecutorPort, clock: FakeClock) -> None:
    old = _holder("e1", "inc-1")
    executors.claim(old, None)
    seen = _record(executors, "e1")
    clock.advance(1000)
    assert executors.heartbeat(old) is Beat.BEATING
    new = _holder("e1", "inc-2", pid=200)
    assert not executors.claim(new, seen), "the holder beat since it was seen"
    assert executors.claim(new, _record(executors, "e1"))
    taken = _record(executors, "e1")
    assert (taken.incarnation, taken.pid) == ("inc-2", 200)
    assert executors.heartbeat(old) is Beat.SUPPLANTED
    assert _record(executors, "e1") == taken, "a supplanted beat writes nothing"


def test_a_heartbeat_stamps_now(executors: ExecutorPort, clock: FakeClock) -> None:
    holder = _holder("e1", "inc-1")
    executors.claim(holder, None)
    beat_at = clock.advance(2500)
    assert executors.heartbeat(holder) is Beat.BEATING
    assert _record(executors, "e1").last_heartbeat_ms == beat_at


def test_others_lists_every_executor_but_me(executors: ExecutorPort) -> None:
    for executor_id in ("e1", "e2", "e3"):
        executors.claim(_holder(executor_id, "inc"), None)
    assert sorted(r.executor_id for r in executors.others("e2")) == ["e1", "e3"]
    assert len(executors.others("nobody")) == 3


def _dead_with_work(
    executors: ExecutorPort, workflows: WorkflowPort, clock: FakeClock, *versions: str
) -> ExecutorRecord:
    """Executor ``dead`` with a PENDING workflow per version (``w-<i>``) and a finished one."""
    executors.claim(_holder("dead", "inc-dead"), None)
    for i, version in enumerate(versions):
        row = workflow_row(f"w-{i}", clock, executor_id="dead", application_version=version)
        workflows.insert_workflow(row)
    finished = workflow_row("finished", clock, "SUCCESS", executor_id="dead")
    workflows.insert_workflow(finished)
    clock.advance(60_000)
    return _record(executors, "dead")


def test_take_over_moves_the_dead_executors_work_of_my_version(
    executors: ExecutorPort, workflows: WorkflowPort, clock: FakeClock
) -> None:
    dead = _dead_with_work(executors, workflows, clock, "v1", "v1", "v2")
    taken = executors.take_over(dead, "live", "v1")
    assert sorted(r.workflow_uuid for r in taken) == ["w-0", "w-1"]
    assert all((r.status, r.executor_id) == ("PENDING", "live") for r in taken)
    left = workflows.pending_workflows(["dead"], None)
    assert [r.workflow_uuid for r in left] == ["w-2"], "work of another version stays"
    assert executors.read("dead") is not None, "kept while it has work left"
    assert executors.take_over(dead, "another", "v1") == [], "taken over once"
    rest = executors.take_over(_record(executors, "dead"), "another", "v2")
    assert [(r.workflow_uuid, r.executor_id) for r in rest] == [("w-2", "another")]
    assert executors.read("dead") is None, "forgotten once no work is left"


def test_a_dead_executor_without_work_left_is_forgotten(
    executors: ExecutorPort, workflows: WorkflowPort, clock: FakeClock
) -> None:
    dead = _dead_with_work(executors, workflows, clock, "v1")
    assert [r.workflow_uuid for r in executors.take_over(dead, "live", "v1")] == ["w-0"]
    assert executors.read("dead") is None
    assert executors.heartbeat(_holder("dead", "inc-dead")) is Beat.REINSTATED
    assert _record(executors, "dead").incarnation == "inc-dead"


def test_take_over_refuses_an_executor_that_beat_since(
    executors: ExecutorPort, workflows: WorkflowPort, clock: FakeClock
) -> None:
    judged = _dead_with_work(executors, workflows, clock, "v1")
    assert executors.heartbeat(_holder("dead", "inc-dead")) is Beat.BEATING
    assert executors.take_over(judged, "live", "v1") == []
    assert [r.workflow_uuid for r in workflows.pending_workflows(["dead"], "v1")] == ["w-0"]
