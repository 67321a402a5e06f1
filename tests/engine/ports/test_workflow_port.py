"""The WorkflowPort contract: workflow rows, step checkpoints, recovery and management."""

from __future__ import annotations

import pytest

from engine.error import DBOSQueueDeduplicatedError, DBOSStorageError
from engine.storage.ports import WorkflowPort
from engine.storage.store import ListFilter, StepRecord, WorkflowOutcome, WorkflowRow
from tests.engine.ports.support import FakeClock, step, workflow_row


def _stored(workflows: WorkflowPort, workflow_id: str) -> WorkflowRow:
    row = workflows.get_workflow(workflow_id)
    assert row is not None, f"workflow {workflow_id!r} is not stored"
    return row


# -- creating -------------------------------------------------------------------------------------


def test_an_inserted_workflow_reads_back(workflows: WorkflowPort, clock: FakeClock) -> None:
    row = workflow_row("w1", clock, inputs='{"a": 1}', executor_id="e1", timeout_ms=500)
    created, stored = workflows.insert_workflow(row)
    assert created and stored == row
    assert workflows.get_workflow("w1") == row
    assert workflows.get_outcome("w1") == ("PENDING", None, None)


def test_an_unknown_id_reads_as_none(workflows: WorkflowPort) -> None:
    assert workflows.get_workflow("nobody") is None
    assert workflows.get_outcome("nobody") is None
    assert workflows.list_steps("nobody") == []
    assert workflows.load_steps("nobody") == {}


def test_an_existing_id_is_never_overwritten(workflows: WorkflowPort, clock: FakeClock) -> None:
    first = workflow_row("w1", clock, inputs="first")
    workflows.insert_workflow(first)
    clock.advance(1000)
    created, stored = workflows.insert_workflow(workflow_row("w1", clock, "ENQUEUED", inputs="2"))
    assert not created
    assert stored == first
    assert _stored(workflows, "w1") == first
    assert workflows.insert_workflows([workflow_row("w1", clock, inputs="third")]) == set()
    assert _stored(workflows, "w1") == first


def test_a_child_is_inserted_with_the_parents_step(
    workflows: WorkflowPort, clock: FakeClock
) -> None:
    workflows.insert_workflow(workflow_row("parent", clock))
    child = workflow_row("child", clock, parent_workflow_id="parent")
    started = StepRecord(3, "child_wf", None, None, "child")
    assert workflows.insert_workflow(child, started, "parent")[0]
    assert workflows.list_steps("parent") == [started]
    again = StepRecord(3, "child_wf", None, None, "child")
    assert not workflows.insert_workflow(child, again, "parent")[0]
    assert workflows.list_steps("parent") == [started]


def test_insert_workflows_reports_only_the_ids_it_created(
    workflows: WorkflowPort, clock: FakeClock
) -> None:
    assert workflows.insert_workflows([]) == set()
    assert workflows.insert_workflows([workflow_row("a", clock), workflow_row("b", clock)]) == {
        "a",
        "b",
    }
    batch = [workflow_row("b", clock, "ENQUEUED"), workflow_row("c", clock, "ENQUEUED")]
    assert workflows.insert_workflows(batch) == {"c"}
    assert _stored(workflows, "b").status == "PENDING"
    assert _stored(workflows, "c").status == "ENQUEUED"


def test_a_deduplication_id_is_taken_until_its_workflow_ends(
    workflows: WorkflowPort, clock: FakeClock
) -> None:
    def queued(workflow_id: str, queue: str = "q") -> WorkflowRow:
        return workflow_row(workflow_id, clock, "ENQUEUED", queue_name=queue, deduplication_id="d")

    workflows.insert_workflow(queued("first"))
    with pytest.raises(DBOSQueueDeduplicatedError):
        workflows.insert_workflow(queued("second"))
    assert workflows.get_workflow("second") is None
    assert workflows.insert_workflow(queued("elsewhere", "other-queue"))[0]
    workflows.cancel_workflow_tree("first")
    assert workflows.insert_workflow(queued("second"))[0]


# -- steps ----------------------------------------------------------------------------------------


def test_a_step_is_recorded_once(workflows: WorkflowPort, clock: FakeClock) -> None:
    workflows.insert_workflow(workflow_row("w1", clock))
    first = workflows.record_step("w1", step(1, "first"), None)
    assert first.workflow_status == "PENDING" and first.earlier is None
    second = workflows.record_step("w1", step(1, "second"), None)
    assert second.earlier == step(1, "first")
    assert workflows.load_steps("w1") == {1: step(1, "first")}


