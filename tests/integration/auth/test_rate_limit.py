"""Per-principal rate limiting through the real app and Redis.

The app's limiter has a 60 s window. To show recovery without waiting a minute, the last test
swaps ``runtime.rate_limiter`` for one with a 2 s window on the same Redis and key prefix; the
sliding window itself is unit-tested in ``tests/integration/security/test_ratelimit_redis.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI

from rdp_controller.config import RdpControllerSettings
from security.ratelimit import RateLimiter
from tests.support.app import auth

pytestmark = pytest.mark.integration

LIMIT = 5
ROUTE = "/api/v1/sessions"
ALICE = auth("alice", "user")
BOB = auth("bob", "user")


@pytest.fixture
def settings(settings_factory: Callable[..., RdpControllerSettings]) -> RdpControllerSettings:
    return settings_factory(RDP_CONTROLLER_RATE_LIMIT_PER_MINUTE=LIMIT)


def assert_limited(response: httpx.Response) -> int:
    assert response.status_code == 429, response.text
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= 60
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == "RATE_LIMITED"
    assert f"at most {LIMIT} requests" in error["message"]
    assert error["details"]["retry_after"] == retry_after
    assert error["details"]["limit"] == LIMIT
    return retry_after


async def test_over_the_limit_is_429_with_retry_after(client: httpx.AsyncClient) -> None:
    for _ in range(LIMIT):
        response = await client.get(ROUTE, headers=ALICE)
        assert response.status_code == 200, response.text
    assert_limited(await client.get(ROUTE, headers=ALICE))
    # Every protected route shares the principal's budget, and a new token for the same subject too.
    assert_limited(await client.get("/api/v1/metrics", headers=ALICE))
    assert_limited(await client.get(ROUTE, headers=auth("alice", "user")))


async def test_another_principal_is_unaffected(client: httpx.AsyncClient) -> None:
    for _ in range(LIMIT):
        assert (await client.get(ROUTE, headers=ALICE)).status_code == 200
    assert_limited(await client.get(ROUTE, headers=ALICE))
    for _ in range(LIMIT):
        response = await client.get(ROUTE, headers=BOB)
        assert response.status_code == 200, response.text
    assert_limited(await client.get(ROUTE, headers=BOB))


async def test_public_and_unauthenticated_requests_are_not_counted(client: httpx.AsyncClient) -> None:
    for _ in range(LIMIT * 2):
        assert (await client.get("/health")).status_code == 200
        assert (await client.get(ROUTE)).status_code == 401
    for _ in range(LIMIT):
        assert (await client.get(ROUTE, headers=ALICE)).status_code == 200
    assert_limited(await client.get(ROUTE, headers=ALICE))
    # Over the limit, the public routes still answer.
    assert (await client.get("/health")).status_code == 200
    assert (await client.get("/metrics")).status_code == 200


async def test_refused_requests_write_nothing(app_client: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, client = app_client
    service = auth("session-api", "service")
    for _ in range(LIMIT):
        assert (await client.get(ROUTE, headers=service)).status_code == 200
    sessions = app.state.runtime.store.database["rdp_sessions"]
    refused = await client.post(ROUTE, json={"user_id": "alice"}, headers=service)
    assert_limited(refused)
    assert await sessions.count_documents({}) == 0


async def test_recovers_after_the_window(app_client: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, client = app_client
    runtime = app.state.runtime
    window = 2.0
    runtime.rate_limiter = RateLimiter(
        runtime.redis,
        LIMIT,
        key_prefix=f"{runtime.settings.RDP_CONTROLLER_REDIS_PREFIX}:rate:",
        window_seconds=window,
    )
    for _ in range(LIMIT):
        assert (await client.get(ROUTE, headers=ALICE)).status_code == 200
    retry_after = assert_limited(await client.get(ROUTE, headers=ALICE))
    assert retry_after <= window
    # The refused request was not recorded: waiting Retry-After (the window, at most) is enough.
    await asyncio.sleep(window + 0.2)
    for _ in range(LIMIT):
        response = await client.get(ROUTE, headers=ALICE)
        assert response.status_code == 200, response.text
    # And the limit holds again once the new budget is spent.
    assert_limited(await client.get(ROUTE, headers=ALICE))
