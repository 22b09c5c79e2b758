"""
Base service client for the RDP controller's integration modules.

One ``ServiceClientBase`` per peer service, on ONE shared ``httpx.AsyncClient`` (connection
pool, explicit ``httpx.Timeout`` and ``httpx.Limits``). JSON in, JSON out.

Retries: on timeouts, connection errors and 5xx, never on 4xx. ``retry_count`` is the number
of attempts of one call (the template's ``for attempt in range(retry_count)``), so 1 means no
retry. Between attempts the client sleeps with exponential backoff and FULL jitter::

    sleep = uniform(0, min(max_retry_delay, retry_delay * 2 ** attempt))

A POST without an explicit ``Idempotency-Key`` gets one generated per call, the same on each of
its retries, so a peer that honours the header never acts twice on one call.

Errors: ``ServiceNotFoundError`` (404), ``ServiceTimeoutError`` (timeouts), ``ServiceError``
(everything else; ``status_code`` set for HTTP answers, ``retryable`` True when the call failed
on timeouts, connection errors or 5xx), ``CircuitOpenError`` (refused without calling).

Circuit breaker per peer: closed -> open after ``failure_threshold`` consecutive failed calls (a
failed call is one that exhausted its retries on timeouts, connection errors or 5xx; a 4xx
proves the peer is up and counts as a success); open refuses immediately; after
``reset_seconds`` it is half-open and lets ONE trial call through (a single attempt): success
closes it, failure opens it again for another ``reset_seconds``.

Authentication: ``bearer_token_factory`` is called before each attempt; the integration manager
passes a cached short-lived service JWT (see ``ServiceTokens`` in ``integration_manager.py``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Self

import httpx

from .circuit_breaker import CircuitBreaker, CircuitState, Clock
from .deliverable import DeliverableCall
from .errors import CircuitOpenError, ServiceError, ServiceNotFoundError, ServiceTimeoutError

logger = logging.getLogger(__name__)

# Regex patterns for URL validation (compiled at module level, template rule).
HTTP_URL_PATTERN = re.compile(r"^https?://[^/?#\s]+", re.IGNORECASE)
PATH_PATTERN = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$")

DEFAULT_MAX_RETRY_DELAY = 30.0
DEFAULT_CONNECT_TIMEOUT = 5.0
MAX_ERROR_BODY = 200
LIMITS = httpx.Limits(max_connections=50, max_keepalive_connections=10, keepalive_expiry=30.0)
USER_AGENT = "lucid-rdp-controller"

Sleep = Callable[[float], Awaitable[None]]


def check_base_url(base_url: str) -> str:
    """An absolute http(s) URL with a host, without a trailing slash; ``ValueError`` otherwise."""
    if not base_url or not HTTP_URL_PATTERN.match(base_url):
        raise ValueError(
            f"service URL must be an absolute http:// or https:// URL, not {redact_url(base_url)!r}"
        )
    try:
        parsed = httpx.URL(base_url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"service URL {redact_url(base_url)!r} is invalid: {exc}") from exc
    if not parsed.host or parsed.query or parsed.fragment:
        raise ValueError(
            f"service URL {redact_url(base_url)!r} must name a host and have no query or fragment"
        )
    return base_url.rstrip("/")


def redact_url(url: str) -> str:
    """The URL without user information (credentials never reach logs or ``/health``)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url[:100]
    authority, slash, path = rest.partition("/")
    host = authority.rpartition("@")[2]
    return f"{scheme}{sep}{host}{slash}{path}"[:200]


