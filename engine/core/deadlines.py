"""Workflow timeout and deadline arithmetic. Pure: every instant is an argument (epoch ms).

A workflow's timeout is stored as ``timeout_ms`` and its durable deadline as
``deadline_epoch_ms``. A workflow started here gets its deadline at start; an enqueued one keeps
only its timeout, and its clock starts at dequeue. A child without a timeout of its own inherits
its parent's deadline (enqueued, as the time its parent has left). ``SetWorkflowTimeout(None)``
sets "no timeout" explicitly, which drops an inherited deadline. See docs/compatibility.md.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "StartTimeout",
    "deadline_at",
    "deadline_passed",
    "start_timeout",
    "timeout_ms",
]


def timeout_ms(timeout_seconds: float | None) -> int | None:
    """A timeout in whole milliseconds (truncated); None (no timeout) stays None."""
    return None if timeout_seconds is None else int(timeout_seconds * 1000)


def deadline_at(now_ms: int, timeout_ms: int | None) -> int | None:
    """The deadline of a timeout whose clock starts at ``now_ms`` (at start, or at dequeue)."""
    return None if timeout_ms is None else now_ms + timeout_ms


def deadline_passed(now_ms: int, deadline_ms: int | None) -> bool:
    """Whether a workflow with this deadline has timed out at ``now_ms`` (None never does)."""
    return deadline_ms is not None and now_ms >= deadline_ms


@dataclass(frozen=True, slots=True)
class StartTimeout:
    """The ``timeout_ms`` and ``deadline_epoch_ms`` of a workflow's new row."""

    timeout_ms: int | None
    deadline_ms: int | None


def start_timeout(
    now_ms: int,
    *,
    timeout_set: bool,
    timeout_seconds: float | None,
    parent_deadline_ms: int | None,
    queued: bool,
) -> StartTimeout:
    """The timeout and deadline of a workflow started (or enqueued, ``queued``) at ``now_ms``.

    ``timeout_set``/``timeout_seconds``: the caller's ``SetWorkflowTimeout``, if any (None there
    means explicitly none). ``parent_deadline_ms``: the deadline of the workflow starting this one
    as its child (None for a top-level start, or a parent without a deadline).
    """
    own = timeout_ms(timeout_seconds) if timeout_set else None
    if not queued:
        if not timeout_set:
            return StartTimeout(None, parent_deadline_ms)
        return StartTimeout(own, deadline_at(now_ms, own))
    if not timeout_set and parent_deadline_ms is not None:
        # Its clock starts at dequeue, with what the parent has left then; at least 1 ms, so a
        # parent already past its deadline still hands its child a (spent) timeout.
        return StartTimeout(max(1, parent_deadline_ms - now_ms), None)
    return StartTimeout(own, None)
