"""send/recv, events and streams, sync and async, on SQLite and PostgreSQL (real servers)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import delete, func, select, update

from engine import DBOS, DBOSClient, SetWorkflowID
from engine.dbos import _runtime
from engine.error import (
    DBOSInvalidArgumentError,
    DBOSNonExistentWorkflowError,
    DBOSNotInWorkflowError,
    DBOSSerializationError,
)
from engine.runtime.wakeups import PgListener, Waiter, WakeupHub
from engine.storage.messages import WAKEUP_CHANNEL
from engine.storage.schema import notifications, operation_outputs, workflow_status

pytestmark = pytest.mark.usefixtures("dbos")
REPO = Path(__file__).resolve().parents[2]
LONG = 30  # seconds: generous waits that end as soon as the awaited thing happens

# -- workflows (module level: the registry is process-global) --------------------------------------


@DBOS.workflow()
def receiver(topic: str | None, count: int, timeout: float = LONG) -> list[Any]:
    return [DBOS.recv(topic, timeout_seconds=timeout) for _ in range(count)]


@DBOS.workflow()
def sender(destination: str, messages: list[Any], topic: str | None) -> None:
    for message in messages:
        DBOS.send(destination, message, topic)


@DBOS.step()
def recv_in_step() -> Any:
    return DBOS.recv(timeout_seconds=0)


@DBOS.workflow()
def recv_from_step() -> Any:
    return recv_in_step()


@DBOS.workflow()
def publisher(values: list[Any], gate_topic: str | None = None) -> str:
    for value in values:
        DBOS.set_event("progress", value)
    if gate_topic is not None:
        DBOS.recv(gate_topic, timeout_seconds=LONG)
    DBOS.set_event("done", True)
    return "ok"


@DBOS.step()
def set_event_step(key: str, value: Any) -> None:
    DBOS.set_event(key, value)


@DBOS.workflow()
def event_from_step() -> None:
    set_event_step("from-step", 42)


@DBOS.workflow()
def event_reader(workflow_id: str, key: str, timeout: float) -> Any:
    return DBOS.get_event(workflow_id, key, timeout_seconds=timeout)


@DBOS.workflow()
def streamer(key: str, values: list[Any], close: bool, gate_topic: str | None = None) -> None:
    for value in values:
        DBOS.write_stream(key, value)
        if gate_topic is not None:
            DBOS.recv(gate_topic, timeout_seconds=LONG)
    if close:
        DBOS.close_stream(key)


@DBOS.step()
def stream_step(key: str, values: list[Any]) -> None:
    for value in values:
        DBOS.write_stream(key, value)


@DBOS.workflow()
def streamer_with_step(key: str) -> None:
    DBOS.write_stream(key, "from-workflow")
    stream_step(key, ["from-step-1", "from-step-2"])
    DBOS.close_stream(key)


@DBOS.workflow()
def write_after_close(key: str) -> None:
    DBOS.close_stream(key)
    DBOS.write_stream(key, "late")


@DBOS.workflow()
async def async_everything(peer: str) -> dict[str, Any]:
    await DBOS.set_event_async("ready", True)
    message = await DBOS.recv_async("ping", timeout_seconds=LONG)
    await DBOS.send_async(peer, f"pong:{message}", "pong")
    await DBOS.write_stream_async("s", 1)
    await DBOS.write_stream_async("s", 2)
    await DBOS.close_stream_async("s")
    seen = await DBOS.get_event_async(peer, "got", timeout_seconds=LONG)
    timed_out = await DBOS.recv_async("never", timeout_seconds=0.05)
    return {"message": message, "seen": seen, "timed_out": timed_out}


@DBOS.workflow()
async def async_receiver(topic: str) -> Any:
    message = await DBOS.recv_async(topic, timeout_seconds=LONG)
    await DBOS.set_event_async("got", message)
    return message


@DBOS.workflow()
def unserializable_send(destination: str) -> None:
    DBOS.send(destination, threading.Lock())


# -- helpers ---------------------------------------------------------------------------------------


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def start_receiver(topic: str | None, count: int, timeout: float = LONG) -> str:
    wf_id = new_id("rx")
    with SetWorkflowID(wf_id):
        DBOS.start_workflow(receiver, topic, count, timeout)
    return wf_id


def result(wf_id: str) -> Any:
    return DBOS.retrieve_workflow(wf_id).get_result()


def queued_messages(destination: str) -> int:
    with _runtime().db.read() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(notifications)
                .where(notifications.c.destination_uuid == destination)
            ).scalar_one()
        )


def rerun_as_recovery(wf_id: str, keep_steps_below: int | None = None) -> Any:
    """Make a finished workflow PENDING again (as if the process died) and recover it."""
    runtime = _runtime()
    with runtime.db.write() as conn:
        conn.execute(
            update(workflow_status)
            .where(workflow_status.c.workflow_uuid == wf_id)
            .values(status="PENDING", output=None, error=None)
        )
        if keep_steps_below is not None:
            conn.execute(
                delete(operation_outputs).where(
                    operation_outputs.c.workflow_uuid == wf_id,
                    operation_outputs.c.function_id >= keep_steps_below,
                )
            )
    assert wf_id in runtime.recover_pending()
    return result(wf_id)


def step_names(wf_id: str) -> list[str]:
    return [s["function_name"] for s in DBOS.list_workflow_steps(wf_id)]


# -- send / recv -----------------------------------------------------------------------------------


def test_messages_queue_per_topic_in_order() -> None:
    wf_id = start_receiver("a", 3)
    other = start_receiver(None, 1)
    for message in ("a1", "a2", "a3"):
        DBOS.send(wf_id, message, "a")
    DBOS.send(wf_id, "no-topic")  # a different queue: not seen by recv("a")
    DBOS.send(other, {"plain": 1})
    assert result(wf_id) == ["a1", "a2", "a3"]
    assert result(other) == [{"plain": 1}]
    assert queued_messages(wf_id) == 1


def test_recv_times_out_with_none_and_records_it() -> None:
    wf_id = start_receiver("nothing", 1, timeout=0.05)
    assert result(wf_id) == [None]
    assert step_names(wf_id) == ["DBOS.recv", "DBOS.deadline"]


def test_send_to_missing_workflow_is_an_error_and_writes_nothing() -> None:
    with pytest.raises(DBOSNonExistentWorkflowError, match="no-such-wf"):
        DBOS.send("no-such-wf", "hello")
    assert queued_messages("no-such-wf") == 0


@DBOS.workflow()
def send_to(destination: str) -> str:
    try:
        DBOS.send(destination, "hello")
    except DBOSNonExistentWorkflowError:
        return "missing"
    return "sent"


def test_a_failed_send_from_a_workflow_is_checkpointed_and_replays_as_failed() -> None:
    target = f"late-{uuid.uuid4().hex[:6]}"
    sender = DBOS.start_workflow(send_to, target)
    assert sender.get_result() == "missing"
    [step] = DBOS.list_workflow_steps(sender.get_workflow_id())
    assert step["function_name"] == "DBOS.send" and step["error"] is not None
    # The destination exists now, but a replay of the sender still sees the recorded failure.
    with SetWorkflowID(target):
        DBOS.start_workflow(send_to, "nobody-listens").get_result()
    replay = DBOS.fork_workflow(sender.get_workflow_id(), 2)
    assert replay.get_result() == "missing"
    assert queued_messages(target) == 0


def test_recv_outside_a_workflow_or_in_a_step_is_an_error() -> None:
    with pytest.raises(DBOSNotInWorkflowError, match=r"DBOS\.recv"):
        DBOS.recv()
    with pytest.raises(DBOSNotInWorkflowError, match="from a step"):
        recv_from_step()


def test_send_from_a_workflow_is_exactly_once_across_recovery() -> None:
    target = start_receiver("never", 1, timeout=LONG)
    wf_id = new_id("tx")
    with SetWorkflowID(wf_id):
        sender(target, ["m1", "m2"], "t")
    assert queued_messages(target) == 2
    rerun_as_recovery(wf_id)  # replays both sends
    rerun_as_recovery(wf_id, keep_steps_below=2)  # the second send runs again, same message ID
    assert queued_messages(target) == 2
    DBOS.cancel_workflow(target)


def test_send_with_idempotency_key_delivers_once_even_after_consumption() -> None:
    wf_id = start_receiver("k", 2, timeout=0.5)
    with SetWorkflowID("pay-123"):
        DBOS.send(wf_id, "paid", "k")
    while queued_messages(wf_id):  # the receiver took it: the message row is gone
        time.sleep(0.01)
    with SetWorkflowID("pay-123"):
        DBOS.send(wf_id, "paid", "k")
    assert result(wf_id) == ["paid", None]
    status = DBOS.get_workflow_status("pay-123")
    assert status is not None and status.name == "DBOS.send"


def test_recovered_recv_returns_the_same_message_and_consumes_no_other() -> None:
    wf_id = start_receiver("r", 1)
    DBOS.send(wf_id, "first", "r")
    assert result(wf_id) == ["first"]
    DBOS.send(wf_id, "second", "r")
    assert rerun_as_recovery(wf_id) == ["first"]
    assert queued_messages(wf_id) == 1


def test_shutdown_during_recv_records_nothing_and_recovery_waits_again(
    launch: Callable[..., None],
) -> None:
    wf_id = start_receiver("later", 1)
    hub = _runtime().messaging.hub
    while hub.waiting() == 0:
        time.sleep(0.01)
    DBOS.destroy()
    launch()  # same database: the PENDING receiver is recovered and waits again
    assert "DBOS.recv" not in step_names(wf_id)
    DBOS.send(wf_id, "after-restart", "later")
    assert result(wf_id) == ["after-restart"]


def test_client_send_get_event_and_read_stream(db_url: str) -> None:
    wf_id = new_id("pub")
    with SetWorkflowID(wf_id):
        handle = DBOS.start_workflow(publisher, ["p"], "gate")
    client = DBOSClient(db_url)
    try:
        assert client.get_event(wf_id, "progress", timeout_seconds=LONG) == "p"
        client.send(wf_id, "go", "gate", idempotency_key="client-key")
        client.send(wf_id, "go", "gate", idempotency_key="client-key")
        assert handle.get_result() == "ok"
        assert client.get_event(wf_id, "done", timeout_seconds=0) is True
        stream_id = new_id("st")
        with SetWorkflowID(stream_id):
            streamer("s", [1, 2], True)
        assert list(client.read_stream(stream_id, "s")) == [1, 2]
    finally:
        client.destroy()
    assert queued_messages(wf_id) == 0


@DBOS.workflow()
def client_relay(db_url: str, destination: str, source: str) -> Any:
    """Uses a DBOSClient inside a workflow: its calls are the workflow's steps."""
    client = DBOSClient(db_url)
    try:
        client.send(destination, "relayed", "relay")
        return client.get_event(source, "progress", timeout_seconds=LONG)
    finally:
        client.destroy()


