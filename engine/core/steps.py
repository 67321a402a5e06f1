"""Step replay and retry decisions. Pure: the recorded step, the options, the attempt, whether an
error is a database outage and the random source all come in as arguments.

* **Replay** (:func:`replay_decision`): a step whose outcome was recorded is replayed, never run
  again; a record under another function name means the workflow is not deterministic (or its
  code changed), which is an error, not a replay.
* **Retry** (:func:`after_failure`): with ``retries_allowed``, attempt ``n`` that fails waits
  ``interval * backoff_rate ** (n - 1)`` seconds with ±10 % jitter, until ``max_attempts``
  attempts failed. A database outage is no attempt of the step's own: the step stops there,
  unrecorded, and runs again once the database is back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from engine.error import (
    DBOSMaxStepRetriesExceeded,
    DBOSStorageError,
    DBOSUnexpectedStepError,
    DBOSWorkflowCancelledError,
)

__all__ = [
    "AfterFailure",
    "Replay",
    "RetryOptions",
    "RetryVerdict",
    "after_failure",
    "backoff_seconds",
    "cancelled_while_retrying",
    "failure_recordable",
    "jittered",
    "recorded_outage_error",
    "replay_decision",
    "retries_exhausted",
    "unexpected_step",
]

JITTER = 0.1  # a retry waits within ±10 % of its backoff, so failed steps do not retry in step


class RetryOptions(Protocol):
    """A step's retry options (``StepOptions`` in the registry has these fields)."""

    @property
    def retries_allowed(self) -> bool: ...
    @property
    def interval_seconds(self) -> float: ...
    @property
    def max_attempts(self) -> int: ...
    @property
    def backoff_rate(self) -> float: ...


# -- replay ---------------------------------------------------------------------------------------


class Replay(StrEnum):
    """What to do with a step position: run it, replay its record, or refuse a mismatch."""

    RUN = "run"
    REPLAY = "replay"
    MISMATCH = "mismatch"


def replay_decision(recorded_name: str | None, called_name: str) -> Replay:
    """``recorded_name`` is the function name recorded at this step position (None: nothing)."""
    if recorded_name is None:
        return Replay.RUN
    if recorded_name != called_name:
        return Replay.MISMATCH
    return Replay.REPLAY


def unexpected_step(
    workflow_id: str, function_id: int, recorded_name: str, called_name: str
) -> DBOSUnexpectedStepError:
    """The error of a :attr:`Replay.MISMATCH`."""
    return DBOSUnexpectedStepError(
        f"workflow {workflow_id!r} recorded step {function_id} as "
        f"{recorded_name!r}, but this execution called {called_name!r} there (the "
        "workflow is not deterministic, or its code changed since it started; fork it "
        "onto the new code with DBOS.fork_workflow)"
    )


def recorded_outage_error(function_name: str, err: BaseException) -> DBOSStorageError:
    """What a replay raises for a recorded error that is a database outage.

    Such a record comes from an older version (or code that records whatever it catches). Raised
    as it is, it would pause the workflow again at every replay, forever.
    """
    return DBOSStorageError(
        f"step {function_name!r} recorded a database outage as its error: {err}"
    )


def failure_recordable(*, outage: bool, stopping: bool) -> bool:
    """Whether a step's failure is checkpointed as its outcome (a success always is).

    A failure during shutdown is likely the shutdown itself, and a database outage is no outcome
    of the step; recording either would make a replay raise a false error. The step runs again
    (after a restart, or once the database is back) instead.
    """
    return not (stopping or outage)


# -- retry ----------------------------------------------------------------------------------------


class RetryVerdict(StrEnum):
    """What follows a failed attempt."""

    RETRY = "retry"  # wait ``delay_seconds``, then run attempt ``next_attempt``
    OUTAGE = "outage"  # stop, unrecorded, not counted: the workflow pauses and runs it again
    CANCELLED = "cancelled"  # the workflow was cancelled while the step was retrying
    EXHAUSTED = "exhausted"  # retries allowed, and every one of the attempts failed
    RAISE = "raise"  # no retries: the error is the step's outcome


@dataclass(frozen=True, slots=True)
class AfterFailure:
    verdict: RetryVerdict
    delay_seconds: float | None = None
    next_attempt: int | None = None


def backoff_seconds(options: RetryOptions, attempt: int) -> float:
    """The wait after failed attempt ``attempt`` (1-based), before jitter."""
    return options.interval_seconds * (options.backoff_rate ** (attempt - 1))


def jittered(seconds: float, rand: Callable[[], float]) -> float:
    """``seconds`` within ±10 %; ``rand`` returns a float in [0, 1) (``random.random``)."""
    return seconds * (1 - JITTER + 2 * JITTER * rand())


def after_failure(
    options: RetryOptions,
    attempt: int,
    *,
    outage: bool,
    cancelled: bool,
    rand: Callable[[], float],
) -> AfterFailure:
    """The decision after attempt ``attempt`` (1-based) failed.

    ``outage``: the error is a database outage; ``cancelled``: the workflow was cancelled;
    ``rand`` is called once, and only for a retry.
    """
    if outage:
        return AfterFailure(RetryVerdict.OUTAGE)
    if not options.retries_allowed:
        return AfterFailure(RetryVerdict.RAISE)
    if attempt >= options.max_attempts:
        return AfterFailure(RetryVerdict.EXHAUSTED)
    if cancelled:
        return AfterFailure(RetryVerdict.CANCELLED)
    delay = jittered(backoff_seconds(options, attempt), rand)
    return AfterFailure(RetryVerdict.RETRY, delay, attempt + 1)


def retries_exhausted(
    step_name: str, max_attempts: int, last: BaseException, errors: Sequence[BaseException]
) -> DBOSMaxStepRetriesExceeded:
    """The error of :attr:`RetryVerdict.EXHAUSTED`, carrying every attempt's error."""
    return DBOSMaxStepRetriesExceeded(
        f"step {step_name!r} failed {max_attempts} times; last error: "
        f"{type(last).__name__}: {last}",
        list(errors),
    )


def cancelled_while_retrying(workflow_id: str, step_name: str) -> DBOSWorkflowCancelledError:
    """The error of :attr:`RetryVerdict.CANCELLED`."""
    return DBOSWorkflowCancelledError(
        f"workflow {workflow_id!r} was cancelled while step {step_name!r} was retrying"
    )
