"""The health monitor and the pool routes against real backends and a real xrdp on loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from rdp_controller.storage.mongo import SERVER_EVENTS
from tests.support.app import auth, running_app
from tests.support.app import test_settings as make_settings
from tests.support.pool import create, get_server, monitor
from tests.support.xrdp_host import XrdpHost, free_loopback_port, require_xrdp

pytestmark = [pytest.mark.integration, pytest.mark.xrdp]

OPERATOR = auth("op", "operator")
SERVICE = auth("svc", "service")
PROBE_FIELDS = {
    "reachable",
    "latency_ms",
    "selected_protocol",
    "tls_version",
    "cert_sha256",
    "cert_subject",
    "cert_not_after",
    "failure_code",
    "failure_name",
    "error",
    "checked_at",
}
Register = Callable[..., Awaitable[dict[str, Any]]]
App = tuple[FastAPI, httpx.AsyncClient]


@pytest.fixture
def xrdp() -> Iterator[XrdpHost]:
    """An xrdp of this test's own (tests stop and restart it)."""
    require_xrdp()
    with XrdpHost(security="negotiate") as host:
        yield host


@pytest.fixture
async def app(
    mongo_url: str, redis_url: str, quiet_monitor: Callable[[FastAPI], Awaitable[None]]
) -> AsyncIterator[App]:
    """The app with thresholds of 2 and a probe loop that runs once at start, then waits an hour."""
    settings = make_settings(
        mongo_url,
        redis_url,
        RDP_CONTROLLER_PROBE_INTERVAL=3600,
        RDP_CONTROLLER_PROBE_TIMEOUT=3,
        RDP_CONTROLLER_UNHEALTHY_THRESHOLD=2,
        RDP_CONTROLLER_HEALTHY_THRESHOLD=2,
    )
    async with running_app(settings) as (application, client):
        await quiet_monitor(application)
        yield application, client


async def test_probe_now_returns_the_protocol_and_the_certificate_xrdp_serves(
    app: App, xrdp: XrdpHost, register: Register, api_schema: Callable[[str, Any], None]
) -> None:
    _application, client = app
    server = await register(client, port=xrdp.port)
    assert server["last_probe"] is None

    response = await client.post(f"/api/v1/servers/{server['server_id']}/probe", headers=OPERATOR)
    assert response.status_code == 200, response.text
    result = response.json()
    api_schema("ProbeResult", result)
    assert set(result) == PROBE_FIELDS
    assert result["reachable"] is True and result["error"] is None and result["failure_code"] is None
    assert result["selected_protocol"] == "ssl"  # xrdp 0.9 has no CredSSP: SSL|HYBRID gets SSL
    assert result["cert_sha256"] == xrdp.certificate_sha256
    assert result["tls_version"].startswith("TLSv1.")

    stored = await get_server(client, server["server_id"])
    api_schema("Server", stored)
    assert stored["last_probe"]["cert_sha256"] == xrdp.certificate_sha256
    assert stored["last_probe"]["checked_at"][:19] == result["checked_at"][:19]
    assert (stored["state"], stored["consecutive_successes"], stored["consecutive_failures"]) == (
        "available",
        1,
        0,
    )


async def test_probe_route_errors(app: App, xrdp: XrdpHost, register: Register) -> None:
    _application, client = app
    server = await register(client, port=xrdp.port)
    unknown = "00000000-0000-4000-8000-000000000000"
    assert (await client.post(f"/api/v1/servers/{unknown}/probe", headers=OPERATOR)).status_code == 404
    assert (await client.post("/api/v1/servers/not-a-uuid/probe", headers=OPERATOR)).status_code == 422
    forbidden = await client.post(f"/api/v1/servers/{server['server_id']}/probe", headers=SERVICE)
    assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "OPERATOR_REQUIRED"
    assert (await client.post(f"/api/v1/servers/{server['server_id']}/probe")).status_code == 401


