"""The integration layer through the controller's HTTP API, with the fake peers served by uvicorn.

(a) a recording is started and stopped across a real session lifecycle;
(b) a peer that is down at termination gets its finalize call once it is back (outbox), once;
(c) the controller's API stays fast while a peer hangs;
(d) a dedicated session gets a pre-provisioned warm-pool server at once, and the pool refills.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI

from rdp_controller.config import RdpControllerSettings
from rdp_controller.integration import Integrations, build_integrations
from tests.support.app import SERVICE, TEST_SECRET, auth, register_server, running_app, test_settings
from tests.support.peers import MONITOR, PROCESSOR, RECORDER, SERVER_MANAGER, PeerServer

pytestmark = pytest.mark.integration

FAST: dict[str, Any] = {
    "RDP_CONTROLLER_OUTBOX_INTERVAL": 0.2,
    "SERVICE_TIMEOUT_SECONDS": 5.0,
    "SERVICE_RETRY_COUNT": 1,
    "SERVICE_RETRY_DELAY_SECONDS": 0,
    "SERVICE_CIRCUIT_RESET_SECONDS": 1.0,
    "RDP_CONTROLLER_HEALTH_INTERVAL": 0.2,  # /health reports the last round of peer checks
}


def integrations_of(app: FastAPI) -> Integrations | None:
    """The runtime's integration layer when the runtime wires one."""
    for value in vars(app.state.runtime).values():
        if isinstance(value, Integrations):
            return value
    return None


@asynccontextmanager
async def controller(
    settings: RdpControllerSettings,
) -> AsyncIterator[tuple[httpx.AsyncClient, Integrations]]:
    """The app with its integration layer: the runtime's own, or wired here the way the runtime does it."""
    built: Integrations | None = None
    try:
        async with running_app(settings) as (app, client):
            integrations = integrations_of(app)
            if integrations is None:
                runtime = app.state.runtime
                built = integrations = build_integrations(
                    settings, runtime.store, runtime.servers, runtime.background, runtime.mongo_ready,
                    runtime.metrics,
                )  # fmt: skip
                await integrations.ensure_indexes()
                runtime.effects.hooks = integrations.hooks
                runtime.creation.dedicated = integrations.warm_pool
                await integrations.start()
            yield client, integrations
    finally:
        if built is not None:
            await built.close()


