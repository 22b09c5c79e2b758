"""Fixtures of the security tests that run against a real Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(redis: Redis, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A key prefix of this test's own; only its keys are deleted afterwards."""
    value = f"test:{request.module.__name__.rsplit('.', 1)[-1]}:{uuid.uuid4().hex}:"
    yield value
    keys = [key async for key in redis.scan_iter(match=f"{value}*")]
    if keys:
        await redis.delete(*keys)