def test_a_client_inside_a_workflow_checkpoints_in_it(db_url: str) -> None:
    receiver_id = start_receiver("relay", 1)
    source_id = new_id("pub")
    with SetWorkflowID(source_id):
        DBOS.start_workflow(publisher, ["p"], "gate")
    relay_id = new_id("relay")
    with SetWorkflowID(relay_id):
        assert client_relay(db_url, receiver_id, source_id) == "p"
    assert result(receiver_id) == ["relayed"]
    names = step_names(relay_id)
    assert names[0] == "DBOS.send" and "DBOS.getEvent" in names, names
    # Recovered from its steps, the relay neither sends again nor reads the event anew.
    assert rerun_as_recovery(relay_id) == "p"
    assert queued_messages(receiver_id) == 0
    DBOS.send(source_id, "go", "gate")


def test_concurrent_senders_all_deliver() -> None:
    wf_id = start_receiver(None, 20)
    threads = [threading.Thread(target=DBOS.send, args=(wf_id, i)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(result(wf_id)) == list(range(20))


def test_recv_without_timeout_takes_what_is_there_in_one_step() -> None:
    wf_id = start_receiver("z", 2, timeout=LONG)
    DBOS.send(wf_id, "first", "z")
    DBOS.send(wf_id, "second", "z")
    assert result(wf_id) == ["first", "second"]
    no_wait = new_id("rx")
    with SetWorkflowID(no_wait):
        assert receiver("z", 1, 0) == [None]
    assert step_names(no_wait) == ["DBOS.recv"]  # nothing to wait for: no deadline recorded


def test_recovered_recv_keeps_its_recorded_deadline(launch: Callable[..., None]) -> None:
    wf_id = start_receiver("late", 1, timeout=LONG)
    while "DBOS.deadline" not in step_names(wf_id):
        time.sleep(0.01)
    runtime = _runtime()
    past = runtime.codec.encode(runtime.now_ms() - 1000, "a deadline")
    with runtime.db.write() as conn:  # as if the process had been down past the deadline
        conn.execute(
            update(operation_outputs)
            .where(
                operation_outputs.c.workflow_uuid == wf_id,
                operation_outputs.c.function_name == "DBOS.deadline",
            )
            .values(output=past)
        )
    DBOS.destroy()  # the waiting recv records nothing; the workflow stays PENDING
    started = time.monotonic()
    launch()  # recovery redoes the recv: its deadline has passed, so it does not wait again
    assert result(wf_id) == [None]
    assert time.monotonic() - started < LONG / 2
    assert step_names(wf_id) == ["DBOS.recv", "DBOS.deadline"]


def test_racing_takes_of_one_step_consume_one_message_once() -> None:
    wf_id = start_receiver("never", 1, timeout=LONG)
    DBOS.send(wf_id, "first", "race")
    DBOS.send(wf_id, "second", "race")
    store = _runtime().messaging.store
    tries: list[Any] = []

    def take() -> None:
        tries.append(
            store.try_wait_step(
                wf_id,
                1000,
                "DBOS.recv",
                lambda conn: store.take_message(conn, wf_id, "race"),
                final=True,
            )
        )

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(t.done for t in tries)
    recorded = {t.earlier.output if t.earlier is not None else t.value for t in tries}
    assert [_runtime().codec.decode(v, "message") for v in recorded] == ["first"]
    assert queued_messages(wf_id) == 1  # the losers' takes rolled back: "second" is still there
    DBOS.cancel_workflow(wf_id)


def test_a_wake_during_the_first_try_is_not_lost() -> None:
    m = _runtime().messaging
    key = "test-wake-during-probe"
    calls: list[float] = []

    def probe() -> bool | None:
        calls.append(time.monotonic())
        return True if len(calls) > 1 else None

    with m.watching(key) as waiter:
        probe()  # finds nothing; a write commits and wakes the key right after
        m.wake(key)
        started = time.monotonic()
        assert m.keep_probing(waiter, probe, LONG, None, probed=True) is True
    assert time.monotonic() - started < 0.5  # woken, not left to poll


# -- events ----------------------------------------------------------------------------------------


def test_events_latest_value_wins_and_are_visible_while_running() -> None:
    wf_id = new_id("pub")
    with SetWorkflowID(wf_id):
        handle = DBOS.start_workflow(publisher, [1, 2, 3], "gate")
    assert DBOS.get_event(wf_id, "progress", timeout_seconds=LONG) in (1, 2, 3)
    assert DBOS.get_event(wf_id, "done", timeout_seconds=0.05) is None  # still running
    DBOS.send(wf_id, "go", "gate")
    assert DBOS.get_event(wf_id, "done", timeout_seconds=LONG) is True
    assert handle.get_result() == "ok"
    assert DBOS.get_event(wf_id, "progress") == 3
    assert DBOS.get_all_events(wf_id) == {"progress": 3, "done": True}
    assert DBOS.get_all_events("no-such-wf") == {}


def test_get_event_waits_for_the_event() -> None:
    wf_id = new_id("pub")
    got: list[Any] = []
    reader = threading.Thread(
        target=lambda: got.append(DBOS.get_event(wf_id, "done", timeout_seconds=LONG))
    )
    reader.start()  # waits before the workflow even exists
    with SetWorkflowID(wf_id):
        publisher([])
    reader.join()
    assert got == [True]


def test_get_event_in_a_workflow_is_recorded_for_recovery() -> None:
    source = new_id("pub")
    with SetWorkflowID(source):
        publisher(["v1"])
    reader_id = new_id("evr")
    with SetWorkflowID(reader_id):
        assert event_reader(source, "progress", LONG) == "v1"
    store = _runtime().messaging.store
    with _runtime().db.write() as conn:  # the event changes after the reader recorded it
        store.set_event(conn, source, "progress", _runtime().codec.encode("v2", "event"))
    assert DBOS.get_event(source, "progress") == "v2"
    assert rerun_as_recovery(reader_id) == "v1"
    assert step_names(reader_id) == ["DBOS.getEvent"]
    timeout_id = new_id("evr")
    with SetWorkflowID(timeout_id):
        assert event_reader(source, "missing", 0.05) is None


def test_set_event_from_a_step() -> None:
    wf_id = new_id("evs")
    with SetWorkflowID(wf_id):
        event_from_step()
    assert DBOS.get_event(wf_id, "from-step", timeout_seconds=0) == 42


def test_set_event_outside_a_workflow_is_an_error() -> None:
    with pytest.raises(DBOSNotInWorkflowError, match="set_event"):
        DBOS.set_event("k", 1)


# -- streams ---------------------------------------------------------------------------------------


def test_stream_live_in_order_then_reread_after_completion() -> None:
    wf_id = new_id("st")
    with SetWorkflowID(wf_id):
        DBOS.start_workflow(streamer, "s", ["a", "b", "c"], True, "next")
    seen: list[Any] = []
    for value in DBOS.read_stream(wf_id, "s"):
        seen.append(value)
        DBOS.send(wf_id, "go", "next")  # the producer writes the next value only now
    assert seen == ["a", "b", "c"]
    result(wf_id)
    assert list(DBOS.read_stream(wf_id, "s")) == ["a", "b", "c"]


def test_stream_ends_when_the_workflow_ends_without_closing() -> None:
    wf_id = new_id("st")
    with SetWorkflowID(wf_id):
        handle = DBOS.start_workflow(streamer, "s", [1, 2], False, "next")
    reader = DBOS.read_stream(wf_id, "s")
    assert next(reader) == 1
    DBOS.send(wf_id, "go", "next")
    assert next(reader) == 2
    DBOS.send(wf_id, "go", "next")
    assert list(reader) == []  # ends once the workflow finished
    handle.get_result()
    assert list(DBOS.read_stream(wf_id, "other-key")) == []
    assert list(DBOS.read_stream("no-such-wf", "s")) == []


def test_stream_writes_from_steps_and_writes_after_close() -> None:
    wf_id = new_id("st")
    with SetWorkflowID(wf_id):
        streamer_with_step("s")
    assert list(DBOS.read_stream(wf_id, "s")) == ["from-workflow", "from-step-1", "from-step-2"]
    with pytest.raises(DBOSInvalidArgumentError, match="closed"):
        write_after_close("s")


def test_stream_writes_from_a_workflow_are_exactly_once_across_recovery() -> None:
    wf_id = new_id("st")
    with SetWorkflowID(wf_id):
        streamer("s", ["x", "y"], True)
    rerun_as_recovery(wf_id)  # both writes and the close replay
    rerun_as_recovery(wf_id, keep_steps_below=3)  # closing again changes nothing
    assert list(DBOS.read_stream(wf_id, "s")) == ["x", "y"]


# -- async -----------------------------------------------------------------------------------------


def test_async_variants() -> None:
    async def main() -> tuple[dict[str, Any], Any, list[Any]]:
        peer = new_id("peer")
        with SetWorkflowID(peer):
            await DBOS.start_workflow_async(async_receiver, "pong")
        wf_id = new_id("async")
        with SetWorkflowID(wf_id):
            handle = await DBOS.start_workflow_async(async_everything, peer)
        assert await DBOS.get_event_async(wf_id, "ready", timeout_seconds=LONG) is True
        await DBOS.send_async(wf_id, "ping!", "ping")
        streamed = [v async for v in DBOS.read_stream_async(wf_id, "s")]
        pong = await (await DBOS.retrieve_workflow_async(peer)).get_result()
        out = await handle.get_result()
        assert await DBOS.get_all_events_async(wf_id) == {"ready": True}
        return out, pong, streamed

    out, pong, streamed = asyncio.run(main())
    assert out == {"message": "ping!", "seen": "pong:ping!", "timed_out": None}
    assert pong == "pong:ping!"
    assert streamed == [1, 2]


def test_many_async_waiters_do_not_hold_threads() -> None:
    count = 60  # more than asyncio's default thread pool (at most 32 threads)

    async def main() -> list[Any]:
        ids = [new_id("many") for _ in range(count)]
        handles = []
        for wf_id in ids:
            with SetWorkflowID(wf_id):
                handles.append(await DBOS.start_workflow_async(async_receiver, "t"))
        await asyncio.sleep(0)  # let them all start waiting
        waiting = _runtime().messaging.hub
        while waiting.waiting() < count:
            await asyncio.sleep(0.01)
        for index, wf_id in enumerate(reversed(ids)):
            await DBOS.send_async(wf_id, index, "t")
        return [await h.get_result() for h in handles]

    assert asyncio.run(main()) == list(reversed(range(count)))


# -- bad input -------------------------------------------------------------------------------------


def test_unserializable_values_are_clear_errors_and_write_nothing() -> None:
    wf_id = start_receiver(None, 1, timeout=0.05)
    with pytest.raises(DBOSSerializationError, match="message to workflow"):
        DBOS.send(wf_id, threading.Lock())
    with pytest.raises(DBOSSerializationError, match="message to workflow"):
        unserializable_send(wf_id)
    assert result(wf_id) == [None]
    assert queued_messages(wf_id) == 0


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: DBOS.send(123, "m"), "destination_id"),  # type: ignore[arg-type]
        (lambda: DBOS.send("", "m"), "destination_id"),
        (lambda: DBOS.send("wf", "m", topic=5), "topic"),  # type: ignore[arg-type]
        (lambda: DBOS.get_event(None, "k"), "workflow_id"),  # type: ignore[arg-type]
        (lambda: DBOS.get_event("wf", 1), "event key"),  # type: ignore[arg-type]
        (lambda: DBOS.get_event("wf", "k", timeout_seconds=-1), "timeout_seconds"),
        (lambda: DBOS.get_event("wf", "k", timeout_seconds="1"), "timeout_seconds"),  # type: ignore[arg-type]
        (lambda: DBOS.read_stream("wf", 7), "stream key"),  # type: ignore[arg-type]
        (lambda: DBOS.get_all_events(3), "workflow_id"),  # type: ignore[arg-type]
    ],
)
def test_wrong_argument_types_are_rejected(call: Callable[[], Any], match: str) -> None:
    with pytest.raises(DBOSInvalidArgumentError, match=match):
        call()


