"""RFC 9457 problem details: every error the HTTP API returns is one of these."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from engine import error as e

PROBLEM_CONTENT_TYPE = "application/problem+json"


class Problem(Exception):
    """An HTTP error with a problem+json body.

    ``code`` is a stable, machine-readable name (``workflow_not_found``); ``detail`` is for people
    and says what was wrong and what to do.
    """

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    @property
    def title(self) -> str:
        try:
            return HTTPStatus(self.status).phrase
        except ValueError:
            return "Error"

    def body(self, instance: str) -> dict[str, Any]:
        # "about:blank" says the status code is all the semantics there are; "code" refines it.
        body: dict[str, Any] = {
            "type": "about:blank",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "instance": instance,
            "code": self.code,
        }
        body.update(self.extra)
        return body


def bad_request(code: str, detail: str) -> Problem:
    return Problem(400, code, detail)


def not_found(code: str, detail: str) -> Problem:
    return Problem(404, code, detail)


def unprocessable(code: str, detail: str) -> Problem:
    return Problem(422, code, detail)


def problem_from_error(exc: BaseException) -> Problem | None:
    """The problem an engine error stands for, or ``None`` for an unexpected error (a 500)."""
    if isinstance(exc, Problem):
        return exc
    table: list[tuple[type[BaseException], int, str]] = [
        (e.DBOSNonExistentWorkflowError, 404, "workflow_not_found"),
        (e.DBOSWorkflowFunctionNotFoundError, 404, "workflow_function_not_found"),
        (e.DBOSWorkflowConflictIDError, 409, "workflow_id_conflict"),
        (e.DBOSQueueDeduplicatedError, 409, "deduplicated"),
        (e.DBOSSerializationError, 422, "not_serializable"),
        (e.DBOSInvalidArgumentError, 422, "invalid_argument"),
        (e.DBOSNotLaunchedError, 503, "not_ready"),
    ]
    for kind, status, code in table:
        if isinstance(exc, kind):
            return Problem(status, code, str(exc))
    if isinstance(exc, e.DBOSStorageError):
        # The driver's message may name hosts or users; the log has it, the client does not.
        return Problem(
            503, "database_unavailable", "the system database is unavailable; retry later"
        )
    return None
