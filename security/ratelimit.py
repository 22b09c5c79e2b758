"""Per-principal rate limiting in Redis (sliding window).

Each principal has a sorted set of the requests it was allowed in the last window, scored by
the Redis server's clock in milliseconds. One Lua script, run atomically by Redis, drops the
entries older than the window, counts the rest, and either records the new request or reports
how long until the oldest entry leaves the window. Refused requests are not recorded, so a
client that keeps retrying recovers as soon as its earlier requests age out - there is no
fixed-window reset cliff and no double burst at window edges.

Using the server's clock (``TIME``) keeps several controller replicas consistent even when
their own clocks differ. Memory: at most ``limit`` members per active principal; the key
expires one window after its last allowed request.
"""

from __future__ import annotations

import logging
import math
import secrets
from typing import Final

from redis.asyncio import Redis
from redis.exceptions import RedisError

from common.errors import BackendUnavailable, RateLimited

logger = logging.getLogger(__name__)

DEFAULT_KEY_PREFIX: Final = "lucid:ratelimit:"
DEFAULT_WINDOW_SECONDS: Final = 60.0

# KEYS[1] = the principal's sorted set. ARGV[1] = window (milliseconds), ARGV[2] = limit,
# ARGV[3] = a random member suffix (two requests in the same millisecond stay distinct).
# Milliseconds since the epoch (13 digits) survive Lua's number-to-string conversion exactly.
# Returns {1, 0} when allowed, {0, milliseconds until a slot frees up} when refused.
SLIDING_WINDOW_SCRIPT: Final = """
local key = KEYS[1]
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
if redis.call('ZCARD', key) < limit then
    redis.call('ZADD', key, now, now .. '-' .. ARGV[3])
    redis.call('PEXPIRE', key, window)
    return {1, 0}
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
local wait = window
if oldest[2] then
    wait = tonumber(oldest[2]) + window - now
end
return {0, wait}
"""


class RateLimiter:
    """Allows each principal ``limit_per_minute`` requests per sliding window.

    The window is 60 seconds; ``window_seconds`` changes it (tests use 1 second so they can show
    recovery quickly). ``limit_per_minute=0`` disables limiting (``RDP_CONTROLLER_RATE_LIMIT_PER_MINUTE=0``).

    When Redis fails, ``check`` raises ``BackendUnavailable`` (HTTP 503): the limit is never
    skipped silently.
    """

    def __init__(
        self,
        redis: Redis,
        limit_per_minute: int,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
    ) -> None:
        if limit_per_minute < 0:
            raise ValueError("limit_per_minute must be zero (off) or positive")
        if window_seconds <= 0:
            raise ValueError("window_seconds must be positive")
        self._redis = redis
        self._limit = limit_per_minute
        self._window_ms = max(1, math.ceil(window_seconds * 1000))
        self._window_seconds = window_seconds
        self._key_prefix = key_prefix
        self._script = redis.register_script(SLIDING_WINDOW_SCRIPT)

    @property
    def enabled(self) -> bool:
        return self._limit > 0

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def window_seconds(self) -> float:
        return self._window_seconds

    def key_for(self, principal_key: str) -> str:
        """The Redis key holding ``principal_key``'s recent requests."""
        return f"{self._key_prefix}{principal_key}"

    async def check(self, principal_key: str) -> None:
        """Record one request for ``principal_key``, or raise ``RateLimited`` if it is over the limit.

        ``RateLimited.retry_after`` is the whole number of seconds (at least 1) until the next
        request would be allowed.
        """
        if not self.enabled:
            return
        try:
            result = await self._script(
                keys=[self.key_for(principal_key)],
                args=[self._window_ms, self._limit, secrets.token_hex(6)],
            )
        except RedisError as exc:
            message = f"rate limiter unavailable: Redis failed ({type(exc).__name__})"
            raise BackendUnavailable(message) from exc
        allowed, wait_ms = int(result[0]), int(result[1])
        if allowed:
            return
        retry_after = max(1, math.ceil(wait_ms / 1000))
        raise RateLimited(
            f"rate limit exceeded: at most {self._limit} requests per {self._describe_window()}; "
            f"retry after {retry_after} s",
            retry_after=retry_after,
            details={"limit": self._limit, "window_seconds": self._window_seconds},
        )

    def _describe_window(self) -> str:
        if self._window_seconds == DEFAULT_WINDOW_SECONDS:
            return "minute"
        return f"{self._window_seconds:g} s"
