"""Queue admission: how many queued workflows one claim may start. Pure: counts and instants
(epoch ms) are arguments.

A claim may start at most ``max_batch`` workflows, and no more than the room left under the
queue's rate limit (starts within the last ``period``, the window inclusive of its start), its
global concurrency (PENDING anywhere) and its per-worker concurrency (PENDING on this executor).
The storage layer reads the counts inside the claim's transaction and asks this module.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ClaimLimits", "Usage", "claim_budget", "earliest", "window_frees_at"]


@dataclass(frozen=True)
class ClaimLimits:
    """A queue's flow control as a claim applies it (None: no such limit). With ``partitioned``
    every limit applies per partition key."""

    queue_name: str
    concurrency: int | None
    worker_concurrency: int | None
    limit: int | None
    period_ms: int | None
    partitioned: bool
    max_batch: int = 100

    @property
    def has_global_limits(self) -> bool:
        """Whether the claim must count work of other processes (and serialize with them)."""
        return self.concurrency is not None or self.limit is not None


@dataclass(frozen=True)
class Usage:
    """What counts against the limits of one queue (or one partition of it)."""

    pending: int = 0
    mine: int = 0
    recent_starts: int = 0
    oldest_recent_start: int | None = None


def claim_budget(limits: ClaimLimits, usage: Usage) -> int:
    """How many workflows a claim may start now (0 or less: none)."""
    budget = limits.max_batch
    if limits.limit is not None:
        budget = min(budget, limits.limit - usage.recent_starts)
    if limits.concurrency is not None:
        budget = min(budget, limits.concurrency - usage.pending)
    if limits.worker_concurrency is not None:
        budget = min(budget, limits.worker_concurrency - usage.mine)
    return budget


def window_frees_at(limits: ClaimLimits, usage: Usage) -> int | None:
    """When the oldest start leaves the rate-limit window, if the limiter is what blocks."""
    if limits.limit is None or limits.period_ms is None or usage.oldest_recent_start is None:
        return None
    if usage.recent_starts < limits.limit:
        return None
    # The window is inclusive of its start, so the slot is free one millisecond after.
    return usage.oldest_recent_start + limits.period_ms + 1


def earliest(a: int | None, b: int | None) -> int | None:
    """The earlier of two optional instants."""
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)
