"""The QueuePort contract: claims within concurrency, rate limits, priority and partitions."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from engine.storage.ports import QueuePort, WorkflowPort
from engine.storage.queues import ClaimLimits
from engine.storage.store import WorkflowRow
from tests.engine.ports.support import FakeClock, queued_row, workflow_row

Q = "q"
UNLIMITED = ClaimLimits(Q, None, None, None, None, False)


def _enqueue(workflows: WorkflowPort, clock: FakeClock, *ids: str, **fields: object) -> None:
    """ENQUEUED rows on ``Q``, each created a millisecond after the one before."""
    for workflow_id in ids:
        clock.advance(1)
        workflows.insert_workflow(queued_row(workflow_id, clock, Q, **fields))


def _claim(
    queues: QueuePort,
    limits: ClaimLimits = UNLIMITED,
    executor: str = "e1",
    skip: Sequence[str] = (),
) -> list[str]:
    result = queues.claim(limits, executor, "v1", ["wf"], skip)
    return [row.workflow_uuid for row in result.rows]


def _finish(workflows: WorkflowPort, *ids: str) -> None:
    for workflow_id in ids:
        assert workflows.complete_workflow(workflow_id, "SUCCESS", None, None)


def test_queues_with_work_names_those_holding_enqueued_rows(
    queues: QueuePort, workflows: WorkflowPort, clock: FakeClock
) -> None:
    workflows.insert_workflow(queued_row("a", clock, "busy"))
    workflows.insert_workflow(workflow_row("b", clock, "PENDING", queue_name="drained"))
    assert queues.queues_with_work(["busy", "drained", "empty"]) == {"busy"}
    assert queues.queues_with_work([]) == set()


def test_a_claim_runs_the_oldest_first_on_the_claimant(
    queues: QueuePort, workflows: WorkflowPort, clock: FakeClock
) -> None:
    _enqueue(workflows, clock, "first", "second")
    workflows.insert_workflow(queued_row("timed", clock, Q, timeout_ms=5000))
    now = clock.advance(100)
    claimed = queues.claim(UNLIMITED, "e1", "v1", ["wf"]).rows
    assert [r.workflow_uuid for r in claimed] == ["first", "second", "timed"]
    for row in claimed:
        assert (row.status, row.executor_id, row.started_at_epoch_ms) == ("PENDING", "e1", now)
        assert row.recovery_attempts == 1
    assert claimed[2].deadline_epoch_ms == now + 5000, "the timeout starts at dequeue"
    assert claimed[0].deadline_epoch_ms is None
    assert claimed == [workflows.get_workflow(r.workflow_uuid) for r in claimed]
    assert _claim(queues) == []
    assert queues.queues_with_work([Q]) == set()


def test_same_millisecond_enqueues_keep_their_order(
    queues: QueuePort, workflows: WorkflowPort, clock: FakeClock
) -> None:
    for workflow_id, order in [("b", 2), ("c", 3), ("a", 1)]:
        workflows.insert_workflow(queued_row(workflow_id, clock, Q, queue_order=order))
    assert _claim(queues) == ["a", "b", "c"]


def test_unprioritized_work_goes_first_then_lower_priorities(
    queues: QueuePort, workflows: WorkflowPort, clock: FakeClock
) -> None:
    for workflow_id, priority in [("p5", 5), ("none-1", None), ("p1", 1), ("none-2", None)]:
        _enqueue(workflows, clock, workflow_id, priority=priority)
    assert _claim(queues) == ["none-1", "none-2", "p1", "p5"]


def test_worker_concurrency_limits_each_executor(
    queues: QueuePort, workflows: WorkflowPort, clock: FakeClock
) -> None:
    _enqueue(workflows, clock, "a", "b", "c", "d", "e")
    limits = replace(UNLIMITED, worker_concurrency=2)
    assert _claim(queues, limits, "e1") == ["a", "b"]
    assert _claim(queues, limits, "e1") == []
    assert _claim(queues, limits, "e2") == ["c", "d"]
    _finish(workflows, "a")
    assert _claim(queues, limits, "e1") == ["e"]


def test_global_concurrency_limits_all_executors(
    queues: QueuePort, workflows: WorkflowPort, clock: FakeClock
) -> None:
    _enqueue(workflows, clock, "a", "b", "c")
    limits = replace(UNLIMITED, concurrency=2)
    assert _claim(queues, limits, "e1") == ["a", "b"]
    assert _claim(queues, limits, "e2") == []
    _finish(workflows, "b")
    assert _claim(queues, limits, "e2") == ["c"]


def test_concurrent_claimants_share_the_global_limit(
    queues: QueuePort, workflows: WorkflowPort, clock: FakeClock
) -> None:
    _enqueue(workflows, clock, *(f"w{i}" for i in range(12)))
    limits = replace(UNLIMITED, concurrency=3)
    with ThreadPoolExecutor(4) as pool:
        claims = list(pool.map(lambda e: _claim(queues, limits, e), ["e1", "e2", "e3", "e4"]))
    claimed = [workflow_id for claim in claims for workflow_id in claim]
    assert len(claimed) == 3, claims
    assert sorted(claimed) == ["w0", "w1", "w2"]


def test_a_rate_limit_counts_starts_in_its_window(
    queues: QueuePort, workflows: WorkflowPort, clock: FakeClock
) -> None:
    _enqueue(workflows, clock, "a", "b", "c", "d")
    limits = replace(UNLIMITED, limit=2, period_ms=1000)
    started = clock.advance(10)
    assert _claim(queues, limits) == ["a", "b"]
    _finish(workflows, "a", "b")  # finished runs still count: the limit is on starts
    full = queues.claim(limits, "e1", "v1", ["wf"])
    assert full.rows == []
    assert full.retry_at_ms == started + 1001
    clock.advance(1000)
    assert _claim(queues, limits) == [], "the window includes its first millisecond"
    clock.advance(1)
    assert _claim(queues, limits) == ["c", "d"]


def test_partitions_have_limits_of_their_own(
    queues: QueuePort, workflows: WorkflowPort, clock: FakeClock
) -> None:
    for workflow_id, partition in [("p1-a", "p1"), ("p2-a", "p2"), ("p1-b", "p1")]:
        _enqueue(workflows, clock, workflow_id, queue_partition_key=partition)
    limits = replace(UNLIMITED, concurrency=1, partitioned=True)
    assert sorted(_claim(queues, limits)) == ["p1-a", "p2-a"]
    assert _claim(queues, limits) == []
    _finish(workflows, "p2-a")
    assert _claim(queues, limits) == [], "p2's free slot does not serve p1"
    _finish(workflows, "p1-a")
    assert _claim(queues, limits) == ["p1-b"]


def test_a_claim_takes_only_what_the_claimant_can_run(
    queues: QueuePort, workflows: WorkflowPort, clock: FakeClock
) -> None:
    _enqueue(workflows, clock, "mine", "skipped")
    _enqueue(workflows, clock, "unversioned", application_version=None)
    _enqueue(workflows, clock, "newer", application_version="v2")
    workflows.insert_workflow(queued_row("unknown-function", clock, Q, name="other"))
    assert _claim(queues, skip=["skipped"]) == ["mine", "unversioned"]
    unversioned = workflows.get_workflow("unversioned")
    assert unversioned is not None and unversioned.application_version == "v1"
    assert queues.queues_with_work([Q]) == {Q}


def test_a_claim_takes_at_most_a_batch(
    queues: QueuePort, workflows: WorkflowPort, clock: FakeClock
) -> None:
    _enqueue(workflows, clock, "a", "b", "c")
    assert _claim(queues, replace(UNLIMITED, max_batch=2)) == ["a", "b"]


def test_release_gives_a_claimed_run_back(
    queues: QueuePort, workflows: WorkflowPort, clock: FakeClock
) -> None:
    _enqueue(workflows, clock, "a", "b")
    assert _claim(queues, replace(UNLIMITED, max_batch=1)) == ["a"]
    assert not queues.release("a", "e2"), "only the claimant releases"
    assert queues.release("a", "e1")
    released = workflows.get_workflow("a")
    assert released is not None
    assert (released.status, released.executor_id, released.started_at_epoch_ms) == (
        "ENQUEUED",
        None,
        None,
    )
    assert released.recovery_attempts == 0
    assert not queues.release("a", "e1"), "released already"
    assert _claim(queues, executor="e2") == ["a", "b"]


def test_release_leaves_unqueued_work_alone(
    queues: QueuePort, workflows: WorkflowPort, clock: FakeClock
) -> None:
    direct = WorkflowRow("direct", "PENDING", "wf", executor_id="e1")
    workflows.insert_workflow(direct)
    assert not queues.release("direct", "e1")
    assert workflows.get_workflow("direct") == direct
