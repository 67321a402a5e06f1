"""The MessagePort contract: messages taken once, idempotent sends, latest events, streams."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from engine.error import DBOSInvalidArgumentError, DBOSNonExistentWorkflowError
from engine.storage.ports import MessagePort, WorkflowPort
from engine.storage.store import StepRecord
from tests.engine.ports.support import FakeClock, step, workflow_row

DEST = "dest"


@pytest.fixture(autouse=True)
def _destination(workflows: WorkflowPort, clock: FakeClock) -> None:
    """The workflow that every test sends to and publishes from."""
    workflows.insert_workflow(workflow_row(DEST, clock))


def _receive(messages: MessagePort, function_id: int, topic: str | None = "t") -> str | None:
    """A recv step of ``DEST`` that does not wait: what it took (and recorded), or None."""
    tried = messages.try_wait_step(
        DEST,
        function_id,
        "DBOS.recv",
        lambda conn: messages.take_message(conn, DEST, topic),
        final=True,
    )
    assert tried.done and tried.earlier is None
    return tried.value


def _no_value(_: None) -> str | None:
    return None


# -- messages -------------------------------------------------------------------------------------


def test_each_message_is_received_once_in_order(messages: MessagePort) -> None:
    assert not messages.has_message(DEST, "t")
    for message in ("m1", "m2"):
        assert messages.send_now(DEST, "t", message, None)
    assert messages.has_message(DEST, "t")
    assert [_receive(messages, fid) for fid in (1, 2, 3)] == ["m1", "m2", None]
    assert not messages.has_message(DEST, "t")


def test_concurrent_receivers_never_take_a_message_twice(messages: MessagePort) -> None:
    sent = [f"m{i}" for i in range(3)]
    for message in sent:
        messages.send_now(DEST, "t", message, None)
    with ThreadPoolExecutor(4) as pool:
        taken = [m for m in pool.map(lambda fid: _receive(messages, fid), range(1, 7)) if m]
    assert len(taken) == len(set(taken)), taken
    rest: list[str] = []
    while (left := _receive(messages, 100 + len(rest))) is not None:
        rest.append(left)
    assert sorted(taken + rest) == sent, "nothing lost either"


def test_topics_are_separate_queues(messages: MessagePort) -> None:
    messages.send_now(DEST, "a", "for a", None)
    messages.send_now(DEST, None, "untopiced", None)
    assert _receive(messages, 1, "b") is None
    assert _receive(messages, 2, None) == "untopiced"
    assert _receive(messages, 3, "a") == "for a"


def test_a_send_to_a_missing_workflow_raises_and_keeps_its_key(messages: MessagePort) -> None:
    with pytest.raises(DBOSNonExistentWorkflowError):
        messages.send_now("nobody", "t", "lost", "key-1")
    assert messages.send_now(DEST, "t", "delivered", "key-1"), "the failed send took no key"
    assert _receive(messages, 1) == "delivered"


def test_an_idempotency_key_sends_once_even_after_consumption(messages: MessagePort) -> None:
    assert messages.send_now(DEST, "t", "once", "key-1")
    assert not messages.send_now(DEST, "t", "twice", "key-1")
    assert _receive(messages, 1) == "once"
    assert not messages.send_now(DEST, "t", "thrice", "key-1")
    assert _receive(messages, 2) is None


def test_a_send_step_sends_once(messages: MessagePort, workflows: WorkflowPort) -> None:
    def send_step(function_id: int, message: str) -> tuple[None, StepRecord | None]:
        return messages.record_with(
            DEST,
            function_id,
            "DBOS.send",
            lambda conn: messages.send(conn, DEST, "t", message, "sender-1"),
            _no_value,
        )

    assert send_step(1, "hello") == (None, None)
    assert send_step(1, "again") == (None, StepRecord(1, "DBOS.send", None, None, None))
    assert send_step(2, "same message ID") == (None, None)
    assert [_receive(messages, fid) for fid in (3, 4)] == ["hello", None]
    assert workflows.load_steps(DEST).keys() == {1, 2, 3, 4}


def test_a_send_step_to_a_missing_workflow_records_nothing(
    messages: MessagePort, workflows: WorkflowPort
) -> None:
    with pytest.raises(DBOSNonExistentWorkflowError):
        messages.record_with(
            DEST,
            1,
            "DBOS.send",
            lambda conn: messages.send(conn, "nobody", "t", "lost", None),
            _no_value,
        )
    assert workflows.load_steps(DEST) == {}


# -- waiting steps --------------------------------------------------------------------------------


def test_a_wait_records_its_deadline_once(messages: MessagePort) -> None:
    def try_once(deadline: StepRecord) -> tuple[bool, StepRecord | None]:
        tried = messages.try_wait_step(
            DEST,
            1,
            "DBOS.recv",
            lambda conn: messages.take_message(conn, DEST, "t"),
            final=False,
            deadline=deadline,
        )
        return tried.done, tried.earlier_deadline

    first, second = step(2, "1000", "DBOS.deadline"), step(2, "9999", "DBOS.deadline")
    assert try_once(first) == (False, None)
    assert try_once(second) == (False, first), "a later try gets the first deadline back"


def test_a_waiting_step_takes_its_message_once(
    messages: MessagePort, workflows: WorkflowPort
) -> None:
    def take(function_id: int) -> tuple[bool, str | None, StepRecord | None]:
        tried = messages.try_wait_step(
            DEST,
            function_id,
            "DBOS.recv",
            lambda conn: messages.take_message(conn, DEST, "t"),
            final=False,
        )
        return tried.done, tried.value, tried.earlier

    assert take(1) == (False, None, None)
    assert workflows.load_steps(DEST) == {}, "nothing found, not final: no step"
    messages.send_now(DEST, "t", "first", None)
    messages.send_now(DEST, "t", "second", None)
    assert take(1) == (True, "first", None)
    assert take(1) == (True, None, StepRecord(1, "DBOS.recv", "first", None, None))
    assert messages.has_message(DEST, "t"), "the repeat rolled its take back"
    assert take(2) == (True, "second", None)


def test_a_final_try_records_that_nothing_came(
    messages: MessagePort, workflows: WorkflowPort
) -> None:
    assert _receive(messages, 1) is None
    assert workflows.load_steps(DEST) == {1: StepRecord(1, "DBOS.recv", None, None, None)}


# -- events ---------------------------------------------------------------------------------------


def test_the_latest_event_value_wins(messages: MessagePort) -> None:
    assert messages.get_event(DEST, "k") is None
    messages.set_event_now(DEST, "k", "1")
    messages.set_event_now(DEST, "k", "2")
    messages.set_event_now(DEST, "other", "x")
    assert messages.get_event(DEST, "k") == "2"
    assert messages.all_events(DEST) == {"k": "2", "other": "x"}
    assert messages.all_events("nobody") == {}


def test_an_event_step_publishes_once_and_reads_in_its_transaction(
    messages: MessagePort,
) -> None:
    def publish(function_id: int, value: str) -> tuple[None, StepRecord | None]:
        return messages.record_with(
            DEST,
            function_id,
            "DBOS.setEvent",
            lambda conn: messages.set_event(conn, DEST, "k", value),
            _no_value,
        )

    assert publish(1, "a") == (None, None)
    assert publish(1, "b")[1] == StepRecord(1, "DBOS.setEvent", None, None, None)
    read = messages.record_with(
        DEST, 2, "DBOS.getEvent", lambda conn: messages.event_in(conn, DEST, "k"), lambda v: v
    )
    assert read == ("a", None)
    missing = messages.record_with(
        DEST, 3, "DBOS.getEvent", lambda conn: messages.event_in(conn, DEST, "none"), lambda v: v
    )
    assert missing == (None, None)


# -- streams --------------------------------------------------------------------------------------


def test_a_stream_keeps_order_and_ends_when_closed(messages: MessagePort) -> None:
    assert messages.read_stream(DEST, "s", 0) == []
    for value in ("a", "b"):
        messages.append_stream_now(DEST, "s", value, False)
    messages.append_stream_now(DEST, "s", None, True)
    messages.append_stream_now(DEST, "s", None, True)  # closing again changes nothing
    assert messages.read_stream(DEST, "s", 0) == [(0, "a", False), (1, "b", False), (2, None, True)]
    assert messages.read_stream(DEST, "s", 1) == [(1, "b", False), (2, None, True)]
    assert messages.read_stream(DEST, "other", 0) == []
    with pytest.raises(DBOSInvalidArgumentError):
        messages.append_stream_now(DEST, "s", "late", False)
    assert len(messages.read_stream(DEST, "s", 0)) == 3


def test_a_stream_step_appends_once(messages: MessagePort) -> None:
    def write(function_id: int, value: str) -> tuple[None, StepRecord | None]:
        return messages.record_with(
            DEST,
            function_id,
            "DBOS.writeStream",
            lambda conn: messages.append_stream(conn, DEST, "s", value, False),
            _no_value,
        )

    assert write(1, "a") == (None, None)
    assert write(1, "a")[1] is not None
    assert write(2, "b") == (None, None)
    assert messages.read_stream(DEST, "s", 0) == [(0, "a", False), (1, "b", False)]


# -- wake-up keys ---------------------------------------------------------------------------------


def test_wakeup_keys_name_one_thing_each(messages: MessagePort) -> None:
    assert messages.message_key(DEST, "t") == messages.message_key(DEST, "t")
    assert messages.message_key(DEST, None) == messages.message_key(DEST, None)
    keys = {
        messages.message_key(DEST, "t"),
        messages.message_key(DEST, "u"),
        messages.message_key(DEST, None),
        messages.message_key("elsewhere", "t"),
        messages.event_key(DEST, "t"),
        messages.stream_key(DEST, "t"),
        messages.event_key("elsewhere", "t"),
    }
    assert len(keys) == 7
