"""What a call to a peer service can fail with (``ServiceClientBase``). None of these reaches HTTP
as such: the outbox retries the call, the warm pool turns a failure into ``NoCapacity`` (the tree
of every error is drawn in ``common/errors.py``)."""

from __future__ import annotations


class ServiceError(Exception):
    """Base exception for service communication errors."""

    def __init__(self, message: str, status_code: int | None = None, *, retryable: bool = False):
        super().__init__(message)
        self.status_code = status_code
        self.retryable = retryable


class ServiceTimeoutError(ServiceError):
    """A call timed out (on every attempt)."""

    def __init__(self, message: str, status_code: int | None = None, *, retryable: bool = True):
        super().__init__(message, status_code, retryable=retryable)


class ServiceNotFoundError(ServiceError):
    """The peer answered 404: it knows no such resource."""

    def __init__(self, message: str = "Resource not found", status_code: int = 404):
        super().__init__(message, status_code)


class CircuitOpenError(ServiceError):
    """Refused without calling: the peer's circuit breaker is open."""

    def __init__(self, message: str, *, retry_in: float):
        super().__init__(message, retryable=True)
        self.retry_in = retry_in


class PeerNotConfigured(ServiceError):
    """The peer has no usable client on this replica (its URL unset or invalid): nothing was called."""
