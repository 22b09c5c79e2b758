"""One error hierarchy, one registry of error codes and one error body for every Lucid service.

Services raise ``LucidError`` subclasses; ``rdp_controller/http_errors.py`` translates them (and
the backends' and the framework's errors) to HTTP in one place, always with the body
``error_body(...)``: ``{"error": {"code": ..., "message": ..., "details": ...}}``. ``ErrorCode``
lists every code a client may see; each has exactly one HTTP status (``STATUS``), whichever
class raised it, and ``openapi.yaml`` lists them all (a test checks both).

Where the errors of this service sit, and which reach HTTP::

    Exception
    ├── LucidError (here)                 reaches HTTP with its code's status
    │   ├── ValidationFailed              422  a request the API refuses; nothing was written
    │   ├── Unauthorized                  401  no, bad or expired credentials; a bad connection token
    │   ├── Forbidden                     403  the caller's role may not do this
    │   ├── NotFound                      404  no such session or server (or not the caller's)
    │   ├── Conflict                      409  the state forbids it (transitions, limits, duplicates)
    │   ├── RateLimited                   429  with Retry-After
    │   ├── NoCapacity                    503  no slot, or no dedicated server, now
    │   └── BackendUnavailable            503  MongoDB or Redis cannot be trusted or reached now
    ├── PyMongoError, RedisError          503  BACKEND_UNAVAILABLE (translated in http_errors.py)
    ├── ServiceError (integration/errors.py: ServiceTimeoutError, ServiceNotFoundError,
    │   CircuitOpenError, PeerNotConfigured)   a peer call failed: never an HTTP answer itself; the
    │                                     outbox retries it, the warm pool turns it into NoCapacity
    ├── ProtocolError (protocol/errors.py, a ValueError)   bad RDP wire input: the relay counts a
    │                                     refusal, the probe reports the host unhealthy
    └── ConfigError (rdp_controller/config.py, a ValueError)   a configuration that cannot run:
                                          the service does not start, and says why
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Final

from pydantic import BaseModel, ConfigDict


class ErrorCode(StrEnum):
    """Every `error.code` a client may see. Stable: clients switch on them."""

    # 400-415: the request itself
    BAD_REQUEST = "BAD_REQUEST"
    VALIDATION_ERROR = "VALIDATION_ERROR"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    UNAUTHORIZED = "UNAUTHORIZED"
    AUTH_NOT_CONFIGURED = "AUTH_NOT_CONFIGURED"
    TOKEN_INVALID = "TOKEN_INVALID"
    FORBIDDEN = "FORBIDDEN"
    OPERATOR_REQUIRED = "OPERATOR_REQUIRED"
    PRIVILEGED_REQUIRED = "PRIVILEGED_REQUIRED"
    NOT_FOUND = "NOT_FOUND"
    SESSION_NOT_FOUND = "SESSION_NOT_FOUND"
    SERVER_NOT_FOUND = "SERVER_NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    # 409: the state of things forbids it
    CONFLICT = "CONFLICT"
    INVALID_TRANSITION = "INVALID_TRANSITION"
    CONCURRENT_UPDATE = "CONCURRENT_UPDATE"
    SESSION_FINAL = "SESSION_FINAL"
    USER_SESSION_LIMIT = "USER_SESSION_LIMIT"
    IDEMPOTENCY_KEY_IN_PROGRESS = "IDEMPOTENCY_KEY_IN_PROGRESS"
    DUPLICATE_SERVER = "DUPLICATE_SERVER"
    SERVER_FULL = "SERVER_FULL"
    SERVER_NOT_AVAILABLE = "SERVER_NOT_AVAILABLE"
    SERVER_HAS_SESSIONS = "SERVER_HAS_SESSIONS"
    # 429
    RATE_LIMITED = "RATE_LIMITED"
    # 500, 503
    INTERNAL_ERROR = "INTERNAL_ERROR"
    NO_CAPACITY = "NO_CAPACITY"
    DEDICATED_UNAVAILABLE = "DEDICATED_UNAVAILABLE"
    DEDICATED_NO_CAPACITY = "DEDICATED_NO_CAPACITY"
    BACKEND_UNAVAILABLE = "BACKEND_UNAVAILABLE"
    LEASES_REBUILDING = "LEASES_REBUILDING"


C = ErrorCode
#: The one HTTP status of each code.
STATUS: Final[dict[ErrorCode, int]] = {
    C.BAD_REQUEST: 400,
    C.VALIDATION_ERROR: 422,
    C.IDEMPOTENCY_KEY_REUSED: 422,
    C.UNAUTHORIZED: 401,
    C.AUTH_NOT_CONFIGURED: 401,
    C.TOKEN_INVALID: 401,
    C.FORBIDDEN: 403,
    C.OPERATOR_REQUIRED: 403,
    C.PRIVILEGED_REQUIRED: 403,
    C.NOT_FOUND: 404,
    C.SESSION_NOT_FOUND: 404,
    C.SERVER_NOT_FOUND: 404,
    C.METHOD_NOT_ALLOWED: 405,
    C.PAYLOAD_TOO_LARGE: 413,
    C.UNSUPPORTED_MEDIA_TYPE: 415,
    C.CONFLICT: 409,
    C.INVALID_TRANSITION: 409,
    C.CONCURRENT_UPDATE: 409,
    C.SESSION_FINAL: 409,
    C.USER_SESSION_LIMIT: 409,
    C.IDEMPOTENCY_KEY_IN_PROGRESS: 409,
    C.DUPLICATE_SERVER: 409,
    C.SERVER_FULL: 409,
    C.SERVER_NOT_AVAILABLE: 409,
    C.SERVER_HAS_SESSIONS: 409,
    C.RATE_LIMITED: 429,
    C.INTERNAL_ERROR: 500,
    C.NO_CAPACITY: 503,
    C.DEDICATED_UNAVAILABLE: 503,
    C.DEDICATED_NO_CAPACITY: 503,
    C.BACKEND_UNAVAILABLE: 503,
    C.LEASES_REBUILDING: 503,
}


def error_body(code: ErrorCode | str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The one error body: ``{"error": {"code", "message", "details"}}`` (``ErrorBody``)."""
    return {"error": {"code": str(code), "message": message, "details": details or {}}}


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: ErrorCode
    message: str
    details: dict[str, Any]


