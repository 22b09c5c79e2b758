"""Capacity holds across two replicas sharing MongoDB and Redis; a crashed creator's lease expires."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import httpx
import pytest

from rdp_controller.storage.mongo import new_id
from rdp_controller.storage.redis import Lease, Reservation
from tests.support.app import auth, running_app
from tests.support.app import test_settings as make_settings
from tests.support.xrdp_host import free_loopback_port

pytestmark = pytest.mark.integration

OPERATOR = auth("op", "operator")
SERVICE = auth("svc", "service")
CAPACITY = 5
CREATES = 100


async def register(client: httpx.AsyncClient, capacity: int) -> str:
    body = {"name": "shared", "address": "127.0.0.1", "port": free_loopback_port(), "capacity": capacity}
    response = await client.post("/api/v1/servers", json=body, headers=OPERATOR)
    assert response.status_code == 201, response.text
    server_id: str = response.json()["server_id"]
    return server_id


async def create(client: httpx.AsyncClient, user: str) -> httpx.Response:
    return await client.post("/api/v1/sessions", json={"user_id": user, "new_session": True}, headers=SERVICE)


async def test_two_replicas_never_place_more_than_the_capacity(mongo_url: str, redis_url: str) -> None:
    # One settings object for both replicas: same database, same Redis prefix.
    settings = make_settings(
        mongo_url, redis_url, RDP_CONTROLLER_PROBE_INTERVAL=3600, RDP_CONTROLLER_RATE_LIMIT_PER_MINUTE=0
    )
    async with running_app(settings) as (app_a, client_a), running_app(settings) as (app_b, client_b):
        assert app_a.state.runtime is not app_b.state.runtime
        server_id = await register(client_a, CAPACITY)
        assert (await client_b.get(f"/api/v1/servers/{server_id}", headers=OPERATOR)).status_code == 200

        responses = await asyncio.gather(
            *(create(client_a if i % 2 else client_b, f"user-{i}") for i in range(CREATES))
        )
        statuses = Counter(r.status_code for r in responses)
        assert statuses == {201: CAPACITY, 503: CREATES - CAPACITY}, statuses
        assert {r.json()["error"]["code"] for r in responses if r.status_code == 503} == {"NO_CAPACITY"}
        created = [r.json() for r in responses if r.status_code == 201]
        assert {s["server_id"] for s in created} == {server_id}

        for client in (client_a, client_b):
            server = (await client.get(f"/api/v1/servers/{server_id}", headers=OPERATOR)).json()
            assert server["live_sessions"] == CAPACITY
        assert await app_a.state.runtime.coordination.live_count(server_id) == CAPACITY
        listed = await client_b.get("/api/v1/sessions", params={"server_id": server_id}, headers=SERVICE)
        assert len(listed.json()["items"]) == CAPACITY

        ended = await asyncio.gather(
            *(
                (client_a if n % 2 else client_b).delete(
                    f"/api/v1/sessions/{s['session_id']}", headers=SERVICE
                )
                for n, s in enumerate(created)
            )
        )
        assert {r.status_code for r in ended} == {200}
        assert {r.json()["status"] for r in ended} == {"terminated"}
        assert await app_b.state.runtime.coordination.live_count(server_id) == 0
        server = (await client_a.get(f"/api/v1/servers/{server_id}", headers=OPERATOR)).json()
        assert server["live_sessions"] == 0
        # The slots are free again, through either replica.
        assert (await create(client_b, "after-1")).status_code == 201


async def test_the_lease_of_a_crashed_creator_expires(mongo_url: str, redis_url: str) -> None:
    settings = make_settings(
        mongo_url,
        redis_url,
        RDP_CONTROLLER_LEASE_TTL=5,
        RDP_CONTROLLER_RECONCILE_INTERVAL=1,  # live sessions' leases are renewed well within the TTL
        RDP_CONTROLLER_PROBE_INTERVAL=3600,
    )
    async with running_app(settings) as (app, client):
        server_id = await register(client, capacity=1)
        coordination = app.state.runtime.coordination
        for _ in range(100):  # the start-up rebuild marks the lease sets trusted
            if await coordination.trusted():
                break
            await asyncio.sleep(0.05)
        # A replica reserved the slot and died before writing the session document.
        ghost = Lease(server_id, "crashed-creator", new_id())
        reserved_at = time.monotonic()
        assert await coordination.reserve(ghost, capacity=1, user_limit=3) is Reservation.RESERVED

        full = await create(client, "u1")
        assert full.status_code == 503 and full.json()["error"]["code"] == "NO_CAPACITY"
        assert (await client.get(f"/api/v1/servers/{server_id}", headers=OPERATOR)).json()[
            "live_sessions"
        ] == 1

        response: httpx.Response | None = None
        while time.monotonic() - reserved_at < 15:
            await asyncio.sleep(0.25)
            response = await create(client, "u1")
            if response.status_code == 201:
                break
            assert response.json()["error"]["code"] == "NO_CAPACITY"
        assert response is not None and response.status_code == 201, (
            "the crashed creator's lease never expired"
        )
        freed_after = time.monotonic() - reserved_at
        assert 4.0 <= freed_after <= 10.0, freed_after
        session: dict[str, Any] = response.json()
        assert await coordination.lease_members(server_id) == {session["session_id"]}

        # The live session's lease outlives the TTL: the reconciler renews it from MongoDB.
        await asyncio.sleep(6)
        assert await coordination.live_count(server_id) == 1
        again = await create(client, "u2")
        assert again.status_code == 503
