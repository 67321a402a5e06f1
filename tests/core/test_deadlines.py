"""Workflow timeouts and deadlines: the pure arithmetic of engine.core.deadlines."""

from __future__ import annotations

import pytest

from engine.core.deadlines import (
    StartTimeout,
    deadline_at,
    deadline_passed,
    start_timeout,
    timeout_ms,
)

NOW = 1_700_000_000_000


def start(
    *,
    timeout_set: bool = False,
    timeout_seconds: float | None = None,
    parent_deadline_ms: int | None = None,
    queued: bool = False,
) -> StartTimeout:
    return start_timeout(
        NOW,
        timeout_set=timeout_set,
        timeout_seconds=timeout_seconds,
        parent_deadline_ms=parent_deadline_ms,
        queued=queued,
    )


# -- conversions ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "ms"),
    [(None, None), (0, 0), (1, 1000), (2.5, 2500), (0.0015, 1), (0.0009, 0), (-1.5, -1500)],
)
def test_timeout_ms_truncates_to_whole_milliseconds(seconds: float | None, ms: int | None) -> None:
    assert timeout_ms(seconds) == ms


def test_deadline_at_counts_from_the_given_instant() -> None:
    assert deadline_at(NOW, 5000) == NOW + 5000
    assert deadline_at(NOW, 0) == NOW  # a zero timeout is due at once, not "no timeout"
    assert deadline_at(NOW, -10) == NOW - 10
    assert deadline_at(NOW, None) is None


def test_deadline_passed_at_and_after_the_deadline_only() -> None:
    assert not deadline_passed(NOW - 1, NOW)
    assert deadline_passed(NOW, NOW)
    assert deadline_passed(NOW + 1, NOW)
    assert not deadline_passed(NOW, None)


# -- a workflow started here ----------------------------------------------------------------------


def test_no_timeout_and_no_parent_has_neither() -> None:
    assert start() == StartTimeout(None, None)


def test_an_own_timeout_starts_its_clock_now() -> None:
    assert start(timeout_set=True, timeout_seconds=2.5) == StartTimeout(2500, NOW + 2500)


def test_an_own_timeout_beats_the_parents_deadline() -> None:
    later = start(timeout_set=True, timeout_seconds=60, parent_deadline_ms=NOW + 1000)
    assert later == StartTimeout(60_000, NOW + 60_000)
    sooner = start(timeout_set=True, timeout_seconds=1, parent_deadline_ms=NOW + 60_000)
    assert sooner == StartTimeout(1000, NOW + 1000)


def test_a_child_without_a_timeout_inherits_the_parents_deadline_not_its_timeout() -> None:
    assert start(parent_deadline_ms=NOW + 1234) == StartTimeout(None, NOW + 1234)


def test_a_child_of_a_parent_past_its_deadline_inherits_the_past_deadline() -> None:
    assert start(parent_deadline_ms=NOW - 5) == StartTimeout(None, NOW - 5)


def test_an_explicit_none_drops_the_inherited_deadline() -> None:
    assert start(timeout_set=True, parent_deadline_ms=NOW + 1234) == StartTimeout(None, None)


@pytest.mark.parametrize("seconds", [0, 0.0004, -3])
def test_zero_or_negative_timeouts_give_a_deadline_already_due(seconds: float) -> None:
    # SetWorkflowTimeout refuses these at the edge; the arithmetic itself does not guard them.
    plan = start(timeout_set=True, timeout_seconds=seconds)
    assert plan.timeout_ms == int(seconds * 1000)
    assert plan.deadline_ms is not None and deadline_passed(NOW, plan.deadline_ms)


def test_the_timeout_seconds_are_ignored_unless_set() -> None:
    assert start(timeout_seconds=5) == StartTimeout(None, None)


# -- a workflow enqueued: the clock starts at dequeue ---------------------------------------------


def test_an_enqueued_timeout_has_no_deadline_yet() -> None:
    assert start(queued=True, timeout_set=True, timeout_seconds=3) == StartTimeout(3000, None)


def test_an_enqueued_workflow_without_timeout_has_neither() -> None:
    assert start(queued=True) == StartTimeout(None, None)


def test_an_enqueued_child_takes_what_its_parent_has_left_as_its_timeout() -> None:
    assert start(queued=True, parent_deadline_ms=NOW + 4000) == StartTimeout(4000, None)


@pytest.mark.parametrize("past", [0, 1, 10_000])
def test_an_enqueued_child_of_a_parent_at_or_past_its_deadline_gets_one_ms(past: int) -> None:
    assert start(queued=True, parent_deadline_ms=NOW - past) == StartTimeout(1, None)


def test_an_enqueued_child_with_its_own_timeout_ignores_the_parents() -> None:
    plan = start(queued=True, timeout_set=True, timeout_seconds=9, parent_deadline_ms=NOW + 10)
    assert plan == StartTimeout(9000, None)


def test_an_enqueued_child_with_explicit_none_has_no_timeout() -> None:
    plan = start(queued=True, timeout_set=True, parent_deadline_ms=NOW + 10)
    assert plan == StartTimeout(None, None)


def test_the_deadline_at_dequeue_counts_the_stored_timeout_from_the_dequeue() -> None:
    enqueued = start(queued=True, timeout_set=True, timeout_seconds=3)
    dequeued_at = NOW + 60_000  # a minute in the queue does not eat into the timeout
    assert deadline_at(dequeued_at, enqueued.timeout_ms) == dequeued_at + 3000