# -- across processes ------------------------------------------------------------------------------

_CHILD = """
import sys
from engine import DBOS, DBOSClient, SetWorkflowID

url, mode, wf_id = sys.argv[1:4]

@DBOS.workflow(name="xproc_receiver")
def xproc_receiver():
    return DBOS.recv("x", timeout_seconds=60)

DBOS(config={"name": "child", "system_database_url": url, "executor_id": "child"})
DBOS.launch()
if mode == "send":
    DBOS.send(wf_id, "from-child", "x")
else:
    with SetWorkflowID(wf_id):
        print(xproc_receiver(), flush=True)
DBOS.destroy()
"""


def _child(db_url: str, mode: str, wf_id: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, db_url, mode, wf_id],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_messages_cross_processes(db_url: str) -> None:
    wf_id = start_receiver("x", 1)
    child = _child(db_url, "send", wf_id)
    assert child.wait(timeout=LONG) == 0, child.stderr.read() if child.stderr else ""
    assert result(wf_id) == ["from-child"]

    remote = new_id("remote")
    child = _child(db_url, "recv", remote)
    while DBOS.get_workflow_status(remote) is None:
        assert child.poll() is None, child.stderr.read() if child.stderr else ""
        time.sleep(0.02)
    DBOS.send(remote, "to-child", "x")
    out, err = child.communicate(timeout=LONG)
    assert child.returncode == 0, err
    assert out.strip() == "to-child"


