"""Placement's cached pool view, over two app instances sharing MongoDB and Redis.

Replica B places from its cached view of the servers; replica A drains, disables, marks unhealthy
(as the health monitor writes it) and removes servers. Once A has answered, B never places on the
server that changed, although B's view may live for minutes (the TTL here): the Redis pool version
token invalidates it. And B does not read the server documents again while nothing changed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from rdp_controller.config import RdpControllerSettings
from tests.support.app import OPERATOR, SERVICE, register_server, running_app, test_settings

Change = Callable[[Any, httpx.AsyncClient, str], Awaitable[None]]


async def drain(_app: Any, client: httpx.AsyncClient, server_id: str) -> None:
    response = await client.patch(f"/api/v1/servers/{server_id}", json={"draining": True}, headers=OPERATOR)
    assert response.status_code == 200, response.text


async def disable(_app: Any, client: httpx.AsyncClient, server_id: str) -> None:
    response = await client.patch(f"/api/v1/servers/{server_id}", json={"disabled": True}, headers=OPERATOR)
    assert response.status_code == 200, response.text


async def make_unhealthy(app: Any, _client: httpx.AsyncClient, server_id: str) -> None:
    """The health monitor's conditional write of a failed host (no RDP host needed to fail probes)."""
    repository = app.state.runtime.health_monitor.repository
    seen = await repository.get(server_id)
    assert await repository.apply(seen, {"state": "unhealthy", "health_state": "unhealthy"}) is not None


async def remove(_app: Any, client: httpx.AsyncClient, server_id: str) -> None:
    response = await client.delete(f"/api/v1/servers/{server_id}?force=true", headers=OPERATOR)
    assert response.status_code in (200, 204), response.text


def count_server_reads(app: Any) -> list[int]:
    """Wrap the replica's ``servers.all`` with a counter (what placement reads on a view miss)."""
    servers = app.state.runtime.store.servers
    reads = [0]
    original = servers.all

    async def counted() -> list[dict[str, Any]]:
        reads[0] += 1
        return await original()

    servers.all = counted
    return reads


async def placed_on(client: httpx.AsyncClient, user: str) -> str:
    response = await client.post("/api/v1/sessions", json={"user_id": user}, headers=SERVICE)
    assert response.status_code == 201, response.text
    server_id: str = response.json()["server_id"]
    return server_id


async def test_a_change_on_one_replica_ends_the_pool_view_of_the_other(
    mongo_url: str, redis_url: str
) -> None:
    settings: RdpControllerSettings = test_settings(
        mongo_url, redis_url, RDP_CONTROLLER_POOL_VIEW_TTL=300.0, RDP_CONTROLLER_MAX_SESSIONS_PER_USER=1000
    )
    changes: list[Change] = [drain, disable, make_unhealthy, remove]
    async with running_app(settings) as (app_a, a), running_app(settings) as (app_b, b):
        servers = [
            (await register_server(a, name=f"host-{n}", address=f"10.9.0.{n + 1}", capacity=1000))[
                "server_id"
            ]
            for n in range(len(changes) + 1)
        ]
        reads = count_server_reads(app_b)
        seen = {await placed_on(b, f"warm-{n}") for n in range(20)}
        assert seen == set(servers)  # least loaded first: every server takes sessions
        assert reads[0] == 1  # one read of the pool for 20 creates: the view is reused

        for change, server_id in zip(changes, servers, strict=False):
            await change(app_a, a, server_id)  # on replica A; B's view was read before
            placed = {await placed_on(b, f"{change.__name__}-{n}") for n in range(12)}
            assert server_id not in placed, f"B placed on a server after {change.__name__}"
        assert {await placed_on(b, f"last-{n}") for n in range(3)} == {servers[-1]}
        assert reads[0] == 1 + len(changes)  # one read after each change, none in between
