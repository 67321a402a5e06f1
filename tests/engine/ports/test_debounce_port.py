"""The DebouncePort contract: calls extend a window up to its max wait; a window fires once."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

from engine.core.debounce import next_fire_at
from engine.storage.debounce import DEBOUNCE_HOLD_QUEUE, DebounceCall, FireOutcome, Window
from engine.storage.ports import DebouncePort, WorkflowPort
from engine.storage.store import WorkflowRow
from tests.engine.ports.support import FakeClock

PERIOD_MS = 1000


def _call(
    new_id: str,
    inputs: str,
    key: str = "k",
    max_wait_ms: int | None = None,
    queue: str | None = None,
    namespace: str = "ns",
) -> DebounceCall:
    return DebounceCall(namespace, key, PERIOD_MS, max_wait_ms, queue, "wf", inputs, new_id)


def _stored(workflows: WorkflowPort, workflow_id: str) -> WorkflowRow:
    row = workflows.get_workflow(workflow_id)
    assert row is not None, f"workflow {workflow_id!r} is not stored"
    return row


def test_a_first_call_opens_a_window_with_a_held_workflow(
    debounces: DebouncePort, workflows: WorkflowPort, clock: FakeClock
) -> None:
    now = clock.now_ms()
    assert debounces.debounce(_call("w1", "[1]")) == Window("ns", "k", "w1", now + PERIOD_MS)
    held = _stored(workflows, "w1")
    assert (held.status, held.queue_name, held.name, held.inputs) == (
        "ENQUEUED",
        DEBOUNCE_HOLD_QUEUE,
        "wf",
        "[1]",
    )


def test_a_call_extends_the_window_with_its_inputs(
    debounces: DebouncePort, workflows: WorkflowPort, clock: FakeClock
) -> None:
    debounces.debounce(_call("w1", "[1]"))
    later = clock.advance(600)
    assert debounces.debounce(_call("w2", "[2]")) == Window("ns", "k", "w1", later + PERIOD_MS)
    assert _stored(workflows, "w1").inputs == "[2]"
    assert workflows.get_workflow("w2") is None, "the joining call's ID is not used"


def test_max_wait_caps_the_window(debounces: DebouncePort, clock: FakeClock) -> None:
    first = clock.now_ms()
    deadlines = []
    for call in range(4):
        window = debounces.debounce(_call(f"w{call}", f"[{call}]", max_wait_ms=2500))
        deadlines.append(window.fire_at_ms - first)
        clock.advance(900)
    assert deadlines == [1000, 1900, 2500, 2500]


def test_a_window_fires_once_when_due(
    debounces: DebouncePort, workflows: WorkflowPort, clock: FakeClock
) -> None:
    window = debounces.debounce(_call("w1", "[1]"))
    clock.advance(PERIOD_MS - 1)
    assert debounces.fire("ns", "k", "e1", "v1") == FireOutcome(None, window.fire_at_ms)
    assert _stored(workflows, "w1").status == "ENQUEUED"
    fired_at = clock.advance(1)
    released = debounces.fire("ns", "k", "e1", "v1").released
    assert released is not None and released == _stored(workflows, "w1")
    assert (released.status, released.executor_id, released.queue_name) == ("PENDING", "e1", None)
    assert (released.application_version, released.started_at_epoch_ms) == ("v1", fired_at)
    assert released.inputs == "[1]"
    assert debounces.fire("ns", "k", "e1", "v1") == FireOutcome(None, None)
    assert debounces.due_windows(clock.now_ms()) == []


def test_a_call_after_the_fire_opens_a_new_window(
    debounces: DebouncePort, clock: FakeClock
) -> None:
    debounces.debounce(_call("w1", "[1]"))
    clock.advance(PERIOD_MS)
    assert debounces.fire("ns", "k", "e1", "v1").released is not None
    assert debounces.debounce(_call("w2", "[2]")).workflow_id == "w2"


def test_a_queued_window_is_released_to_its_queue(
    debounces: DebouncePort, workflows: WorkflowPort, clock: FakeClock
) -> None:
    debounces.debounce(_call("w1", "[1]", queue="work"))
    clock.advance(PERIOD_MS)
    released = debounces.fire("ns", "k", "e1", "v1").released
    assert released is not None
    assert (released.status, released.queue_name, released.executor_id) == (
        "ENQUEUED",
        "work",
        None,
    )


def test_concurrent_firers_release_the_window_once(
    debounces: DebouncePort, clock: FakeClock
) -> None:
    debounces.debounce(_call("w1", "[1]"))
    clock.advance(PERIOD_MS)
    with ThreadPoolExecutor(4) as pool:
        outcomes = list(
            pool.map(lambda e: debounces.fire("ns", "k", e, "v1"), ["e1", "e2", "e3", "e4"])
        )
    released = [o.released for o in outcomes if o.released is not None]
    assert len(released) == 1, outcomes
    assert released[0].workflow_uuid == "w1"


def test_a_cancelled_windows_next_call_opens_a_new_one(
    debounces: DebouncePort, workflows: WorkflowPort, clock: FakeClock
) -> None:
    debounces.debounce(_call("w1", "[1]"))
    workflows.cancel_workflow_tree("w1")
    now = clock.advance(100)
    assert debounces.debounce(_call("w2", "[2]")) == Window("ns", "k", "w2", now + PERIOD_MS)
    assert _stored(workflows, "w1").inputs == "[1]"
    assert _stored(workflows, "w2").status == "ENQUEUED"


def test_keys_and_namespaces_have_windows_of_their_own(
    debounces: DebouncePort, clock: FakeClock
) -> None:
    ids = [
        debounces.debounce(_call("a", "[1]", key="k1")).workflow_id,
        debounces.debounce(_call("b", "[1]", key="k2")).workflow_id,
        debounces.debounce(_call("c", "[1]", key="k1", namespace="other")).workflow_id,
    ]
    assert ids == ["a", "b", "c"]
    clock.advance(PERIOD_MS)
    assert debounces.fire("ns", "k1", "e1", "v1").released is not None
    assert {w.workflow_id for w in debounces.due_windows(clock.now_ms())} == {"b", "c"}


def test_due_windows_earliest_first(debounces: DebouncePort, clock: FakeClock) -> None:
    start = clock.now_ms()
    for offset, key in [(200, "late"), (0, "early"), (100, "middle")]:
        clock.ms = start + offset
        debounces.debounce(_call(key, "[1]", key=key))
    assert [w.key for w in debounces.due_windows(start + PERIOD_MS + 100)] == ["early", "middle"]
    assert [w.key for w in debounces.due_windows(start + PERIOD_MS + 200, limit=2)] == [
        "early",
        "middle",
    ]
    assert len(debounces.due_windows(start + PERIOD_MS + 200)) == 3
    assert debounces.due_windows(start + PERIOD_MS - 1) == []
    assert debounces.fire("ns", "nobody", "e1", "v1") == FireOutcome(None, None)


def test_concurrent_first_calls_share_one_window(
    debounces: DebouncePort, workflows: WorkflowPort
) -> None:
    new_ids = [f"w{i}" for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        windows = list(pool.map(lambda w: debounces.debounce(_call(w, f'["{w}"]')), new_ids))
    assert len({w.workflow_id for w in windows}) == 1, windows
    created = [w for w in new_ids if workflows.get_workflow(w) is not None]
    assert created == [windows[0].workflow_id], "one held workflow per window"


def test_stored_deadlines_follow_the_core_rule(debounces: DebouncePort, clock: FakeClock) -> None:
    """The SQL upsert computes a joined window's deadline itself (one statement, no read first);
    it must agree with engine.core.debounce.next_fire_at for every call."""
    rng = random.Random(15)
    max_wait_ms = 5_000
    opened: int | None = None
    for call in range(30):
        period_ms = rng.choice([1, 250, 1_000, 4_000, 9_000])
        now = clock.advance(rng.randrange(0, 400))
        opened = now if opened is None else opened
        if now >= opened + max_wait_ms:
            break  # the window is due: a call from here may find it fired (another test's case)
        window = debounces.debounce(
            DebounceCall("ns", "k", period_ms, max_wait_ms, None, "wf", f"[{call}]", f"w{call}")
        )
        assert window.fire_at_ms == next_fire_at(now, period_ms, opened + max_wait_ms), call
    assert call > 10, "the calls covered a good part of the window"
