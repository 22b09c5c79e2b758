"""Timers fire with the right reason; nothing is lost across a restart or a Redis flush."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from rdp_controller.config import RdpControllerSettings
from tests.support.app import SERVICE, register_server, running_app, test_settings

FAST = {"RDP_CONTROLLER_REAPER_INTERVAL": 0.2, "RDP_CONTROLLER_RECONCILE_INTERVAL": 0.5}


async def wait_for(client: httpx.AsyncClient, sid: str, status: str, within: float = 15) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        body: dict[str, Any] = (await client.get(f"/api/v1/sessions/{sid}", headers=SERVICE)).json()
        if body["status"] == status or loop.time() > deadline:
            return body
        await asyncio.sleep(0.1)


async def create(client: httpx.AsyncClient, user: str, **config: Any) -> str:
    response = await client.post(
        "/api/v1/sessions",
        json={"user_id": user, "new_session": True, "session_config": config},
        headers=SERVICE,
    )
    assert response.status_code == 201, response.text
    sid: str = response.json()["session_id"]
    return sid


async def test_idle_disconnect_and_max_duration_timers(mongo_url: str, redis_url: str) -> None:
    async with running_app(test_settings(mongo_url, redis_url, **FAST)) as (app, client):
        server = await register_server(client, capacity=10)
        idle = await create(client, "t1", idle_timeout=1)
        await client.post(f"/api/v1/sessions/{idle}/connect", headers=SERVICE)
        dropped = await create(client, "t2", disconnect_timeout=1)
        await client.post(f"/api/v1/sessions/{dropped}/connect", headers=SERVICE)
        await client.post(f"/api/v1/sessions/{dropped}/disconnect", headers=SERVICE)
        short = await create(client, "t3", session_timeout=2, idle_timeout=60)
        await client.post(f"/api/v1/sessions/{short}/connect", headers=SERVICE)
        kept = await create(client, "t4", idle_timeout=2)
        await client.post(f"/api/v1/sessions/{kept}/connect", headers=SERVICE)

        async def keep_alive() -> None:
            for _ in range(20):
                await client.post(f"/api/v1/sessions/{kept}/activity", headers=SERVICE)
                await asyncio.sleep(0.2)

        heartbeat = asyncio.create_task(keep_alive())
        reasons = {}
        for sid in (idle, dropped, short):
            body = await wait_for(client, sid, "terminated")
            reasons[sid] = body["termination_reason"]
        await heartbeat
        assert reasons == {idle: "idle_timeout", dropped: "disconnect_timeout", short: "max_duration"}
        assert (await client.get(f"/api/v1/sessions/{kept}", headers=SERVICE)).json()["status"] == "active"
        events = (await client.get(f"/api/v1/sessions/{idle}/events", headers=SERVICE)).json()["items"]
        assert events[-1]["actor"] == "reaper" and events[-1]["reason"] == "idle_timeout"
        assert await app.state.runtime.coordination.live_count(server["server_id"]) == 1
        metrics = (await client.get("/api/v1/metrics", headers=SERVICE)).json()
        assert metrics["counters"]["reaper_actions"]["idle_timeout"] == 1


async def test_session_and_its_timer_survive_an_app_restart(mongo_url: str, redis_url: str) -> None:
    settings = test_settings(mongo_url, redis_url, **FAST)
    async with running_app(settings) as (_app, client):
        await register_server(client)
        survivor = await create(client, "r1", idle_timeout=3)
        await client.post(f"/api/v1/sessions/{survivor}/connect", headers=SERVICE)
        before = (await client.get(f"/api/v1/sessions/{survivor}", headers=SERVICE)).json()
    async with running_app(settings) as (_app, client):
        after = (await client.get(f"/api/v1/sessions/{survivor}", headers=SERVICE)).json()
        assert after == before
        body = await wait_for(client, survivor, "terminated")
        assert body["termination_reason"] == "idle_timeout"  # the new instance enforced the old timer


async def test_redis_flushed_creates_are_refused_until_the_leases_are_rebuilt(
    settings: RdpControllerSettings, mongo_url: str, redis_url: str
) -> None:
    settings = test_settings(
        mongo_url, redis_url, RDP_CONTROLLER_RECONCILE_INTERVAL=0.5, BACKEND_TIMEOUT_SECONDS=0.5
    )
    async with running_app(settings) as (app, client):
        runtime = app.state.runtime
        server = await register_server(client, capacity=3)
        for index in range(3):
            await create(client, f"f{index}")
        prefix = settings.RDP_CONTROLLER_REDIS_PREFIX
        keys = [key async for key in runtime.redis.scan_iter(match=f"{prefix}:*")]
        await runtime.redis.delete(*keys)  # what FLUSHALL does to this service's keys
        assert await runtime.coordination.live_count(server["server_id"]) == 0
        # The empty lease sets are not trusted: a create is refused, never placed on a "free" slot.
        refused = await client.post("/api/v1/sessions", json={"user_id": "late"}, headers=SERVICE)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "LEASES_REBUILDING"
        # One period, the wait for creates reserved before the loss (2 x 0.5 s), and some slack.
        for _ in range(50):
            if await runtime.coordination.trusted():
                break
            await asyncio.sleep(0.1)
        assert await runtime.coordination.live_count(server["server_id"]) == 3
        full = await client.post("/api/v1/sessions", json={"user_id": "late"}, headers=SERVICE)
        assert full.status_code == 503 and full.json()["error"]["code"] == "NO_CAPACITY"


async def test_reconciler_drops_leases_of_final_sessions(settings: RdpControllerSettings) -> None:
    async with running_app(settings) as (app, client):
        runtime = app.state.runtime
        server = await register_server(client, capacity=2)
        sid = await create(client, "z1")
        # A terminate whose lease release was lost (Redis down at that moment): mark final in MongoDB only.
        await runtime.store.sessions.collection.update_one(
            {"session_id": sid}, {"$set": {"status": "terminated"}}
        )
        assert await runtime.coordination.live_count(server["server_id"]) == 1
        result = await runtime.maintenance.reconcile_once()
        assert result["dropped"] == 2  # its server slot and its user-quota entry
        assert await runtime.coordination.live_count(server["server_id"]) == 0
