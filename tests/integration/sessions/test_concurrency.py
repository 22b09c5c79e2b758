"""Limits hold under concurrent creates from two app instances sharing the backends."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from rdp_controller.config import RdpControllerSettings
from tests.support.app import SERVICE, register_server, running_app, test_settings

CREATES = 200
CAPACITY = 5


@pytest.fixture
def settings(mongo_url: str, redis_url: str) -> RdpControllerSettings:
    """These tests are about limits, not slowness: 200 creates at once on a shared 2-core machine
    can keep an embedded backend busy past the default 2 s operation timeout (a documented 503
    BACKEND_UNAVAILABLE, tested in tests/faults), so the bound is generous here."""
    return test_settings(mongo_url, redis_url, BACKEND_TIMEOUT_SECONDS=15.0)


async def test_200_concurrent_creates_from_two_instances_fill_exactly_the_capacity(
    settings: RdpControllerSettings,
) -> None:
    async with running_app(settings) as (app, first), running_app(settings) as (_b, second):
        runtime = app.state.runtime
        server = await register_server(first, capacity=CAPACITY)

        async def create(index: int) -> tuple[int, str, str]:
            client = first if index % 2 else second
            response = await client.post(
                "/api/v1/sessions", json={"user_id": f"user{index}"}, headers=SERVICE
            )
            body = response.json()
            return response.status_code, body.get("session_id", ""), body.get("error", {}).get("code", "")

        results = await asyncio.gather(*(create(i) for i in range(CREATES)))
        statuses = Counter(code for code, _sid, _err in results)
        assert statuses == {201: CAPACITY, 503: CREATES - CAPACITY}, statuses
        assert {err for code, _sid, err in results if code == 503} == {"NO_CAPACITY"}
        created = [sid for code, sid, _err in results if code == 201]

        assert await runtime.coordination.live_count(server["server_id"]) == CAPACITY
        assert (
            await runtime.store.sessions.collection.count_documents({}) == CAPACITY
        )  # refusals wrote nothing

        ended = await asyncio.gather(
            *(
                (first if i % 2 else second).delete(f"/api/v1/sessions/{sid}", headers=SERVICE)
                for i, sid in enumerate(created)
            )
        )
        assert {r.status_code for r in ended} == {200}
        assert await runtime.coordination.live_count(server["server_id"]) == 0  # no lease leak
        again = await second.post("/api/v1/sessions", json={"user_id": "after"}, headers=SERVICE)
        assert again.status_code == 201


async def test_per_user_limit_holds_under_concurrency(settings: RdpControllerSettings) -> None:
    async with running_app(settings) as (_a, first), running_app(settings) as (_b, second):
        await register_server(first, capacity=100)
        responses = await asyncio.gather(
            *(
                (first if i % 2 else second).post(
                    "/api/v1/sessions", json={"user_id": "greedy", "new_session": True}, headers=SERVICE
                )
                for i in range(40)
            )
        )
        codes = Counter(r.status_code for r in responses)
        assert codes == {
            201: settings.RDP_CONTROLLER_MAX_SESSIONS_PER_USER,
            409: 40 - settings.RDP_CONTROLLER_MAX_SESSIONS_PER_USER,
        }


async def test_racing_moves_on_one_session_cannot_both_win(settings: RdpControllerSettings) -> None:
    async with running_app(settings) as (_a, first), running_app(settings) as (_b, second):
        await register_server(first)
        sid = (await first.post("/api/v1/sessions", json={"user_id": "racer"}, headers=SERVICE)).json()[
            "session_id"
        ]
        await first.post(f"/api/v1/sessions/{sid}/connect", headers=SERVICE)
        # Suspend from one instance while the other terminates: one order wins, the state stays legal.
        results = await asyncio.gather(
            first.post(f"/api/v1/sessions/{sid}/disconnect", headers=SERVICE),
            second.delete(f"/api/v1/sessions/{sid}", headers=SERVICE),
        )
        final = (await first.get(f"/api/v1/sessions/{sid}", headers=SERVICE)).json()
        assert final["status"] == "terminated"
        assert results[1].status_code == 200
        assert results[0].status_code in (200, 409)
        events = (await first.get(f"/api/v1/sessions/{sid}/events", headers=SERVICE)).json()["items"]
        assert [e["to_status"] for e in events].count("terminated") == 1
        assert final["version"] == len(events)  # version 1 at creation (its event), one more per move
