"""Replaying and retrying steps: the pure rules of engine.core.steps (no database, no threads)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from engine.core.steps import (
    AfterFailure,
    Replay,
    RetryVerdict,
    after_failure,
    backoff_seconds,
    cancelled_while_retrying,
    failure_recordable,
    jittered,
    recorded_outage_error,
    replay_decision,
    retries_exhausted,
    unexpected_step,
)
from engine.error import (
    DBOSMaxStepRetriesExceeded,
    DBOSStorageError,
    DBOSUnexpectedStepError,
    DBOSWorkflowCancelledError,
)
from engine.runtime.registry import StepOptions


@dataclass(frozen=True)
class Options:
    retries_allowed: bool = True
    interval_seconds: float = 1.0
    max_attempts: int = 3
    backoff_rate: float = 2.0


def middle() -> float:
    return 0.5  # no jitter: 0.9 + 0.2 * 0.5 == 1.0


def never() -> float:
    raise AssertionError("the random source is only drawn for a retry")


def decide(
    options: Options,
    attempt: int,
    *,
    outage: bool = False,
    cancelled: bool = False,
    rand: Callable[[], float] = middle,
) -> AfterFailure:
    return after_failure(options, attempt, outage=outage, cancelled=cancelled, rand=rand)


# -- replay ---------------------------------------------------------------------------------------


def test_nothing_recorded_runs_the_step() -> None:
    assert replay_decision(None, "f") is Replay.RUN


def test_a_record_of_the_same_function_is_replayed() -> None:
    assert replay_decision("f", "f") is Replay.REPLAY


def test_a_record_of_another_function_is_a_mismatch() -> None:
    assert replay_decision("f", "g") is Replay.MISMATCH
    assert replay_decision("f", "") is Replay.MISMATCH
    assert replay_decision("", "f") is Replay.MISMATCH  # an empty name is still a record


def test_the_mismatch_error_names_the_workflow_both_steps_and_the_fix() -> None:
    err = unexpected_step("wf-1", 3, "f", "g")
    assert isinstance(err, DBOSUnexpectedStepError)
    assert str(err) == (
        "workflow 'wf-1' recorded step 3 as 'f', but this execution called 'g' there (the "
        "workflow is not deterministic, or its code changed since it started; fork it onto the "
        "new code with DBOS.fork_workflow)"
    )


def test_a_recorded_outage_replays_as_a_storage_error_not_as_itself() -> None:
    cause = ConnectionError("gone")
    err = recorded_outage_error("f", cause)
    assert isinstance(err, DBOSStorageError)
    assert str(err) == "step 'f' recorded a database outage as its error: gone"


@pytest.mark.parametrize(
    ("outage", "stopping", "recordable"),
    [(False, False, True), (True, False, False), (False, True, False), (True, True, False)],
)
def test_a_failure_is_recorded_unless_an_outage_or_a_shutdown(
    outage: bool, stopping: bool, recordable: bool
) -> None:
    assert failure_recordable(outage=outage, stopping=stopping) is recordable


# -- retry ----------------------------------------------------------------------------------------


def test_without_retries_the_error_is_the_outcome() -> None:
    assert decide(Options(retries_allowed=False), 1, rand=never) == AfterFailure(RetryVerdict.RAISE)


def test_without_retries_max_attempts_does_not_matter() -> None:
    opts = Options(retries_allowed=False, max_attempts=10)
    assert decide(opts, 1, rand=never).verdict is RetryVerdict.RAISE


def test_a_failed_attempt_below_the_max_retries_with_the_next_attempt() -> None:
    assert decide(Options(), 1) == AfterFailure(RetryVerdict.RETRY, 1.0, 2)
    assert decide(Options(), 2) == AfterFailure(RetryVerdict.RETRY, 2.0, 3)


def test_max_attempts_reached_exhausts() -> None:
    assert decide(Options(max_attempts=3), 3, rand=never) == AfterFailure(RetryVerdict.EXHAUSTED)


def test_one_attempt_allowed_never_retries() -> None:
    assert decide(Options(max_attempts=1), 1, rand=never).verdict is RetryVerdict.EXHAUSTED


@pytest.mark.parametrize("max_attempts", [0, -1])
def test_a_max_below_one_exhausts_after_the_first_attempt(max_attempts: int) -> None:
    opts = Options(max_attempts=max_attempts)
    assert decide(opts, 1, rand=never).verdict is RetryVerdict.EXHAUSTED


def test_an_outage_is_no_attempt_whatever_the_options() -> None:
    for opts in (Options(), Options(retries_allowed=False), Options(max_attempts=1)):
        for attempt in (1, 3, 5):
            outcome = decide(opts, attempt, outage=True, cancelled=True, rand=never)
            assert outcome == AfterFailure(RetryVerdict.OUTAGE)


def test_cancelled_while_retries_remain_stops() -> None:
    assert decide(Options(), 1, cancelled=True, rand=never) == AfterFailure(RetryVerdict.CANCELLED)


def test_cancelled_after_the_last_attempt_is_still_exhausted() -> None:
    assert decide(Options(), 3, cancelled=True, rand=never).verdict is RetryVerdict.EXHAUSTED


def test_cancelled_without_retries_raises_the_error() -> None:
    opts = Options(retries_allowed=False)
    assert decide(opts, 1, cancelled=True, rand=never).verdict is RetryVerdict.RAISE


def test_backoff_grows_geometrically_from_the_interval() -> None:
    opts = Options(interval_seconds=0.5, backoff_rate=3.0, max_attempts=10)
    assert [backoff_seconds(opts, n) for n in range(1, 6)] == [0.5, 1.5, 4.5, 13.5, 40.5]
    assert [decide(opts, n).delay_seconds for n in range(1, 6)] == [0.5, 1.5, 4.5, 13.5, 40.5]


def test_a_backoff_rate_of_one_keeps_the_interval() -> None:
    opts = Options(interval_seconds=2.0, backoff_rate=1.0, max_attempts=10)
    assert {backoff_seconds(opts, n) for n in range(1, 9)} == {2.0}


def test_a_zero_interval_retries_at_once() -> None:
    assert decide(Options(interval_seconds=0.0), 1, rand=random.random).delay_seconds == 0.0


def test_jitter_stays_within_ten_percent() -> None:
    rng = random.Random(1234)
    delays = [jittered(10.0, rng.random) for _ in range(2000)]
    assert all(9.0 <= d < 11.0 for d in delays)
    assert min(delays) < 9.1 and max(delays) > 10.9  # it spreads over the whole band


def test_jitter_bounds_at_the_ends_of_the_random_range() -> None:
    assert jittered(10.0, lambda: 0.0) == pytest.approx(9.0)
    assert jittered(10.0, lambda: 0.999999) == pytest.approx(11.0, abs=1e-4)


def test_a_retry_delay_is_the_backoff_jittered_by_the_given_source() -> None:
    opts = Options(interval_seconds=1.0, backoff_rate=2.0, max_attempts=5)
    seeded, replay = random.Random(7), random.Random(7)
    for attempt in range(1, 5):
        outcome = decide(opts, attempt, rand=seeded.random)
        base = 2.0 ** (attempt - 1)
        assert outcome.delay_seconds == base * (0.9 + 0.2 * replay.random())
        assert base * 0.9 <= outcome.delay_seconds < base * 1.1


def test_the_exhausted_error_carries_every_attempt_and_names_the_last() -> None:
    errors = [ValueError("one"), KeyError("two"), RuntimeError("three")]
    err = retries_exhausted("f", 3, errors[-1], errors)
    assert isinstance(err, DBOSMaxStepRetriesExceeded)
    assert str(err) == "step 'f' failed 3 times; last error: RuntimeError: three"
    assert err.errors == errors
    assert err.errors is not errors  # a copy: the caller's list may go on growing


def test_the_cancelled_error_names_the_workflow_and_the_step() -> None:
    err = cancelled_while_retrying("wf-1", "f")
    assert isinstance(err, DBOSWorkflowCancelledError)
    assert str(err) == "workflow 'wf-1' was cancelled while step 'f' was retrying"


def test_step_options_of_the_registry_fit_the_protocol() -> None:
    assert after_failure(
        StepOptions(retries_allowed=True), 1, outage=False, cancelled=False, rand=middle
    ) == AfterFailure(RetryVerdict.RETRY, 1.0, 2)
