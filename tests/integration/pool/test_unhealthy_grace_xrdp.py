"""``RDP_CONTROLLER_UNHEALTHY_GRACE_SECONDS`` against a real xrdp that is stopped.

The setting reaches the runtime's health monitor: once the host has been ``unhealthy`` for longer
than the grace, the monitor's own background loop terminates the host's live sessions with reason
``server_unhealthy``, releases their slots and records their events. At 0 (the default) it never
does, however long the host stays down.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from rdp_controller.config import RdpControllerSettings
from tests.support.app import OPERATOR, SERVICE, running_app
from tests.support.app import test_settings as make_settings
from tests.support.pool import create, get_server, monitor
from tests.support.xrdp_host import XrdpHost, require_xrdp

pytestmark = [pytest.mark.integration, pytest.mark.xrdp]

GRACE = 2


@pytest.fixture
def xrdp() -> Iterator[XrdpHost]:
    require_xrdp()
    with XrdpHost(security="negotiate") as host:
        yield host


async def register(client: httpx.AsyncClient, port: int) -> str:
    body = {"name": f"grace-{port}", "address": "127.0.0.1", "port": port, "capacity": 4}
    response = await client.post("/api/v1/servers", json=body, headers=OPERATOR)
    assert response.status_code == 201, response.text
    return str(response.json()["server_id"])


async def live_session_on(client: httpx.AsyncClient, user: str, server_id: str, *, connect: bool) -> str:
    created = await create(client, user, server_id)
    assert created.status_code == 201, created.text
    session_id = str(created.json()["session_id"])
    if connect:
        connected = await client.post(f"/api/v1/sessions/{session_id}/connect", headers=SERVICE)
        assert connected.status_code == 200, connected.text
    return session_id


async def session(client: httpx.AsyncClient, session_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/v1/sessions/{session_id}", headers=SERVICE)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def settings_with(mongo_url: str, redis_url: str, **values: Any) -> RdpControllerSettings:
    return make_settings(
        mongo_url,
        redis_url,
        RDP_CONTROLLER_PROBE_TIMEOUT=2,
        RDP_CONTROLLER_UNHEALTHY_THRESHOLD=1,
        RDP_CONTROLLER_HEALTHY_THRESHOLD=1,
        **values,
    )


def test_the_default_is_off() -> None:
    assert RdpControllerSettings.model_fields["RDP_CONTROLLER_UNHEALTHY_GRACE_SECONDS"].default == 0


async def test_sessions_of_a_host_unhealthy_past_the_grace_are_terminated_by_the_monitor_loop(
    mongo_url: str, redis_url: str, xrdp: XrdpHost
) -> None:
    settings = settings_with(
        mongo_url, redis_url, RDP_CONTROLLER_PROBE_INTERVAL=0.3, RDP_CONTROLLER_UNHEALTHY_GRACE_SECONDS=GRACE
    )
    async with running_app(settings) as (application, client):
        assert monitor(application).unhealthy_grace_seconds == GRACE
        server_id = await register(client, xrdp.port)
        active = await live_session_on(client, "grace-a", server_id, connect=True)
        ready = await live_session_on(client, "grace-b", server_id, connect=False)
        assert (await get_server(client, server_id))["live_sessions"] == 2

        await asyncio.to_thread(xrdp.stop)
        deadline = time.monotonic() + 30
        unhealthy_since: datetime | None = None
        while time.monotonic() < deadline:
            server = await get_server(client, server_id)
            if server.get("unhealthy_since") and unhealthy_since is None:
                unhealthy_since = datetime.fromisoformat(server["unhealthy_since"])
                # Unhealthy, but within the grace: nothing is terminated yet.
                assert (await session(client, active))["status"] == "active"
            if (await session(client, active))["status"] == "terminated":
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(
                f"sessions not terminated within 30 s: {await get_server(client, server_id)}"
            )

        assert unhealthy_since is not None
        server = await get_server(client, server_id)
        assert server["state"] == "unhealthy" and server["live_sessions"] == 0
        for session_id in (active, ready):
            ended = await session(client, session_id)
            assert (ended["status"], ended["termination_reason"]) == ("terminated", "server_unhealthy")
            assert (datetime.fromisoformat(ended["terminated_at"]) - unhealthy_since).total_seconds() >= GRACE
            events = await client.get(f"/api/v1/sessions/{session_id}/events", headers=SERVICE)
            last = events.json()["items"][-1]
            assert (last["to_status"], last["reason"], last["actor"]) == (
                "terminated",
                "server_unhealthy",
                "health_monitor",
            )
        # The slots are free again: once the host is back, new sessions are placed on it.
        await asyncio.to_thread(xrdp.start)
        await monitor(application).run_once()
        assert (await create(client, "grace-a", server_id)).status_code == 201


async def test_at_zero_the_sessions_of_a_dead_host_are_kept(
    mongo_url: str, redis_url: str, xrdp: XrdpHost, quiet_monitor: Callable[[FastAPI], Awaitable[None]]
) -> None:
    settings = settings_with(mongo_url, redis_url, RDP_CONTROLLER_PROBE_INTERVAL=3600)
    async with running_app(settings) as (application, client):
        await quiet_monitor(application)  # its first round is over; then only the calls below probe
        assert monitor(application).unhealthy_grace_seconds is None
        server_id = await register(client, xrdp.port)
        active = await live_session_on(client, "keep-a", server_id, connect=True)
        await asyncio.to_thread(xrdp.stop)
        await monitor(application).run_once()
        assert (await get_server(client, server_id))["state"] == "unhealthy"
        await asyncio.sleep(GRACE + 0.5)
        await monitor(application).run_once()
        kept = await session(client, active)
        assert (kept["status"], kept["termination_reason"]) == ("active", None)
        assert (await get_server(client, server_id))["live_sessions"] == 1
