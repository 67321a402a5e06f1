"""Errors raised by the engine. Every one derives from :class:`DBOSException`.

The names follow the spec (``from engine import error``; ``error.DBOSQueueDeduplicatedError``).
Messages say what failed, the offending value, and what to do about it.
"""

from __future__ import annotations


class DBOSException(Exception):
    """Root of every error the engine raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self) -> tuple[object, ...]:
        # Errors are checkpointed; keep them picklable whatever the subclass signature.
        return (_rebuild_error, (type(self), self.message))


def _rebuild_error(cls: type[DBOSException], message: str) -> DBOSException:
    err = cls.__new__(cls)
    DBOSException.__init__(err, message)
    return err


class DBOSConfigError(DBOSException):
    """The configuration passed to ``DBOS(config=...)`` or a decorator is invalid."""


class DBOSStorageError(DBOSException):
    """The system or application database failed or could not be reached."""


class DBOSConnectionLostError(DBOSStorageError):
    """The database could not be reached or dropped the connection (it may come back)."""


class DBOSStorageUnavailableError(DBOSStorageError):
    """The database file cannot be written for now: its disk is full, the device reports I/O
    errors, or the file or its directory is read-only.

    Like a lost connection, it pauses work inside workflows until the cause is fixed; calls made
    from outside workflows retry for a bounded time and then raise it.
    """


class DBOSSchemaVersionError(DBOSStorageError):
    """The system database was created by a newer version of the engine."""


class DBOSExecutorIdInUseError(DBOSConfigError):
    """``DBOS.launch()`` found the configured executor ID held by another live process.

    Two processes under one ID would recover and run each other's work. Give each process its
    own ``executor_id`` (or leave it unset: each process then gets its own), or stop the other.
    """


class DBOSNotLaunchedError(DBOSException):
    """An operation needs ``DBOS.launch()`` (or ``DBOS(config=...)``) first."""


class DBOSSerializationError(DBOSException):
    """A value (argument, result, message, event) could not be serialized or deserialized."""


class DBOSWorkflowFunctionNotFoundError(DBOSException):
    """No workflow is registered under the given name."""


class DBOSNonExistentWorkflowError(DBOSException):
    """No workflow with the given ID exists in the system database."""


class DBOSWorkflowConflictIDError(DBOSException):
    """A workflow ID is already used by a different workflow function."""


class DBOSWorkflowCancelledError(DBOSException):
    """The workflow was cancelled (directly or by its timeout) and stopped at a step boundary."""


class DBOSAwaitedWorkflowCancelledError(DBOSException):
    """The awaited workflow ended CANCELLED (cancelled or timed out); it has no result."""


class DBOSMaxRecoveryAttemptsExceededError(DBOSException):
    """The workflow was started more often than ``max_recovery_attempts`` allows."""


class DBOSAwaitedWorkflowMaxRecoveryAttemptsExceededError(DBOSException):
    """The awaited workflow ended MAX_RECOVERY_ATTEMPTS_EXCEEDED."""


class DBOSMaxStepRetriesExceeded(DBOSException):
    """A step with ``retries_allowed=True`` failed on every attempt."""

    def __init__(self, message: str, errors: list[BaseException] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


class DBOSUnexpectedStepError(DBOSException):
    """Replay found a different step at this position than the code now calls (non-determinism)."""


class DBOSQueueDeduplicatedError(DBOSException):
    """A workflow with the same deduplication ID is already ENQUEUED or PENDING on this queue."""

    def __init__(
        self, message: str, workflow_id: str = "", queue_name: str = "", deduplication_id: str = ""
    ) -> None:
        super().__init__(message)
        self.workflow_id = workflow_id
        self.queue_name = queue_name
        self.deduplication_id = deduplication_id


class DBOSNotInWorkflowError(DBOSException):
    """A workflow-only call (``recv``, ``set_event``...) was made outside a workflow."""


class DBOSInvalidArgumentError(DBOSException, ValueError):
    """An argument is out of range or of the wrong form (status names, timestamps, limits...)."""


class DBOSInvalidCrontabError(DBOSInvalidArgumentError):
    """A crontab expression could not be parsed; the message names the bad field."""


class DBOSUnknownTimezoneError(DBOSInvalidArgumentError):
    """A timezone name is not a known IANA zone."""