class ErrorBody(BaseModel):
    """The body of every error answer (what ``error_body`` builds)."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorDetail


class LucidError(Exception):
    """Base of every domain error. Its HTTP status is its code's (``STATUS``)."""

    code: ErrorCode = ErrorCode.INTERNAL_ERROR

    def __init__(
        self, message: str, *, code: ErrorCode | str | None = None, details: dict[str, Any] | None = None
    ):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = ErrorCode(code)  # an unregistered code is a bug: ValueError here
        self.details: dict[str, Any] = details or {}

    @property
    def status_code(self) -> int:
        return STATUS[self.code]


class ValidationFailed(LucidError):
    code = ErrorCode.VALIDATION_ERROR


class Unauthorized(LucidError):
    code = ErrorCode.UNAUTHORIZED


class Forbidden(LucidError):
    code = ErrorCode.FORBIDDEN


class NotFound(LucidError):
    code = ErrorCode.NOT_FOUND


class Conflict(LucidError):
    code = ErrorCode.CONFLICT


class RateLimited(LucidError):
    code = ErrorCode.RATE_LIMITED

    def __init__(self, message: str, *, retry_after: int, details: dict[str, Any] | None = None):
        super().__init__(message, details={"retry_after": retry_after, **(details or {})})
        self.retry_after = retry_after


class NoCapacity(LucidError):
    code = ErrorCode.NO_CAPACITY


class BackendUnavailable(LucidError):
    code = ErrorCode.BACKEND_UNAVAILABLE