# -- PostgreSQL wake-ups ---------------------------------------------------------------------------


def _pg_conn(db_url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(
        db_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
    )


def test_pg_listener_wakes_waiters_and_reconnects(db_url: str) -> None:
    if db_url.startswith("sqlite"):
        pytest.skip("LISTEN/NOTIFY is PostgreSQL only; SQLite waits poll")
    stopping = threading.Event()
    hub = WakeupHub()
    listener = PgListener(_runtime().db, hub, stopping)
    thread = threading.Thread(target=listener.run, daemon=True)
    thread.start()
    try:
        assert listener.connected.wait(LONG)
        _notify_and_expect_wake(db_url, hub, "key-1")
        with _pg_conn(db_url) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE query LIKE 'LISTEN %' AND datname = current_database() "
                "AND pid <> pg_backend_pid()"
            )
        _notify_and_expect_wake(db_url, hub, "key-2")  # delivered after the reconnect
    finally:
        stopping.set()
        thread.join(LONG)
    assert not thread.is_alive()


def _notify_and_expect_wake(db_url: str, hub: WakeupHub, key: str) -> None:
    waiter = Waiter()
    with hub.watching(key, waiter), _pg_conn(db_url) as conn:
        # Until the listener is (re)connected a NOTIFY is lost; keep sending, as a waiter's
        # polling would keep looking.
        for _ in range(300):
            conn.execute("SELECT pg_notify(%s, %s)", (WAKEUP_CHANNEL, key))
            if waiter._event.wait(0.1):
                return
    raise AssertionError(f"no wake-up for {key}")