def test_recording_a_step_reports_a_cancellation(workflows: WorkflowPort, clock: FakeClock) -> None:
    workflows.insert_workflow(workflow_row("w1", clock))
    workflows.cancel_workflow_tree("w1")
    assert workflows.record_step("w1", step(1), None).workflow_status == "CANCELLED"


def test_steps_list_in_function_id_order(workflows: WorkflowPort, clock: FakeClock) -> None:
    workflows.insert_workflow(workflow_row("w1", clock))
    failed = StepRecord(2, "flaky", None, "boom", None)
    for record in (step(3, "c"), step(1, "a"), failed):
        workflows.record_step("w1", record, None)
    assert workflows.list_steps("w1") == [step(1, "a"), failed, step(3, "c")]
    assert workflows.load_steps("w1") == {1: step(1, "a"), 2: failed, 3: step(3, "c")}


def test_load_steps_of_answers_for_every_id(workflows: WorkflowPort, clock: FakeClock) -> None:
    workflows.insert_workflows([workflow_row("a", clock), workflow_row("b", clock)])
    workflows.record_step("a", step(1, "x"), None)
    assert workflows.load_steps_of(["a", "b", "nobody"]) == {
        "a": {1: step(1, "x")},
        "b": {},
        "nobody": {},
    }
    assert workflows.load_steps_of([]) == {}


# -- finishing ------------------------------------------------------------------------------------


def test_completion_stores_the_outcome_once(workflows: WorkflowPort, clock: FakeClock) -> None:
    workflows.insert_workflow(workflow_row("w1", clock))
    assert workflows.complete_workflow("w1", "SUCCESS", '"done"', None)
    assert workflows.get_outcome("w1") == ("SUCCESS", '"done"', None)
    assert not workflows.complete_workflow("w1", "ERROR", None, "late")
    assert workflows.get_outcome("w1") == ("SUCCESS", '"done"', None)


def test_a_cancelled_workflow_stays_cancelled(workflows: WorkflowPort, clock: FakeClock) -> None:
    workflows.insert_workflows([workflow_row(w, clock) for w in ("a", "b", "c")])
    workflows.cancel_workflow_tree("b")
    assert not workflows.complete_workflow("b", "SUCCESS", "1", None)
    outcomes = [WorkflowOutcome(w, "SUCCESS", "1", None) for w in ("a", "b", "c")]
    outcomes[2] = WorkflowOutcome("c", "ERROR", None, "failed")
    assert workflows.complete_workflows(outcomes) == {"a", "c"}
    assert workflows.get_outcome("a") == ("SUCCESS", "1", None)
    assert workflows.get_outcome("b") == ("CANCELLED", None, None)
    assert workflows.get_outcome("c") == ("ERROR", None, "failed")


# -- listing --------------------------------------------------------------------------------------


@pytest.fixture()
def listed(workflows: WorkflowPort, clock: FakeClock) -> list[str]:
    """Four workflows created a second apart, returned in creation order."""
    rows = [
        workflow_row("job-1", clock, name="report", authenticated_user="ann"),
        workflow_row("job-2", clock, "ENQUEUED", queue_name="q", application_version="v2"),
        workflow_row("task-3", clock, "SUCCESS", name="report", queue_name="q"),
        workflow_row("task-4", clock, "PENDING", queue_name="q", application_version="v2"),
    ]
    for row in rows:
        row.created_at = row.updated_at = clock.advance(1000)
        workflows.insert_workflow(row)
    return [r.workflow_uuid for r in rows]


def _ids(workflows: WorkflowPort, flt: ListFilter | None = None) -> list[str]:
    return [r.workflow_uuid for r in workflows.list_workflows(flt or ListFilter())]


