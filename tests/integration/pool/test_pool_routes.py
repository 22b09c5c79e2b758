"""Server routes against real backends: bad input, drain, remove with force, health of a dead host."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.support.app import auth, running_app
from tests.support.app import test_settings as make_settings
from tests.support.pool import create, get_server, monitor
from tests.support.xrdp_host import free_loopback_port

pytestmark = pytest.mark.integration

OPERATOR = auth("op", "operator")
SERVICE = auth("svc", "service")
Register = Callable[..., Awaitable[dict[str, Any]]]
App = tuple[FastAPI, httpx.AsyncClient]


@pytest.fixture
async def app(
    mongo_url: str, redis_url: str, quiet_monitor: Callable[[FastAPI], Awaitable[None]]
) -> AsyncIterator[App]:
    settings = make_settings(
        mongo_url,
        redis_url,
        RDP_CONTROLLER_PROBE_INTERVAL=3600,
        RDP_CONTROLLER_PROBE_TIMEOUT=2,
        RDP_CONTROLLER_UNHEALTHY_THRESHOLD=2,
        RDP_CONTROLLER_HEALTHY_THRESHOLD=2,
        RDP_CONTROLLER_REAPER_INTERVAL=0.2,  # the drain deadline loop runs at this interval
    )
    async with running_app(settings) as (application, client):
        await quiet_monitor(application)
        yield application, client


async def servers(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (await client.get("/api/v1/servers", headers=OPERATOR)).json()["items"]
    return items


async def session_of(client: httpx.AsyncClient, session_id: str) -> dict[str, Any]:
    body: dict[str, Any] = (await client.get(f"/api/v1/sessions/{session_id}", headers=SERVICE)).json()
    return body


def fields_of(response: httpx.Response) -> set[str]:
    details = response.json()["error"]["details"]
    named = {e["field"] for e in details.get("errors", [])}
    return named | ({details["field"]} if "field" in details else set())


# Bad input ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"address": "999.1.1.1"}, "address"),
        ({"address": "10.0.0.01"}, "address"),
        ({"address": "0.0.0.0"}, "address"),
        ({"address": "no spaces allowed"}, "address"),
        ({"address": "host.example:3389"}, "address"),
        ({"address": ""}, "address"),
        ({"port": 0}, "port"),
        ({"port": 65536}, "port"),
        ({"capacity": 0}, "capacity"),
        ({"weight": 0}, "weight"),
        ({"name": "bad name"}, "name"),
        ({"labels": {"bad key": "x"}}, "labels"),
        ({"pinned_cert_sha256": "not-hex"}, "pinned_cert_sha256"),
        ({"state": "available"}, "state"),
    ],
)
async def test_bad_registrations_are_422_naming_the_field_and_write_nothing(
    app: App, fields: dict[str, Any], field: str
) -> None:
    _application, client = app
    body = {"name": "rdp-bad", "address": "10.0.0.5", "port": 3389, **fields}
    response = await client.post("/api/v1/servers", json=body, headers=OPERATOR)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert field in fields_of(response), response.text
    assert await servers(client) == []


async def test_a_duplicate_address_and_port_is_409_after_normalisation(app: App) -> None:
    _application, client = app
    first = {"name": "a", "address": "Rdp-1.Example.com", "port": 3389}
    assert (await client.post("/api/v1/servers", json=first, headers=OPERATOR)).status_code == 201
    for address in ("rdp-1.example.com", "RDP-1.EXAMPLE.COM"):
        again = await client.post(
            "/api/v1/servers", json={"name": "b", "address": address, "port": 3389}, headers=OPERATOR
        )
        assert again.status_code == 409, again.text
        assert again.json()["error"]["code"] == "DUPLICATE_SERVER"
        assert again.json()["error"]["details"]["field"] == "address"
    ipv6 = {"name": "c", "address": "0:0:0:0:0:0:0:1", "port": 3389}
    assert (await client.post("/api/v1/servers", json=ipv6, headers=OPERATOR)).json()["address"] == "::1"
    dup6 = await client.post(
        "/api/v1/servers", json={**ipv6, "name": "d", "address": "::1"}, headers=OPERATOR
    )
    assert dup6.status_code == 409
    other_port = await client.post(
        "/api/v1/servers", json={**first, "name": "e", "port": 3390}, headers=OPERATOR
    )
    assert other_port.status_code == 201
    assert sorted(s["name"] for s in await servers(client)) == ["a", "c", "e"]


async def test_bad_updates_are_refused_and_change_nothing(app: App, register: Register) -> None:
    _application, client = app
    server = await register(client, port=free_loopback_port(), capacity=3)
    url = f"/api/v1/servers/{server['server_id']}"
    for user in ("u1", "u2"):
        assert (await create(client, user)).status_code == 201

    below = await client.patch(url, json={"capacity": 1, "weight": 5}, headers=OPERATOR)
    assert below.status_code == 422 and fields_of(below) == {"capacity"}
    assert below.json()["error"]["details"]["live_sessions"] == 2
    deadline_alone = await client.patch(url, json={"drain_deadline_seconds": 60}, headers=OPERATOR)
    assert deadline_alone.status_code == 422 and fields_of(deadline_alone) == {"drain_deadline_seconds"}
    undrain_deadline = await client.patch(
        url, json={"draining": False, "drain_deadline_seconds": 60}, headers=OPERATOR
    )
    assert undrain_deadline.status_code == 422 and fields_of(undrain_deadline) == {"drain_deadline_seconds"}
    for body, field in (
        ({"capacity": 0}, "capacity"),
        ({"address": "10.0.0.9"}, "address"),
        ({"pinned_cert_sha256": "XYZ"}, "pinned_cert_sha256"),
    ):
        response = await client.patch(url, json=body, headers=OPERATOR)
        assert response.status_code == 422 and field in fields_of(response), response.text

    unchanged = await get_server(client, server["server_id"])
    assert (unchanged["capacity"], unchanged["weight"], unchanged["state"], unchanged["draining"]) == (
        3,
        1.0,
        "available",
        False,
    )
    assert (await client.patch(url, json={"capacity": 2}, headers=OPERATOR)).json()["capacity"] == 2
    missing = "00000000-0000-4000-8000-000000000000"
    assert (
        await client.patch(f"/api/v1/servers/{missing}", json={"capacity": 2}, headers=OPERATOR)
    ).status_code == 404


# Drain and remove -------------------------------------------------------------------------
async def test_a_draining_server_takes_no_sessions_and_its_deadline_ends_the_rest(
    app: App, register: Register
) -> None:
    application, client = app
    server = await register(client, port=free_loopback_port(), capacity=5)
    server_id = server["server_id"]
    session = (await create(client, "u1")).json()
    url = f"/api/v1/servers/{server_id}"

    drained = await client.patch(url, json={"draining": True}, headers=OPERATOR)
    assert drained.status_code == 200
    assert (drained.json()["state"], drained.json()["draining"], drained.json()["drain_deadline"]) == (
        "draining",
        True,
        None,
    )
    refused = await create(client, "u2")
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "NO_CAPACITY"
    pinned = await create(client, "u2", server_id)
    assert pinned.status_code == 409 and pinned.json()["error"]["code"] == "SERVER_NOT_AVAILABLE"
    await asyncio.sleep(0.5)  # the drain loop runs, but there is no deadline
    assert (await session_of(client, session["session_id"]))["status"] == "ready"

    with_deadline = await client.patch(
        url, json={"draining": True, "drain_deadline_seconds": 0}, headers=OPERATOR
    )
    assert with_deadline.json()["drain_deadline"] is not None
    deadline = time.monotonic() + 10
    while (await session_of(client, session["session_id"]))["status"] != "terminated":
        assert time.monotonic() < deadline, "the drain deadline did not terminate the session"
        await asyncio.sleep(0.1)
    ended = await session_of(client, session["session_id"])
    assert ended["termination_reason"] == "server_removed"
    assert await application.state.runtime.coordination.live_count(server_id) == 0
    assert (await get_server(client, server_id))["live_sessions"] == 0

    undrained = await client.patch(url, json={"draining": False}, headers=OPERATOR)
    assert (undrained.json()["state"], undrained.json()["drain_deadline"]) == ("available", None)
    assert (await create(client, "u2")).status_code == 201


async def test_removing_a_server_with_live_sessions_needs_force(
    app: App, register: Register, api_schema: Callable[[str, Any], None]
) -> None:
    application, client = app
    server = await register(client, port=free_loopback_port())
    server_id = server["server_id"]
    sessions = [(await create(client, user)).json()["session_id"] for user in ("u1", "u2")]
    url = f"/api/v1/servers/{server_id}"

    refused = await client.delete(url, headers=OPERATOR)
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "SERVER_HAS_SESSIONS"
    assert refused.json()["error"]["details"]["live_sessions"] == 2
    assert (await get_server(client, server_id))["live_sessions"] == 2
    assert {(await session_of(client, s))["status"] for s in sessions} == {"ready"}

    forced = await client.delete(url, params={"force": "true"}, headers=OPERATOR)
    assert forced.status_code == 200, forced.text
    body = forced.json()
    api_schema("ServerRemoved", body)
    assert body["removed"] is True and sorted(body["terminated_sessions"]) == sorted(sessions)
    for session_id in sessions:
        ended = await session_of(client, session_id)
        assert (ended["status"], ended["termination_reason"]) == ("terminated", "server_removed")
    assert (await client.get(url, headers=OPERATOR)).status_code == 404
    assert await application.state.runtime.coordination.live_count(server_id) == 0
    assert (await client.delete(url, headers=OPERATOR)).status_code == 404


async def test_removing_an_idle_server_needs_no_force(app: App, register: Register) -> None:
    _application, client = app
    server = await register(client, port=free_loopback_port())
    response = await client.delete(f"/api/v1/servers/{server['server_id']}", headers=OPERATOR)
    assert response.status_code == 200
    assert response.json() == {"server_id": server["server_id"], "removed": True, "terminated_sessions": []}


# Health of a host nobody listens on -------------------------------------------------------
async def test_a_draining_server_is_probed_but_stays_draining_and_comes_back_with_its_health(
    app: App, register: Register
) -> None:
    application, client = app
    server = await register(client, port=free_loopback_port())
    server_id = server["server_id"]
    url = f"/api/v1/servers/{server_id}"
    await client.patch(url, json={"draining": True}, headers=OPERATOR)
    for _ in range(2):
        await monitor(application).run_once()
    draining = await get_server(client, server_id)
    assert draining["state"] == "draining" and draining["health_state"] == "unhealthy"
    assert draining["consecutive_failures"] == 2 and draining["last_probe"]["reachable"] is False
    assert "connect failed" in draining["last_probe"]["error"]

    back = await client.patch(url, json={"draining": False}, headers=OPERATOR)
    assert back.json()["state"] == "unhealthy"  # not `available`: the host is still down
    disabled = await client.patch(url, json={"disabled": True}, headers=OPERATOR)
    assert disabled.json()["state"] == "disabled"
    await monitor(application).run_once()
    assert (await get_server(client, server_id))["consecutive_failures"] == 2  # disabled: not probed
    probed = await client.post(f"{url}/probe", headers=OPERATOR)  # but probe-now still works
    assert probed.status_code == 200 and probed.json()["reachable"] is False
    after = await get_server(client, server_id)
    assert (after["state"], after["consecutive_failures"]) == ("disabled", 3)
    enabled = await client.patch(url, json={"disabled": False, "draining": False}, headers=OPERATOR)
    assert enabled.json()["state"] == "unhealthy"


async def test_sessions_survive_an_unhealthy_server_unless_a_grace_is_set(
    app: App, register: Register
) -> None:
    application, client = app
    server = await register(client, port=free_loopback_port())
    session = (await create(client, "u1")).json()
    for _ in range(2):
        await monitor(application).run_once()
    assert (await get_server(client, server["server_id"]))["state"] == "unhealthy"
    assert (await session_of(client, session["session_id"]))["status"] == "ready"
    assert await monitor(application).terminate_overdue(3600) == 0
    assert await monitor(application).terminate_overdue(0) == 1
    ended = await session_of(client, session["session_id"])
    assert (ended["status"], ended["termination_reason"]) == ("terminated", "server_unhealthy")


async def test_a_probe_racing_an_operator_never_overrides_the_drain(app: App, register: Register) -> None:
    application, client = app
    server = await register(client, port=free_loopback_port())
    url = f"/api/v1/servers/{server['server_id']}"
    health_monitor = monitor(application)
    for _ in range(5):
        await asyncio.gather(
            health_monitor.run_once(),
            client.patch(url, json={"draining": True}, headers=OPERATOR),
            health_monitor.run_once(),
        )
        current = await get_server(client, server["server_id"])
        assert current["state"] == "draining"
        await client.patch(url, json={"draining": False}, headers=OPERATOR)
    final = await get_server(client, server["server_id"])
    # Every round recorded its probe, except one that finished after a newer one of the same instant
    # (an older result never overwrites a newer one).
    assert 5 <= final["consecutive_failures"] <= 10 and final["health_state"] == "unhealthy"
