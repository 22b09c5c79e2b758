"""Run the application in-process against real backends, for integration tests."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI

from rdp_controller.config import RdpControllerSettings
from rdp_controller.main import create_app
from security.jwt_auth import mint_token

TEST_SECRET = "test-secret-" + "x" * 40


def test_settings(mongo_url: str, redis_url: str, **overrides: Any) -> RdpControllerSettings:
    """Settings isolated per test: their own database and Redis key prefix."""
    tag = uuid.uuid4().hex[:12]
    values: dict[str, Any] = {
        "LUCID_ENV": "test",
        "MONGODB_URL": mongo_url,
        "REDIS_URL": redis_url,
        "MONGODB_DATABASE": f"test_{tag}",
        "RDP_CONTROLLER_REDIS_PREFIX": f"t{tag}",
        "JWT_SECRET_KEY": TEST_SECRET,
        "LOG_LEVEL": "WARNING",
        "RDP_CONTROLLER_RELAY_PORT": 0,  # direct mode unless a test turns the relay on
        # Every response checked against its JSON schema; running_app fails the test on a mismatch.
        "RDP_CONTROLLER_VALIDATE_RESPONSES": True,
        **overrides,
    }
    return RdpControllerSettings.model_validate(values)


test_settings.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def token(subject: str, *roles: str, ttl: int = 3600, **kwargs: Any) -> str:
    return mint_token(
        secret=TEST_SECRET,
        subject=subject,
        roles=list(roles or ("user",)),
        audience="rdp-controller",
        ttl_seconds=ttl,
        **kwargs,
    )


def auth(subject: str, *roles: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(subject, *roles)}"}


@asynccontextmanager
async def running_app(settings: RdpControllerSettings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app with its lifespan running, and an HTTP client bound to it (no network).

    With ``RDP_CONTROLLER_VALIDATE_RESPONSES`` on (``test_settings``), every body the app answered is
    checked against its JSON schema (production does not pay for that): a mismatch fails the test here.
    """
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(app.state.runtime.mongo_ready.wait(), timeout=60)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://rdp-controller.test") as client:
            yield app, client
        schemas = app.state.runtime.schemas
        assert schemas.failures == 0, f"responses broke their JSON schema: {schemas.failure_messages}"


OPERATOR = auth("ops", "operator")
SERVICE = auth("session-api", "service")


async def register_server(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    """Register a server through the API as an operator (no real RDP host needed)."""
    body = {"name": "xrdp-1", "address": "10.1.2.3", "port": 3389, "capacity": 5, **fields}
    response = await client.post("/api/v1/servers", json=body, headers=OPERATOR)
    assert response.status_code == 201, response.text
    server: dict[str, Any] = response.json()
    return server
