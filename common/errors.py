"""One error hierarchy for every Lucid service.

Services raise these; ``main.py`` translates them to HTTP in one place, always with the body
``{"error": {"code": ..., "message": ..., "details": ...}}``. Codes are stable strings that
clients may switch on.
"""

from __future__ import annotations

from typing import Any


class LucidError(Exception):
    """Base of every domain error. ``status_code`` is the HTTP status it maps to."""

    status_code: int = 500
    code: str = "INTERNAL_ERROR"

    def __init__(self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details: dict[str, Any] = details or {}

    def to_body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class ValidationFailed(LucidError):
    status_code = 422
    code = "VALIDATION_ERROR"


class Unauthorized(LucidError):
    status_code = 401
    code = "UNAUTHORIZED"


class Forbidden(LucidError):
    status_code = 403
    code = "FORBIDDEN"


class NotFound(LucidError):
    status_code = 404
    code = "NOT_FOUND"


class Conflict(LucidError):
    status_code = 409
    code = "CONFLICT"


class PayloadTooLarge(LucidError):
    status_code = 413
    code = "PAYLOAD_TOO_LARGE"


class RateLimited(LucidError):
    status_code = 429
    code = "RATE_LIMITED"

    def __init__(self, message: str, *, retry_after: int, details: dict[str, Any] | None = None):
        super().__init__(message, details={"retry_after": retry_after, **(details or {})})
        self.retry_after = retry_after


class NoCapacity(LucidError):
    status_code = 503
    code = "NO_CAPACITY"


class BackendUnavailable(LucidError):
    status_code = 503
    code = "BACKEND_UNAVAILABLE"
