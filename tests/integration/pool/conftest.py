"""Fixtures of the server-pool integration tests: the OpenAPI contract as a validator, and helpers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.support.app import auth
from tests.support.openapi import violations

OPERATOR = auth("op", "operator")
SERVICE = auth("svc", "service")

SchemaCheck = Callable[[str, Any], None]


@pytest.fixture(scope="session")
def api_schema() -> SchemaCheck:
    """``check(name, body)``: the body matches ``components/schemas/<name>`` of openapi.yaml."""

    def check(name: str, body: Any) -> None:
        problems = violations(name, body)
        assert not problems, f"{name} does not match openapi.yaml: {problems}"

    return check


@pytest.fixture
def register() -> Callable[..., Awaitable[dict[str, Any]]]:
    """``await register(client, port=..., **fields)``: register a loopback server as an operator (201)."""

    async def _register(client: httpx.AsyncClient, *, port: int, **fields: Any) -> dict[str, Any]:
        body = {"name": f"rdp-{port}", "address": "127.0.0.1", "port": port, **fields}
        response = await client.post("/api/v1/servers", json=body, headers=OPERATOR)
        assert response.status_code == 201, response.text
        server: dict[str, Any] = response.json()
        return server

    return _register


async def monitor_started(app: FastAPI, timeout: float = 10.0) -> None:  # noqa: ASYNC109
    """Wait for the health monitor loop's first round, so a long probe interval keeps it quiet after."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = app.state.runtime.background.states.get("health_monitor")
        if state is not None and state.rounds >= 1:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the health monitor loop did not run its first round")


@pytest.fixture
def quiet_monitor() -> Callable[[FastAPI], Awaitable[None]]:
    return monitor_started