def test_list_filters_each_field(workflows: WorkflowPort, listed: list[str]) -> None:
    assert _ids(workflows) == listed
    assert _ids(workflows, ListFilter(workflow_ids=["task-4", "job-1", "nobody"])) == [
        "job-1",
        "task-4",
    ]
    assert _ids(workflows, ListFilter(workflow_id_prefix="task-")) == ["task-3", "task-4"]
    assert _ids(workflows, ListFilter(statuses=["ENQUEUED", "SUCCESS"])) == ["job-2", "task-3"]
    assert _ids(workflows, ListFilter(name="report")) == ["job-1", "task-3"]
    assert _ids(workflows, ListFilter(app_version="v2")) == ["job-2", "task-4"]
    assert _ids(workflows, ListFilter(user="ann")) == ["job-1"]
    assert _ids(workflows, ListFilter(queue_name="q")) == ["job-2", "task-3", "task-4"]
    assert _ids(workflows, ListFilter(queued_only=True)) == ["job-2", "task-4"]
    assert _ids(workflows, ListFilter(name="report", statuses=["PENDING"])) == ["job-1"]


def test_list_filters_by_creation_time_and_pages(
    workflows: WorkflowPort, listed: list[str]
) -> None:
    created = [_stored(workflows, w).created_at for w in listed]
    assert _ids(workflows, ListFilter(start_ms=created[1], end_ms=created[2])) == listed[1:3]
    assert _ids(workflows, ListFilter(sort_desc=True)) == listed[::-1]
    assert _ids(workflows, ListFilter(limit=2, offset=1)) == listed[1:3]
    assert _ids(workflows, ListFilter(sort_desc=True, limit=1)) == [listed[-1]]


def test_a_prefix_is_not_a_pattern(workflows: WorkflowPort, clock: FakeClock) -> None:
    workflows.insert_workflows([workflow_row(w, clock) for w in ("a%b", "axb", "a_c")])
    assert _ids(workflows, ListFilter(workflow_id_prefix="a%")) == ["a%b"]
    assert _ids(workflows, ListFilter(workflow_id_prefix="a_")) == ["a_c"]


# -- recovery -------------------------------------------------------------------------------------


def test_pending_workflows_of_executors_oldest_first(
    workflows: WorkflowPort, clock: FakeClock
) -> None:
    for workflow_id, executor, version, status, created_at in [
        ("late", "e1", "v1", "PENDING", 20),
        ("early", "e2", "v1", "PENDING", 10),
        ("other-version", "e1", "v2", "PENDING", 30),
        ("finished", "e1", "v1", "SUCCESS", 40),
        ("elsewhere", "e3", "v1", "PENDING", 50),
    ]:
        row = workflow_row(workflow_id, clock, status, executor_id=executor)
        row.application_version, row.created_at = version, created_at
        workflows.insert_workflow(row)
    found = workflows.pending_workflows(["e1", "e2"], "v1")
    assert [r.workflow_uuid for r in found] == ["early", "late"]
    any_version = workflows.pending_workflows(["e1"], None)
    assert {r.workflow_uuid for r in any_version} == {"late", "other-version"}


def test_recovery_attempts_are_counted_and_capped(
    workflows: WorkflowPort, clock: FakeClock
) -> None:
    workflows.insert_workflow(workflow_row("w1", clock, executor_id="e1", recovery_attempts=1))
    assert workflows.start_recovery_attempt("w1", "e2", 1) is None, "not e2's workflow"
    first = workflows.start_recovery_attempt("w1", "e1", 1)
    assert first is not None and (first.status, first.recovery_attempts) == ("PENDING", 2)
    second = workflows.start_recovery_attempt("w1", "e1", 1)
    assert second is not None and second.status == "MAX_RECOVERY_ATTEMPTS_EXCEEDED"
    assert workflows.start_recovery_attempt("w1", "e1", 1) is None, "no longer PENDING"


def test_recovery_without_a_limit_never_gives_up(workflows: WorkflowPort, clock: FakeClock) -> None:
    workflows.insert_workflow(workflow_row("w1", clock, executor_id="e1"))
    for attempt in range(1, 6):
        row = workflows.start_recovery_attempt("w1", "e1", None)
        assert row is not None and (row.status, row.recovery_attempts) == ("PENDING", attempt)


# -- management -----------------------------------------------------------------------------------


