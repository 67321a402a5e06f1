"""Queue admission budgets, without a database or threads."""

from __future__ import annotations

import pytest

from engine.core.admission import ClaimLimits, Usage, claim_budget, earliest, window_frees_at


def limits(
    *,
    concurrency: int | None = None,
    worker_concurrency: int | None = None,
    limit: int | None = None,
    period_ms: int | None = None,
) -> ClaimLimits:
    return ClaimLimits("q", concurrency, worker_concurrency, limit, period_ms, partitioned=False)


def test_without_limits_a_claim_takes_a_batch() -> None:
    assert claim_budget(limits(), Usage(pending=10_000)) == 100


@pytest.mark.parametrize(
    ("given", "usage", "budget"),
    [
        ({"concurrency": 5}, Usage(pending=3), 2),
        ({"concurrency": 5}, Usage(pending=5), 0),
        ({"worker_concurrency": 2}, Usage(pending=9, mine=1), 1),
        ({"concurrency": 10, "worker_concurrency": 2}, Usage(pending=9, mine=0), 1),
        ({"limit": 3, "period_ms": 1000}, Usage(recent_starts=1), 2),
        ({"limit": 3, "period_ms": 1000, "concurrency": 1}, Usage(recent_starts=0), 1),
    ],
)
def test_the_tightest_limit_wins(given: dict[str, int], usage: Usage, budget: int) -> None:
    assert claim_budget(limits(**given), usage) == budget


def test_over_a_limit_the_budget_is_not_positive() -> None:
    # Lowering a queue's concurrency below what runs leaves a negative budget: nothing starts.
    assert claim_budget(limits(concurrency=2), Usage(pending=5)) < 0


def test_a_full_rate_window_frees_a_slot_just_after_its_oldest_start_leaves() -> None:
    rate = limits(limit=2, period_ms=1000)
    full = Usage(recent_starts=2, oldest_recent_start=5_000)
    assert window_frees_at(rate, full) == 6_001  # the window includes its first millisecond


def test_the_window_matters_only_when_the_limiter_blocks() -> None:
    rate = limits(limit=2, period_ms=1000)
    assert window_frees_at(rate, Usage(recent_starts=1, oldest_recent_start=5_000)) is None
    assert window_frees_at(limits(concurrency=1), Usage(pending=1)) is None


def test_earliest_ignores_missing_instants() -> None:
    assert earliest(None, None) is None
    assert earliest(None, 3) == 3
    assert earliest(4, None) == 4
    assert earliest(4, 3) == 3