async def test_a_stopped_xrdp_turns_unhealthy_after_the_threshold_and_back_after_restart(
    app: App, xrdp: XrdpHost, register: Register
) -> None:
    application, client = app
    server = await register(client, port=xrdp.port)
    server_id = server["server_id"]
    assert await monitor(application).run_once() == 1
    assert (await get_server(client, server_id))["state"] == "available"

    await asyncio.to_thread(xrdp.stop)
    await monitor(application).run_once()
    first = await get_server(client, server_id)
    assert (first["state"], first["consecutive_failures"]) == ("available", 1)  # one lost probe: no flap
    assert first["last_probe"]["reachable"] is False and first["last_probe"]["error"]
    await monitor(application).run_once()
    down = await get_server(client, server_id)
    assert (down["state"], down["state_reason"], down["consecutive_failures"]) == (
        "unhealthy",
        "probe_failed",
        2,
    )

    # No placement on it: 503 when it is the only server, 409 when the request pins it.
    refused = await create(client, "u1")
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "NO_CAPACITY"
    pinned = await create(client, "u1", server_id)
    assert pinned.status_code == 409 and pinned.json()["error"]["code"] == "SERVER_NOT_AVAILABLE"

    await asyncio.to_thread(xrdp.start)
    await monitor(application).run_once()
    recovering = await get_server(client, server_id)
    assert (recovering["state"], recovering["consecutive_successes"]) == ("unhealthy", 1)
    await monitor(application).run_once()
    up = await get_server(client, server_id)
    assert (up["state"], up["state_reason"], up["consecutive_successes"]) == ("available", None, 2)
    assert (await create(client, "u1")).status_code == 201

    events = application.state.runtime.store.database[SERVER_EVENTS]
    kinds = [
        (e["kind"], e["old"], e["new"]) async for e in events.find({"server_id": server_id}).sort("at", 1)
    ]
    assert kinds == [("state_changed", "available", "unhealthy"), ("state_changed", "unhealthy", "available")]


async def test_the_background_loop_moves_the_state_with_a_short_interval(
    mongo_url: str, redis_url: str, xrdp: XrdpHost, register: Register
) -> None:
    settings = make_settings(
        mongo_url,
        redis_url,
        RDP_CONTROLLER_PROBE_INTERVAL=0.2,
        RDP_CONTROLLER_PROBE_TIMEOUT=2,
        RDP_CONTROLLER_UNHEALTHY_THRESHOLD=2,
        RDP_CONTROLLER_HEALTHY_THRESHOLD=2,
    )
    async with running_app(settings) as (application, client):
        server = await register(client, port=xrdp.port)

        async def state_becomes(wanted: str, timeout: float = 20.0) -> dict[str, Any]:  # noqa: ASYNC109
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                current = await get_server(client, server["server_id"])
                if current["state"] == wanted and current["last_probe"] is not None:
                    return current
                await asyncio.sleep(0.1)
            raise AssertionError(f"server not {wanted} within {timeout} s: {current}")

        available = await state_becomes("available")
        assert available["last_probe"]["cert_sha256"] == xrdp.certificate_sha256
        await asyncio.to_thread(xrdp.stop)
        unhealthy = await state_becomes("unhealthy")
        assert unhealthy["consecutive_failures"] >= 2
        await asyncio.to_thread(xrdp.start)
        back = await state_becomes("available")
        assert back["consecutive_successes"] >= 2
        health = (await client.get("/api/v1/connections/health", headers=SERVICE)).json()
        assert health["monitor"] == "leader"
        assert application.state.runtime.background.states["health_monitor"].last_error is None


async def test_a_pinned_certificate_the_host_does_not_serve_is_refused_until_re_pinned(
    app: App, xrdp: XrdpHost, register: Register
) -> None:
    _application, client = app
    server = await register(client, port=xrdp.port, pinned_cert_sha256="0" * 64)
    probe_url = f"/api/v1/servers/{server['server_id']}/probe"
    assert (await client.post(probe_url, headers=OPERATOR)).json()["cert_sha256"] == xrdp.certificate_sha256
    refused = await get_server(client, server["server_id"])
    assert (refused["state"], refused["state_reason"]) == ("unhealthy", "certificate_mismatch")
    assert xrdp.certificate_sha256 in refused["state_detail"] and "0" * 64 in refused["state_detail"]
    assert (await create(client, "u1")).status_code == 503

    patch = await client.patch(
        f"/api/v1/servers/{server['server_id']}",
        json={"pinned_cert_sha256": xrdp.certificate_sha256},
        headers=OPERATOR,
    )
    assert patch.status_code == 200 and patch.json()["state"] == "unhealthy"  # the next probe decides
    await client.post(probe_url, headers=OPERATOR)
    accepted = await get_server(client, server["server_id"])
    assert (accepted["state"], accepted["state_reason"]) == ("available", None)
    assert (await create(client, "u1")).status_code == 201