def test_cancel_reaches_every_unfinished_descendant(
    workflows: WorkflowPort, clock: FakeClock
) -> None:
    tree = [
        ("root", None, "PENDING"),
        ("child", "root", "ENQUEUED"),
        ("done-child", "root", "SUCCESS"),
        ("grandchild", "child", "PENDING"),
        ("great-grandchild", "done-child", "PENDING"),
        ("stranger", None, "PENDING"),
    ]
    for workflow_id, parent, status in tree:
        workflows.insert_workflow(
            workflow_row(workflow_id, clock, status, parent_workflow_id=parent)
        )
    cancelled = workflows.cancel_workflow_tree("root")
    assert set(cancelled) == {"root", "child", "grandchild", "great-grandchild"}
    assert workflows.cancelled_among(["root", "done-child", "stranger", "nobody"]) == ["root"]
    assert _stored(workflows, "done-child").status == "SUCCESS"
    assert _stored(workflows, "stranger").status == "PENDING"
    assert workflows.cancel_workflow_tree("root") == []
    assert workflows.cancelled_among([]) == []


def test_resume_runs_a_cancelled_workflow_here_with_a_fresh_timeout(
    workflows: WorkflowPort, clock: FakeClock
) -> None:
    row = workflow_row("w1", clock, "ENQUEUED", queue_name="q", timeout_ms=5000)
    row.deduplication_id, row.recovery_attempts = "d", 3
    workflows.insert_workflow(row)
    workflows.cancel_workflow_tree("w1")
    now = clock.advance(60_000)
    changed, resumed = workflows.resume_workflow("w1", "e9")
    assert changed and resumed is not None
    assert (resumed.status, resumed.executor_id, resumed.queue_name) == ("PENDING", "e9", None)
    assert resumed.recovery_attempts == 0
    assert (resumed.started_at_epoch_ms, resumed.deadline_epoch_ms) == (now, now + 5000)
    assert workflows.pending_workflows(["e9"], None) == [resumed]


def test_resume_leaves_running_and_finished_workflows_alone(
    workflows: WorkflowPort, clock: FakeClock
) -> None:
    running = workflow_row("running", clock, executor_id="e1")
    finished = workflow_row("finished", clock, "SUCCESS", executor_id="e1")
    workflows.insert_workflows([running, finished])
    assert workflows.resume_workflow("running", "e9") == (False, running)
    assert workflows.resume_workflow("finished", "e9") == (False, finished)
    assert workflows.resume_workflow("nobody", "e9") == (False, None)


def test_fork_copies_the_steps_before_the_start_step(
    workflows: WorkflowPort, clock: FakeClock
) -> None:
    source = workflow_row("source", clock, "SUCCESS")
    workflows.insert_workflow(source)
    for function_id in range(1, 5):
        workflows.record_step("source", step(function_id, str(function_id)), None)
    fork = workflow_row("fork", clock, "ENQUEUED", queue_name="q")
    workflows.fork_workflow(source, fork, 3)
    assert workflows.get_workflow("fork") == fork
    assert workflows.list_steps("fork") == [step(1, "1"), step(2, "2")]
    assert len(workflows.list_steps("source")) == 4


def test_fork_onto_an_existing_id_raises_and_writes_nothing(
    workflows: WorkflowPort, clock: FakeClock
) -> None:
    source = workflow_row("source", clock, "SUCCESS")
    taken = workflow_row("taken", clock, "SUCCESS")
    workflows.insert_workflows([source, taken])
    workflows.record_step("source", step(1), None)
    with pytest.raises(DBOSStorageError):
        workflows.fork_workflow(source, workflow_row("taken", clock, "ENQUEUED"), 2)
    assert workflows.get_workflow("taken") == taken
    assert workflows.list_steps("taken") == []


def test_requeue_puts_a_cancelled_workflow_on_a_queue_for_anyone(
    workflows: WorkflowPort, clock: FakeClock
) -> None:
    row = workflow_row("w1", clock, executor_id="e1", queue_partition_key="p", priority=3)
    row.recovery_attempts, row.timeout_ms = 2, 1000
    workflows.insert_workflows([row, workflow_row("done", clock, "SUCCESS")])
    workflows.cancel_workflow_tree("w1")
    assert workflows.requeue_workflow("w1", "retry-q")
    requeued = _stored(workflows, "w1")
    assert (requeued.status, requeued.queue_name, requeued.executor_id) == (
        "ENQUEUED",
        "retry-q",
        None,
    )
    assert (requeued.queue_partition_key, requeued.priority, requeued.recovery_attempts) == (
        None,
        None,
        0,
    )
    assert requeued.deadline_epoch_ms is None
    assert not workflows.requeue_workflow("done", "retry-q")
    assert _stored(workflows, "done").status == "SUCCESS"
