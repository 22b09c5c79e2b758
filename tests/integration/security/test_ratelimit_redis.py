"""RateLimiter against a real Redis: limits, isolation, sliding-window recovery, atomicity."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from common.errors import RateLimited
from security.ratelimit import RateLimiter

pytestmark = pytest.mark.integration


async def allowed(limiter: RateLimiter, principal: str, attempts: int) -> int:
    count = 0
    for _ in range(attempts):
        try:
            await limiter.check(principal)
        except RateLimited:
            continue
        count += 1
    return count


async def test_allows_the_limit_then_refuses(redis: Redis, prefix: str) -> None:
    limiter = RateLimiter(redis, 5, key_prefix=prefix)
    for _ in range(5):
        await limiter.check("alice")
    with pytest.raises(RateLimited) as caught:
        await limiter.check("alice")
    error = caught.value
    assert error.status_code == 429
    assert error.code == "RATE_LIMITED"
    assert 1 <= error.retry_after <= 60
    assert error.details["retry_after"] == error.retry_after
    assert "at most 5 requests per minute" in error.message


async def test_retry_after_counts_from_the_oldest_request(redis: Redis, prefix: str) -> None:
    limiter = RateLimiter(redis, 1, key_prefix=prefix)
    await limiter.check("alice")
    with pytest.raises(RateLimited) as caught:
        await limiter.check("alice")
    assert 58 <= caught.value.retry_after <= 60


async def test_principals_are_limited_separately(redis: Redis, prefix: str) -> None:
    limiter = RateLimiter(redis, 3, key_prefix=prefix)
    assert await allowed(limiter, "alice", 10) == 3
    assert await allowed(limiter, "bob", 10) == 3


async def test_recovers_after_the_window(redis: Redis, prefix: str) -> None:
    limiter = RateLimiter(redis, 2, key_prefix=prefix, window_seconds=1)
    assert await allowed(limiter, "alice", 5) == 2
    with pytest.raises(RateLimited) as caught:
        await limiter.check("alice")
    assert caught.value.retry_after == 1
    await asyncio.sleep(1.1)
    assert await allowed(limiter, "alice", 5) == 2


async def test_window_slides_instead_of_resetting(redis: Redis, prefix: str) -> None:
    # limit 2 per second: requests at t=0 and t=0.6; at t=1.15 only the first has aged out,
    # so exactly one more request fits (a fixed window would have reset to two).
    limiter = RateLimiter(redis, 2, key_prefix=prefix, window_seconds=1)
    started = time.monotonic()
    await limiter.check("alice")
    await asyncio.sleep(0.6)
    await limiter.check("alice")
    with pytest.raises(RateLimited):
        await limiter.check("alice")
    await asyncio.sleep(max(0.0, 1.15 - (time.monotonic() - started)))
    assert await allowed(limiter, "alice", 3) == 1


async def test_refused_requests_are_not_recorded(redis: Redis, prefix: str) -> None:
    limiter = RateLimiter(redis, 3, key_prefix=prefix, window_seconds=2)
    assert await allowed(limiter, "alice", 20) == 3
    key = limiter.key_for("alice")
    assert await redis.zcard(key) == 3
    assert 0 < await redis.pttl(key) <= 2000


async def test_concurrent_checks_are_atomic(redis: Redis, prefix: str) -> None:
    limiter = RateLimiter(redis, 10, key_prefix=prefix)
    results = await asyncio.gather(*(limiter.check("alice") for _ in range(50)), return_exceptions=True)
    assert sum(result is None for result in results) == 10
    assert all(isinstance(result, RateLimited) for result in results if result is not None)


async def test_replicas_share_the_budget(redis: Redis, redis_url: str, prefix: str) -> None:
    other = Redis.from_url(redis_url)
    try:
        first = RateLimiter(redis, 4, key_prefix=prefix)
        second = RateLimiter(other, 4, key_prefix=prefix)
        assert await allowed(first, "alice", 2) == 2
        assert await allowed(second, "alice", 5) == 2
        with pytest.raises(RateLimited):
            await first.check("alice")
    finally:
        await other.aclose()


async def test_zero_limit_is_off_and_writes_nothing(redis: Redis, prefix: str) -> None:
    limiter = RateLimiter(redis, 0, key_prefix=prefix)
    assert await allowed(limiter, "alice", 200) == 200
    assert [key async for key in redis.scan_iter(match=f"{prefix}*")] == []


async def test_works_with_decoded_responses(redis_url: str, prefix: str) -> None:
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        limiter = RateLimiter(client, 1, key_prefix=prefix)
        await limiter.check("alice")
        with pytest.raises(RateLimited):
            await limiter.check("alice")
    finally:
        await client.aclose()