async def eventually(check: Callable[[], Awaitable[bool] | bool], within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while True:
        outcome = check()
        if isinstance(outcome, Awaitable):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(0.05)


async def session_lifecycle(client: httpx.AsyncClient, user: str = "alice") -> tuple[str, dict[str, float]]:
    """Create, connect and terminate a session through the API; returns its id and each call's seconds."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    created = await client.post("/api/v1/sessions", json={"user_id": user}, headers=SERVICE)
    timings["create"] = time.perf_counter() - started
    assert created.status_code == 201, created.text
    session_id: str = created.json()["session_id"]
    headers = auth(user, "user")
    started = time.perf_counter()
    connected = await client.post(f"/api/v1/sessions/{session_id}/connect", headers=headers)
    timings["connect"] = time.perf_counter() - started
    assert connected.status_code == 200, connected.text
    started = time.perf_counter()
    ended = await client.delete(f"/api/v1/sessions/{session_id}", headers=headers)
    timings["terminate"] = time.perf_counter() - started
    assert ended.status_code == 200 and ended.json()["status"] == "terminated", ended.text
    return session_id, timings


@pytest.fixture
def peers() -> Any:
    server = PeerServer().start()
    yield server
    server.stop()


async def test_recording_follows_the_session_lifecycle(
    mongo_url: str, redis_url: str, peers: PeerServer
) -> None:
    settings = test_settings(
        mongo_url, redis_url, SESSION_RECORDER_URL=peers.url, RDP_MONITOR_URL=peers.url,
        SESSION_PROCESSOR_URL=peers.url, **FAST,
    )  # fmt: skip
    async with controller(settings) as (client, integrations):
        await register_server(client)
        session_id, _ = await session_lifecycle(client)
        state = peers.state
        await eventually(lambda: session_id in state.finalized)
        await eventually(lambda: state.recordings.get(session_id, {}).get("status") == "stopped")
        recorder = state.seen(RECORDER)
        assert [call.path for call in recorder] == ["/recordings/start", f"/recordings/{session_id}/stop"]
        start = recorder[0]
        assert start.body["session_id"] == session_id and start.body["owner_address"] == "alice"
        assert start.body["metadata"]["session_config"]["display_resolution"] == "1920x1080"
        assert start.idempotency_key == f"{session_id}:session_recorder:start_recording"
        assert recorder[1].idempotency_key == f"{session_id}:session_recorder:stop_recording"
        assert start.authorization is not None
        claims = jwt.decode(
            start.authorization.removeprefix("Bearer "), TEST_SECRET, algorithms=["HS256"], audience=RECORDER
        )
        assert claims["sub"] == "rdp-controller" and claims["roles"] == ["service"]
        await eventually(lambda: state.monitored.get(session_id, {}).get("status") == "stopped")
        assert [call.path for call in state.seen(MONITOR)] == [
            "/api/v1/monitoring/start",
            f"/api/v1/monitoring/sessions/{session_id}/stop",
        ]
        expected = {"session_recorder": 2, "rdp_monitor": 2, "session_processor": 1}
        await eventually(lambda: integrations.counters()["outbox_delivered"] == expected)
        assert "warm_pool" not in await integrations.metrics_snapshot()
        health = (await client.get("/health")).json()
        assert health["integrations"]["session_recorder"]["status"] == "healthy"
        assert health["integrations"]["rdp_server_manager"] == {"status": "not_configured"}


async def test_a_peer_down_at_termination_gets_finalize_once_it_is_back(
    mongo_url: str, redis_url: str, peers: PeerServer
) -> None:
    processor = PeerServer().start()
    settings = test_settings(
        mongo_url, redis_url, SESSION_RECORDER_URL=peers.url, SESSION_PROCESSOR_URL=processor.url, **FAST
    )
    try:
        async with controller(settings) as (client, integrations):
            await register_server(client)
            processor.stop()
            session_id, _ = await session_lifecycle(client)
            delivery_id = f"{session_id}:session_processor:finalize_session"
            outbox = integrations.outbox.deliveries.collection

            async def attempted() -> bool:
                document = await outbox.find_one({"delivery_id": delivery_id})
                return (
                    document is not None and document["attempts"] >= 1 and document["last_error"] is not None
                )

            await eventually(attempted)
            # Nothing but the background health checks (made while the processor was still up).
            assert [call for call in processor.state.seen() if call.peer != "health"] == []

            async def processor_troubled() -> bool:
                health = (await client.get("/health")).json()
                return bool(
                    health["integrations"]["session_processor"]["status"] in ("unhealthy", "circuit_open")
                )

            await eventually(processor_troubled)
            processor.start()  # back on the same port
            await eventually(lambda: session_id in processor.state.finalized, within=20)

            async def delivered() -> bool:
                document = await outbox.find_one({"delivery_id": delivery_id})
                return document is not None and document["status"] == "delivered"

            await eventually(delivered)
            await integrations.outbox.dispatch_once()
            await asyncio.sleep(0.5)  # a few more outbox rounds
            finalize = processor.state.seen(PROCESSOR, "/finalize")
            assert [call.idempotency_key for call in finalize] == [delivery_id]
            assert processor.state.finalized[session_id] == 1
            document = await outbox.find_one({"delivery_id": delivery_id})
            assert document is not None and document["note"] == "merkle_root=" + "ab" * 32
    finally:
        processor.stop()


async def test_the_api_stays_fast_while_a_peer_hangs(
    mongo_url: str, redis_url: str, peers: PeerServer
) -> None:
    hang = 8.0
    peers.state.hang(RECORDER, hang)
    peers.state.hang(PROCESSOR, hang)
    settings = test_settings(
        mongo_url, redis_url, SESSION_RECORDER_URL=peers.url, SESSION_PROCESSOR_URL=peers.url,
        **{**FAST, "SERVICE_TIMEOUT_SECONDS": 30.0},
    )  # fmt: skip
    async with controller(settings) as (client, _):
        await register_server(client)
        started = time.perf_counter()
        session_id, timings = await session_lifecycle(client)
        total = time.perf_counter() - started
        # Generous bounds, far below the peers' hang: the lifecycle never waits for a peer.
        assert total < hang / 4, timings
        assert all(seconds < 1.5 for seconds in timings.values()), timings
        await eventually(lambda: bool(peers.state.seen(RECORDER)))  # the recorder is being called meanwhile
        peers.state.heal()
        await eventually(lambda: session_id in peers.state.finalized)


async def test_dedicated_sessions_use_the_warm_pool(
    mongo_url: str, redis_url: str, peers: PeerServer
) -> None:
    settings = test_settings(
        mongo_url, redis_url, RDP_SERVER_MANAGER_URL=peers.url, RDP_CONTROLLER_WARM_POOL_SIZE=2, **FAST
    )
    state = peers.state
    async with controller(settings) as (client, integrations):
        pool = integrations.warm_pool
        assert pool is not None
        await eventually(lambda: len(state.servers) == 2)
        await eventually(lambda: _stock(pool))
        servers = (await client.get("/api/v1/servers", headers=auth("ops", "operator"))).json()
        stock = {s["server_id"] for s in (servers["items"] if isinstance(servers, dict) else servers)}
        assert len(stock) == 2
        state.create_delay = 3.0  # provisioning is slow from now on: the create must not wait for it
        started = time.perf_counter()
        created = await client.post(
            "/api/v1/sessions",
            json={"user_id": "alice", "session_config": {"dedicated_server": True}},
            headers=SERVICE,
        )
        elapsed = time.perf_counter() - started
        assert created.status_code == 201, created.text
        assert elapsed < 1.5
        session = created.json()
        assert session["server_id"] in stock
        # The refill started by the claim is under way (its POST is held for 3 s) and did not hold the create.
        await eventually(lambda: len(state.seen(SERVER_MANAGER, "/servers", "POST")) == 3)
        assert len(state.servers) == 2
        await eventually(lambda: _stock(pool))
        assert len(state.servers) == 3
        state.create_delay = 0.0
        # The session ends: its dedicated server leaves the pool and is deleted on the server manager.
        ended = await client.delete(
            f"/api/v1/sessions/{session['session_id']}", headers=auth("alice", "user")
        )
        assert ended.status_code == 200, ended.text
        await eventually(lambda: len(state.seen(SERVER_MANAGER, method="DELETE")) == 1)
        gone = await client.get(f"/api/v1/servers/{session['server_id']}", headers=auth("ops", "operator"))
        assert gone.status_code == 404
        assert len(state.servers) == 2  # the two in stock
        snapshot = await integrations.metrics_snapshot()
        assert snapshot["warm_pool"]["size"] == 2 and snapshot["warm_pool"]["stock"] == 2
        assert snapshot["integrations"]["circuits"]["rdp_server_manager"] == "closed"
        await eventually(lambda: integrations.counters()["warm_pool_released"] == {"session_ended": 1})
        counters = integrations.counters()
        assert counters["warm_pool_acquired"] == {"stock": 1}
        assert counters["warm_pool_provisioned"] == {"stock": 3}
        assert counters["warm_pool_refill_failures"] == 0


async def _stock(pool: Any) -> bool:
    snapshot = await pool.snapshot()
    return bool(snapshot["stock"] == 2)


async def test_a_dedicated_session_is_creating_while_its_server_is_provisioned(
    mongo_url: str, redis_url: str, peers: PeerServer
) -> None:
    """No warm server: 202 creating at once, ready once rdp-server-manager has the server up."""
    settings = test_settings(mongo_url, redis_url, RDP_SERVER_MANAGER_URL=peers.url, **FAST)
    peers.state.create_delay = 1.0
    async with controller(settings) as (client, _):
        started = time.perf_counter()
        created = await client.post(
            "/api/v1/sessions",
            json={"user_id": "alice", "session_config": {"dedicated_server": True}},
            headers=SERVICE,
        )
        assert created.status_code == 202, created.text
        assert time.perf_counter() - started < 1.0  # the create did not wait for the provisioning
        session = created.json()
        assert (session["status"], session["server_id"]) == ("creating", None)
        path = f"/api/v1/sessions/{session['session_id']}"

        async def ready() -> bool:
            return (await client.get(path, headers=SERVICE)).json()["status"] == "ready"

        await eventually(ready)
        current = (await client.get(path, headers=SERVICE)).json()
        assert current["server_id"] is not None and current["error_detail"] is None
        events = (await client.get(f"{path}/events", headers=SERVICE)).json()["items"]
        assert [(e["from_status"], e["to_status"], e["reason"]) for e in events] == [
            (None, "creating", "provisioning"),
            ("creating", "ready", "provisioned"),
        ]


async def test_a_failed_provisioning_makes_the_session_error_and_holds_nothing(
    mongo_url: str, redis_url: str, peers: PeerServer
) -> None:
    settings = test_settings(mongo_url, redis_url, RDP_SERVER_MANAGER_URL=peers.url, **FAST)
    peers.state.fail(SERVER_MANAGER)
    async with controller(settings) as (client, _):
        created = await client.post(
            "/api/v1/sessions",
            json={"user_id": "bob", "session_config": {"dedicated_server": True}},
            headers=SERVICE,
        )
        assert created.status_code == 202, created.text
        path = f"/api/v1/sessions/{created.json()['session_id']}"

        async def failed() -> bool:
            return (await client.get(path, headers=SERVICE)).json()["status"] == "error"

        await eventually(failed)
        current = (await client.get(path, headers=SERVICE)).json()
        assert current["error_detail"] and current["termination_reason"] == "error"
        events = (await client.get(f"{path}/events", headers=SERVICE)).json()["items"]
        assert [(e["from_status"], e["to_status"], e["reason"]) for e in events] == [
            (None, "creating", "provisioning"),
            ("creating", "error", "provisioning_failed"),
        ]
        # Nothing is held: the user's whole quota (3 sessions) is still free.
        peers.state.heal()
        await register_server(client, capacity=5)
        for _ in range(3):
            plain = await client.post(
                "/api/v1/sessions", json={"user_id": "bob", "new_session": True}, headers=SERVICE
            )
            assert plain.status_code == 201, plain.text
