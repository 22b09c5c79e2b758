"""RateLimiter without a server: argument checks, the disabled mode, and Redis failures."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from common.errors import BackendUnavailable
from security.ratelimit import RateLimiter


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
async def unreachable_redis() -> AsyncIterator[Redis]:
    """A client for a port where nothing listens: every command fails at once."""
    client = Redis.from_url(f"redis://127.0.0.1:{unused_port()}/0", socket_connect_timeout=1)
    yield client
    await client.aclose()


@pytest.mark.parametrize(("limit", "window"), [(-1, 60.0), (10, 0.0), (10, -1.0)])
async def test_invalid_arguments(unreachable_redis: Redis, limit: int, window: float) -> None:
    with pytest.raises(ValueError):
        RateLimiter(unreachable_redis, limit, window_seconds=window)


async def test_zero_limit_disables_and_never_calls_redis(unreachable_redis: Redis) -> None:
    limiter = RateLimiter(unreachable_redis, 0)
    assert not limiter.enabled
    for _ in range(100):
        await limiter.check("alice")


async def test_redis_failure_is_backend_unavailable(unreachable_redis: Redis) -> None:
    limiter = RateLimiter(unreachable_redis, 10)
    with pytest.raises(BackendUnavailable, match="rate limiter unavailable") as caught:
        await limiter.check("alice")
    assert caught.value.status_code == 503


async def test_key_layout(unreachable_redis: Redis) -> None:
    limiter = RateLimiter(unreachable_redis, 5, key_prefix="svc:rl:")
    assert limiter.key_for("alice") == "svc:rl:alice"
    assert limiter.limit == 5
    assert limiter.window_seconds == 60.0
