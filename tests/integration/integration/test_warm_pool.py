"""Warm pool against the real MongoDB-compatible server and Redis, with a mock rdp-server-manager."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from common.backends import create_redis_client
from common.errors import NoCapacity
from rdp_controller.integration.integration_manager import IntegrationManager
from rdp_controller.integration.warm_pool import WarmPool
from rdp_controller.metrics import Metrics
from rdp_controller.server_registry import ServerRegistry
from rdp_controller.storage.mongo import MongoStore
from rdp_controller.storage.redis import RedisCoordination

from .conftest import layer_settings

pytestmark = pytest.mark.integration

SID = "5f0c8a9e-0a43-4c1e-9b0e-3f8f5b0d2a11"
CONFIG = {"display_resolution": "2560x1440", "color_depth": 32, "dedicated_server": True}


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class ServerManager:
    """Mock rdp-server-manager: creates servers with distinct ports, deletes them, fails on demand."""

    def __init__(self) -> None:
        self.servers: dict[str, dict[str, Any]] = {}
        self.created: list[dict[str, Any]] = []
        self.deleted: list[str] = []
        self.keys: list[str | None] = []
        self.status = 200
        self.delay = 0.0
        self.next_port = 40000

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.status != 200:
            return httpx.Response(self.status, json={"detail": "test"})
        self.keys.append(request.headers.get("idempotency-key"))
        if request.method == "POST" and request.url.path == "/servers":
            body = json.loads(request.content)
            self.created.append(body)
            server_id, port = str(uuid.uuid4()), self.next_port
            self.next_port += 1
            self.servers[server_id] = body
            return httpx.Response(
                201,
                json={
                    "server_id": server_id,
                    "status": "running",
                    "port": port,
                    "created_at": "2030-01-01T00:00:00Z",
                    "connection_info": {"host": "10.20.0.5", "port": port},
                },
            )
        if request.method == "DELETE":
            server_id = request.url.path.rsplit("/", 1)[1]
            if self.servers.pop(server_id, None) is None:
                return httpx.Response(404, json={"detail": "no such server"})
            self.deleted.append(server_id)
            return httpx.Response(200, json={"server_id": server_id, "status": "deleted"})
        return httpx.Response(404, json={"detail": "not here"})


Build = Callable[..., WarmPool]


@pytest.fixture
def server_manager() -> ServerManager:
    return ServerManager()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def make_pool(
    store: MongoStore, mongo_url: str, redis_url: str
) -> AsyncIterator[Callable[..., WarmPool]]:
    redis = create_redis_client(redis_url, timeout_seconds=2)
    coordination = RedisCoordination(redis, f"t{uuid.uuid4().hex[:10]}", lease_ttl_seconds=60)
    created: list[IntegrationManager] = []
    pools: list[WarmPool] = []
    connections: ServerRegistry | None = None

    def build(
        server_manager: ServerManager, clock: Clock | None = None, *, size: int = 2, **values: Any
    ) -> WarmPool:
        nonlocal connections
        settings = layer_settings(mongo_url, redis_url, RDP_CONTROLLER_WARM_POOL_SIZE=size, **values)
        if connections is None:
            connections = ServerRegistry(store, coordination, settings, Metrics())
        manager = IntegrationManager(settings, transport=httpx.MockTransport(server_manager))
        created.append(manager)
        pool = WarmPool(
            store.warm_pool,
            manager,
            connections,
            store.sessions,
            settings,
            Metrics(),
            clock=clock or Clock(),
        )
        pools.append(pool)
        return pool

    yield build
    for pool in pools:
        await pool.close()
    for manager in created:
        await manager.close_all()
    await redis.aclose()


async def test_refill_provisions_and_registers_the_stock(
    make_pool: Build, server_manager: ServerManager, store: MongoStore
) -> None:
    pool = make_pool(server_manager)
    assert await pool.refill_once() == 2
    assert await pool.refill_once() == 0
    assert len(server_manager.created) == 2
    assert all(body["user_id"] == "rdp-controller" for body in server_manager.created)
    assert len(set(server_manager.keys)) == 2 and all(
        k and k.startswith("warm-pool:") for k in server_manager.keys
    )
    servers = await store.servers.all()
    assert len(servers) == 2
    for server in servers:
        assert server["capacity"] == 1 and server["address"] == "10.20.0.5"
        assert server["labels"] == {"dedicated": "true", "warm_pool": "true"}
        assert server["state"] == "available" and server["source"] == "warm_pool"
    snapshot = await pool.snapshot()
    assert snapshot["size"] == 2 and snapshot["stock"] == 2 and snapshot["provisioning"] == 0
    assert pool.metrics.by_label("warm_pool_provisioned") == {"stock": 2}


async def test_replicas_refilling_together_provision_the_size_only(
    make_pool: Build, server_manager: ServerManager
) -> None:
    first, second = make_pool(server_manager, size=3), make_pool(server_manager, size=3)
    await first.ensure_indexes()
    server_manager.delay = 0.05
    made = await asyncio.gather(first.refill_once(), second.refill_once(), first.refill_once())
    assert sum(made) == 3 and len(server_manager.created) == 3


async def test_acquire_hands_out_stock_once_and_kicks_a_refill(
    make_pool: Build, server_manager: ServerManager, store: MongoStore
) -> None:
    first, second = make_pool(server_manager), make_pool(server_manager)
    await first.refill_once()
    stock = {server["server_id"] for server in await store.servers.all()}
    started = time.perf_counter()
    got = await asyncio.gather(
        first.acquire(session_id=SID, user_id="alice", session_config=CONFIG),
        second.acquire(session_id=str(uuid.uuid4()), user_id="bob", session_config=CONFIG),
    )
    assert time.perf_counter() - started < 1.0
    assert set(got) == stock  # two different servers, both from the stock
    assert (
        first.metrics.value("warm_pool_acquired", "stock")
        + second.metrics.value("warm_pool_acquired", "stock")
        == 2
    )
    for _ in range(200):  # the refill kicked by the claims
        if (await first.snapshot())["stock"] == 2:
            break
        await asyncio.sleep(0.02)
    snapshot = await first.snapshot()
    assert snapshot["stock"] == 2 and snapshot["claimed"] == 2
    entry = await store.database["warm_pool"].find_one({"server_id": got[0]})
    assert entry is not None and entry["state"] == "claimed" and "slot" not in entry


async def test_empty_pool_provisions_on_demand(
    make_pool: Build, server_manager: ServerManager, store: MongoStore
) -> None:
    pool = make_pool(server_manager, size=0)
    server_id = await pool.acquire(session_id=SID, user_id="alice", session_config=CONFIG)
    assert server_manager.created == [
        {
            "user_id": "alice",
            "session_id": SID,
            "display_config": {"resolution": "2560x1440", "color_depth": 32},
        }
    ]
    server = await store.servers.get(server_id)
    assert server is not None and server["labels"]["dedicated"] == "true"
    entry = await store.database["warm_pool"].find_one({"server_id": server_id})
    assert entry is not None and entry["state"] == "claimed" and entry["on_demand"] is True
    assert pool.metrics.by_label("warm_pool_acquired") == {"on_demand": 1}


async def test_on_demand_failure_is_no_capacity(make_pool: Build, server_manager: ServerManager) -> None:
    pool = make_pool(server_manager, size=0)
    server_manager.status = 503
    with pytest.raises(NoCapacity) as caught:
        await pool.acquire(session_id=SID, user_id="alice", session_config=CONFIG)
    assert caught.value.code == "DEDICATED_NO_CAPACITY" and "503" in caught.value.message
    assert pool.metrics.value("warm_pool_on_demand_failures") == 1


async def test_on_demand_is_bounded_by_the_service_timeout(
    make_pool: Build, server_manager: ServerManager
) -> None:
    pool = make_pool(server_manager, size=0, SERVICE_TIMEOUT_SECONDS=0.3)
    server_manager.delay = 5.0  # the mock ignores httpx timeouts: only the pool's bound applies
    started = time.perf_counter()
    with pytest.raises(NoCapacity, match=r"longer than 0\.3s"):
        await pool.acquire(session_id=SID, user_id="alice", session_config=CONFIG)
    assert time.perf_counter() - started < 2.0


async def test_release_removes_from_the_pool_then_deletes(
    make_pool: Build, server_manager: ServerManager, store: MongoStore
) -> None:
    pool = make_pool(server_manager, size=1)
    await pool.refill_once()
    server_id = await pool.acquire(session_id=SID, user_id="alice", session_config=CONFIG)
    entry = await store.database["warm_pool"].find_one({"server_id": server_id})
    assert entry is not None
    assert await pool.release_for_session({"server_id": server_id, "session_id": SID}, "key") is None
    assert await store.servers.get(server_id) is None
    assert server_manager.deleted == [entry["manager_server_id"]]
    released = await store.database["warm_pool"].find_one({"entry_id": entry["entry_id"]})
    assert (
        released is not None
        and released["state"] == "released"
        and released["release_reason"] == "session_ended"
    )
    # Again (an outbox retry): nothing left to do.
    assert await pool.release_for_session({"server_id": server_id, "session_id": SID}, "key") is not None


async def test_idle_stock_is_recycled(
    make_pool: Build, server_manager: ServerManager, store: MongoStore, clock: Clock
) -> None:
    pool = make_pool(server_manager, clock, size=2, RDP_CONTROLLER_WARM_POOL_IDLE_SECONDS=600)
    await pool.refill_once()
    first = {server["server_id"] for server in await store.servers.all()}
    clock.advance(601)
    assert await pool.refill_once() == 2
    second = {server["server_id"] for server in await store.servers.all()}
    assert len(second) == 2 and not first & second
    assert len(server_manager.deleted) == 2
    assert pool.metrics.by_label("warm_pool_released") == {"idle": 2}


async def test_a_claim_without_a_session_is_released_after_the_grace(
    make_pool: Build, server_manager: ServerManager, store: MongoStore, clock: Clock
) -> None:
    pool = make_pool(server_manager, clock, size=1)
    await pool.refill_once()
    server_id = await pool.acquire(
        session_id=SID, user_id="alice", session_config=CONFIG
    )  # create then failed
    await pool.refill_once()
    assert await store.servers.get(server_id) is not None
    clock.advance(61)
    await pool.refill_once()
    assert await store.servers.get(server_id) is None
    assert pool.metrics.by_label("warm_pool_released") == {"orphaned": 1}


async def test_refill_failures_are_counted_and_free_their_slots(
    make_pool: Build, server_manager: ServerManager
) -> None:
    pool = make_pool(server_manager, size=2)
    server_manager.status = 503
    assert await pool.refill_once() == 0
    assert pool.metrics.value("warm_pool_refill_failures") == 2
    assert (await pool.snapshot())["failed"] == 2
    server_manager.status = 200
    assert await pool.refill_once() == 2
