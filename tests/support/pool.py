"""Helpers of the server-pool tests."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI

from rdp_controller.health_monitor import HealthMonitor
from tests.support.app import OPERATOR, SERVICE


def monitor(application: FastAPI) -> HealthMonitor:
    health_monitor: HealthMonitor = application.state.runtime.health_monitor
    return health_monitor


async def get_server(client: httpx.AsyncClient, server_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/v1/servers/{server_id}", headers=OPERATOR)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def create(client: httpx.AsyncClient, user: str, server_id: str | None = None) -> httpx.Response:
    """A new session for ``user`` (never a reconnect), optionally pinned to ``server_id``."""
    body: dict[str, Any] = {"user_id": user, "new_session": True}
    if server_id is not None:
        body["server_id"] = server_id
    return await client.post("/api/v1/sessions", json=body, headers=SERVICE)
