"""Lease sets are trusted only once rebuilt from MongoDB; orphan leases go; ready sessions time out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from rdp_controller.storage.mongo import new_id
from rdp_controller.storage.redis import Lease, Reservation
from tests.support.app import SERVICE, register_server, running_app, test_settings

pytestmark = pytest.mark.integration

FAST = {
    "RDP_CONTROLLER_REAPER_INTERVAL": 0.2,
    "RDP_CONTROLLER_RECONCILE_INTERVAL": 0.5,
    "BACKEND_TIMEOUT_SECONDS": 0.5,
    "RDP_CONTROLLER_PROBE_INTERVAL": 3600,
}


async def until(predicate: Callable[[], Awaitable[bool]], within: float, step: float = 0.05) -> float:
    started = time.monotonic()
    while not await predicate():
        assert time.monotonic() - started < within, f"not within {within} s"
        await asyncio.sleep(step)
    return time.monotonic() - started


async def test_a_ready_session_nobody_connects_is_terminated_with_ready_timeout(
    mongo_url: str, redis_url: str
) -> None:
    settings = test_settings(mongo_url, redis_url, RDP_CONTROLLER_READY_TIMEOUT=1, **FAST)
    async with running_app(settings) as (app, client):
        server = await register_server(client, capacity=2)
        body = {"user_id": "r1", "new_session": True}
        waiting = (await client.post("/api/v1/sessions", json=body, headers=SERVICE)).json()
        connected = (await client.post("/api/v1/sessions", json=body, headers=SERVICE)).json()
        assert (
            await client.post(f"/api/v1/sessions/{connected['session_id']}/connect", headers=SERVICE)
        ).status_code == 200

        async def ended() -> bool:
            got = await client.get(f"/api/v1/sessions/{waiting['session_id']}", headers=SERVICE)
            return bool(got.json()["status"] == "terminated")

        await until(ended, within=10)
        document = (await client.get(f"/api/v1/sessions/{waiting['session_id']}", headers=SERVICE)).json()
        assert document["termination_reason"] == "ready_timeout"
        events = (
            await client.get(f"/api/v1/sessions/{waiting['session_id']}/events", headers=SERVICE)
        ).json()
        assert events["items"][-1]["reason"] == "ready_timeout"
        # The connected one is active and stays; the ended one's slot is free.
        active = (await client.get(f"/api/v1/sessions/{connected['session_id']}", headers=SERVICE)).json()
        assert active["status"] == "active"
        members = await app.state.runtime.coordination.lease_members(server["server_id"])
        assert members == {connected["session_id"]}


async def test_a_lease_without_a_session_goes_one_period_after_the_grace(
    mongo_url: str, redis_url: str
) -> None:
    settings = test_settings(mongo_url, redis_url, RDP_CONTROLLER_LEASE_TTL=300, **FAST)
    async with running_app(settings) as (app, client):
        coordination = app.state.runtime.coordination
        server = await register_server(client, capacity=2)
        await until(coordination.trusted, within=5)
        live = (await client.post("/api/v1/sessions", json={"user_id": "o1"}, headers=SERVICE)).json()
        # A replica reserved this slot and died before its insert: no session will ever exist.
        ghost = Lease(server["server_id"], "crashed", new_id())
        assert await coordination.reserve(ghost, capacity=2, user_limit=3) is Reservation.RESERVED

        async def ghost_gone() -> bool:
            # One pass drops it from the host's set and then from the user's: wait for both.
            on_host = ghost.session_id in await coordination.lease_members(server["server_id"])
            return not on_host and await coordination.user_count("crashed") == 0

        # Grace 2 x 0.5 s, then one 0.5 s period (and a pass's own time): far below the 300 s TTL.
        took = await until(ghost_gone, within=4)
        assert took >= 1.0, took
        assert await coordination.user_count("crashed") == 0
        assert await coordination.lease_members(server["server_id"]) == {live["session_id"]}


async def test_a_lapsed_marker_refuses_creates_until_the_next_rebuild(mongo_url: str, redis_url: str) -> None:
    settings = test_settings(mongo_url, redis_url, **{**FAST, "RDP_CONTROLLER_RECONCILE_INTERVAL": 2.0})
    async with running_app(settings) as (app, client):
        runtime = app.state.runtime
        await register_server(client, capacity=2)
        await until(runtime.coordination.trusted, within=5)
        # What MongoDB away longer than the leases live leaves: no marker, leases still in Redis.
        await runtime.redis.delete(runtime.coordination.key("leases", "trusted"))
        refused = await client.post("/api/v1/sessions", json={"user_id": "m1"}, headers=SERVICE)
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "LEASES_REBUILDING"
        # The leases were not lost (same epoch): the next pass marks them again without waiting.
        took = await until(runtime.coordination.trusted, within=4)
        assert took < 2.0 + 0.5, took
        created = await client.post("/api/v1/sessions", json={"user_id": "m1"}, headers=SERVICE)
        assert created.status_code == 201, created.text