class ServiceClientBase:
    """Base class for the peer-service clients (one instance, one connection pool per peer)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        retry_count: int,
        retry_delay: float,
        bearer_token_factory: Callable[[], str] | None = None,
        failure_threshold: int = 5,
        reset_seconds: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        peer_name: str,
        max_retry_delay: float = DEFAULT_MAX_RETRY_DELAY,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
    ):
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if retry_count < 1:
            raise ValueError("retry_count is the number of attempts: at least 1")
        if retry_delay < 0 or max_retry_delay < 0:
            raise ValueError("retry delays must not be negative")
        self.base_url = check_base_url(base_url)
        self.peer_name = peer_name
        self.timeout = timeout
        self.retry_count = retry_count
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self.breaker = CircuitBreaker(failure_threshold, reset_seconds, clock=clock)
        self._token_factory = bearer_token_factory
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout, connect=min(timeout, DEFAULT_CONNECT_TIMEOUT)),
            limits=LIMITS,
            transport=transport,
            follow_redirects=False,
            headers={"Accept": "application/json", "User-Agent": USER_AGENT},
        )

    @property
    def url(self) -> str:
        """The base URL without credentials, for logs and health."""
        return redact_url(self.base_url)

    def backoff(self, attempt: int) -> float:
        """Full-jitter delay before retry number ``attempt + 1`` (attempt counts from 0)."""
        cap = min(self.max_retry_delay, self.retry_delay * 2**attempt)
        return self._rng.uniform(0.0, cap)

    @classmethod
    def deliverable_calls(cls, client: Callable[[], Self]) -> dict[str, DeliverableCall]:
        """The calls the outbox may deliver to this peer, by operation; ``client()`` is the peer's
        client when a call is sent. A peer client with outbox calls declares them here."""
        return {}

    # Requests -----------------------------------------------------------------------------
    async def _request(
        self,
        method: str,
        path: str,
        *,
        json_data: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        """One logical call (with its retries) through the circuit breaker; returns the decoded JSON."""
        if not PATH_PATTERN.match(path):
            raise ValueError(f"request path must be absolute and URL-safe: {path[:100]!r}")
        method = method.upper()
        if idempotency_key is None and method == "POST":
            idempotency_key = str(uuid.uuid4())
        trial = self._admit(method, path)
        attempts = 1 if trial else self.retry_count
        try:
            result = await self._attempt_all(
                method, path, attempts, json_data, params, headers, idempotency_key
            )
        except ServiceError as exc:
            if exc.retryable:
                self.breaker.record_failure()
                if self.breaker.state is not CircuitState.CLOSED:
                    logger.warning("%s: circuit open (%s)", self.peer_name, exc)
            else:
                self.breaker.record_success()  # the peer answered: it is up
            raise
        except BaseException:
            if trial:
                self.breaker.abandon_trial()
            raise
        self.breaker.record_success()
        return result

    async def _make_request(
        self,
        method: str,
        endpoint: str,
        *,
        params: dict[str, Any] | None = None,
        json_data: Any = None,
        headers: dict[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """A call whose answer must be a JSON object (the template's name for it)."""
        result = await self._request(
            method,
            endpoint,
            json_data=json_data,
            params=params,
            headers=headers,
            idempotency_key=idempotency_key,
        )
        if not isinstance(result, dict):
            raise ServiceError(
                f"{self.peer_name}: {method} {endpoint} answered {type(result).__name__}, not an object"
            )
        return result

    def _admit(self, method: str, path: str) -> bool:
        try:
            return self.breaker.admit()
        except CircuitOpenError as exc:
            raise CircuitOpenError(
                f"{self.peer_name}: {method} {path} refused: {exc}", retry_in=exc.retry_in
            ) from None

    async def _attempt_all(
        self,
        method: str,
        path: str,
        attempts: int,
        json_data: Any,
        params: dict[str, Any] | None,
        headers: dict[str, str] | None,
        idempotency_key: str | None,
    ) -> Any:
        call = f"{self.peer_name}: {method} {path}"
        last_error: ServiceError | None = None
        for attempt in range(attempts):
            if attempt:
                delay = self.backoff(attempt - 1)
                logger.info(
                    "%s: %s %s attempt %d/%d failed (%s); retrying in %.2fs",
                    self.peer_name,
                    method,
                    path,
                    attempt,
                    attempts,
                    last_error,
                    delay,
                )
                await self._sleep(delay)
            try:
                response = await self._client.request(
                    method,
                    path,
                    json=json_data,
                    params=params,
                    headers=self._headers(headers, idempotency_key),
                )
            except httpx.TimeoutException as exc:
                last_error = ServiceTimeoutError(
                    f"{call} timed out after {self.timeout:g}s ({type(exc).__name__})"
                )
                continue
            except httpx.TransportError as exc:
                last_error = ServiceError(f"{call} failed: {type(exc).__name__}: {exc}", retryable=True)
                continue
            if response.status_code >= 500:
                last_error = ServiceError(
                    f"{call} answered HTTP {response.status_code}{_excerpt(response)}",
                    response.status_code,
                    retryable=True,
                )
                continue
            return self._decode(method, path, response)
        assert last_error is not None  # attempts >= 1 and every failed attempt sets it
        raise last_error

    def _headers(self, extra: dict[str, str] | None, idempotency_key: str | None) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self._token_factory is not None:
            headers["Authorization"] = f"Bearer {self._token_factory()}"
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        if extra:
            headers.update(extra)
        return headers

    def _decode(self, method: str, path: str, response: httpx.Response) -> Any:
        status = response.status_code
        if status == 404:
            raise ServiceNotFoundError(f"{self.peer_name}: {method} {path} answered 404{_excerpt(response)}")
        if status >= 400:
            raise ServiceError(
                f"{self.peer_name}: {method} {path} answered HTTP {status}{_excerpt(response)}", status
            )
        if status == 204 or not response.content:
            return {}
        try:
            return response.json()
        except ValueError as exc:
            raise ServiceError(
                f"{self.peer_name}: {method} {path} answered a body that is not JSON", status
            ) from exc

    # Health and shutdown ------------------------------------------------------------------
    async def health_check(self, within: float | None = None) -> dict[str, Any]:
        """The health-schema ``integration`` object: one ``GET /health`` attempt (``within`` seconds, the
        service timeout by default). Never raises; leaves the breaker as it is (an open circuit is
        reported without calling)."""
        limit = self.timeout if within is None else within
        body: dict[str, Any] = {"url": self.url}
        if self.breaker.state is CircuitState.OPEN:
            return {
                **body,
                "status": "circuit_open",
                "error": f"{self.breaker.consecutive_failures} consecutive failures; "
                f"next trial in {self.breaker.retry_in():.1f}s",
            }
        started = time.perf_counter()
        try:
            response = await self._client.get(
                "/health",
                headers=self._headers(None, None),
                timeout=httpx.Timeout(limit, connect=min(limit, 5.0)),
            )
        except httpx.TimeoutException as exc:
            return {
                **body,
                "status": "unhealthy",
                "error": f"timed out after {limit:g}s ({type(exc).__name__})",
            }
        except httpx.HTTPError as exc:
            return {**body, "status": "unhealthy", "error": f"{type(exc).__name__}: {exc}"[:300]}
        latency_ms = round((time.perf_counter() - started) * 1000, 2)
        if response.status_code != 200:
            return {
                **body,
                "status": "unhealthy",
                "latency_ms": latency_ms,
                "error": f"HTTP {response.status_code}{_excerpt(response)}",
            }
        reported = _reported_status(response)
        if reported == "unhealthy":
            return {
                **body,
                "status": "unhealthy",
                "latency_ms": latency_ms,
                "error": "peer reports itself unhealthy",
            }
        return {**body, "status": "healthy", "latency_ms": latency_ms}

    async def close(self) -> None:
        await self._client.aclose()


def _reported_status(response: httpx.Response) -> str | None:
    try:
        data = response.json()
    except ValueError:
        return None
    status = data.get("status") if isinstance(data, dict) else None
    return status if isinstance(status, str) else None


def _excerpt(response: httpx.Response) -> str:
    """A short, single-line excerpt of an error body for messages (never the whole body)."""
    try:
        text = response.text
    except (UnicodeDecodeError, httpx.ResponseNotRead):
        return ""
    text = " ".join(text.split())
    return f": {text[:MAX_ERROR_BODY]}" if text else ""