async def test_a_certificate_change_is_an_event_and_degrades_until_it_is_served_again(
    app: App, xrdp: XrdpHost, register: Register
) -> None:
    application, client = app
    server = await register(client, port=xrdp.port)
    server_id = server["server_id"]
    probe_url = f"/api/v1/servers/{server_id}/probe"
    await client.post(probe_url, headers=OPERATOR)
    # As if the host had served another certificate before (xrdp regenerated or replaced its pair).
    runtime = application.state.runtime
    old = "e" * 64
    await runtime.store.servers.collection.update_one(
        {"server_id": server_id}, {"$set": {"last_cert_sha256": old}}
    )

    await client.post(probe_url, headers=OPERATOR)
    degraded = await get_server(client, server_id)
    assert (degraded["state"], degraded["state_reason"], degraded["consecutive_successes"]) == (
        "degraded",
        "certificate_changed",
        1,
    )
    event = await runtime.store.database[SERVER_EVENTS].find_one(
        {"server_id": server_id, "kind": "certificate_changed"}
    )
    assert event is not None and (event["old"], event["new"]) == (old, xrdp.certificate_sha256)
    assert (await create(client, "u1")).status_code == 503  # degraded takes no new sessions

    await client.post(probe_url, headers=OPERATOR)
    assert (await get_server(client, server_id))["state"] == "available"
    assert await runtime.store.database[SERVER_EVENTS].count_documents({"kind": "certificate_changed"}) == 1


async def test_pool_health_and_metrics_match_the_contract(
    app: App, xrdp: XrdpHost, register: Register, api_schema: Callable[[str, Any], None]
) -> None:
    application, client = app
    empty = (await client.get("/api/v1/connections/health", headers=SERVICE)).json()
    api_schema("PoolHealth", empty)
    assert (empty["status"], empty["servers"]) == ("unhealthy", 0)  # nothing can be placed

    up = await register(client, port=xrdp.port, capacity=4)
    down = await register(client, port=free_loopback_port(), capacity=6)  # nothing listens there
    await monitor(application).run_once()
    for user in ("u1", "u2"):
        assert (await create(client, user, up["server_id"])).status_code == 201

    response = await client.get("/api/v1/connections/health", headers=OPERATOR)
    assert response.status_code == 200
    health = response.json()
    api_schema("PoolHealth", health)
    assert set(health) == {"status", "servers", "by_state", "reachable", "unreachable", "monitor"}
    assert health["servers"] == 2 and health["reachable"] == 1 and health["unreachable"] == 1
    assert health["by_state"] == {"available": 2, "degraded": 0, "unhealthy": 0, "draining": 0, "disabled": 0}
    assert health["status"] == "healthy" and health["monitor"] == "leader"

    response = await client.get("/api/v1/connections/metrics", headers=SERVICE)
    assert response.status_code == 200
    metrics = response.json()
    api_schema("ConnectionMetrics", metrics)
    assert (metrics["servers"], metrics["capacity"], metrics["leases"], metrics["open_connections"]) == (
        2,
        10,
        2,
        0,
    )
    assert metrics["utilisation"] == pytest.approx(0.2)
    assert set(metrics["probe_latency_ms"]) == {up["server_id"], down["server_id"]}
    assert (
        metrics["probe_latency_ms"][up["server_id"]] > 0
        and metrics["probe_latency_ms"][down["server_id"]] is None
    )

    await monitor(application).run_once()  # the second failure of `down`: unhealthy
    degraded = (await client.get("/api/v1/connections/health", headers=SERVICE)).json()
    assert degraded["status"] == "degraded" and degraded["by_state"]["unhealthy"] == 1

    for path in ("/api/v1/connections/health", "/api/v1/connections/metrics"):
        assert (await client.get(path, headers=auth("u1", "user"))).status_code == 403
        assert (await client.get(path)).status_code == 401
