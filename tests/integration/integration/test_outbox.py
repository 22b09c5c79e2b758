"""Outbox against the real MongoDB-compatible server: claims, retries, give-up, ordering, 404 notes."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from rdp_controller.integration.integration_manager import IntegrationManager
from rdp_controller.integration.outbox import Outbox
from rdp_controller.metrics import Metrics
from rdp_controller.storage.mongo import MongoStore

from .conftest import layer_settings

pytestmark = pytest.mark.integration

SID = "5f0c8a9e-0a43-4c1e-9b0e-3f8f5b0d2a11"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Peers:
    """Mock transport: per (host, path suffix) answers; records (host, path, idempotency key)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str | None]] = []
        self.status: dict[str, int] = {}
        self.delay = 0.0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append((request.url.host, request.url.path, request.headers.get("idempotency-key")))
        if self.delay:
            await asyncio.sleep(self.delay)
        status = self.status.get(request.url.host, 200)
        if status == 200 and request.url.path.endswith("/finalize"):
            return httpx.Response(200, json={"session_id": SID, "merkle_root": "ff" * 32, "finalized": True})
        return httpx.Response(status, json={"detail": "test"} if status >= 400 else {"ok": True})

    def to(self, host: str) -> list[tuple[str, str, str | None]]:
        return [call for call in self.calls if call[0] == host]


@pytest.fixture
def peers() -> Peers:
    return Peers()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def make_outbox(store: MongoStore, mongo_url: str, redis_url: str, peers: Peers, clock: Clock) -> Any:
    managers: list[IntegrationManager] = []

    async def no_sleep(_: float) -> None:
        return None

    def build(metrics: Metrics | None = None, **settings: Any) -> Outbox:
        manager = IntegrationManager(
            layer_settings(mongo_url, redis_url, **settings),
            transport=httpx.MockTransport(peers),
            sleep=no_sleep,
        )
        managers.append(manager)
        return Outbox(
            store.outbox,
            manager.deliverable_calls(),
            configured=manager.is_configured,
            metrics=metrics or Metrics(),
            base_delay=10.0,
            max_attempts=3,
            claim_seconds=60,
            clock=clock,
            rng=random.Random(1),
        )

    yield build
    for manager in managers:
        await manager.close_all()


Build = Callable[..., Outbox]


async def deliveries(store: MongoStore) -> dict[str, dict[str, Any]]:
    return {d["delivery_id"]: d async for d in store.outbox.collection.find({}, {"_id": False})}


async def test_delivers_with_the_delivery_id_as_idempotency_key(
    make_outbox: Build, peers: Peers, store: MongoStore
) -> None:
    metrics = Metrics()
    outbox = make_outbox(metrics)
    stored = await outbox.enqueue(
        "session_recorder",
        "start_recording",
        {"session_id": SID, "owner_address": "alice", "metadata": {}},
        delivery_id=f"{SID}:session_recorder:start_recording",
    )
    assert stored
    assert await outbox.dispatch_once() == 1
    assert peers.calls == [
        ("session-recorder.test", "/recordings/start", f"{SID}:session_recorder:start_recording")
    ]
    document = (await deliveries(store))[f"{SID}:session_recorder:start_recording"]
    assert (
        document["status"] == "delivered"
        and document["attempts"] == 1
        and document["delivered_at"] is not None
    )
    assert metrics.by_label("outbox_delivered") == {"session_recorder": 1}
    assert await outbox.dispatch_once() == 0  # nothing due: never sent twice


async def test_duplicate_enqueue_is_a_no_op(make_outbox: Build, store: MongoStore) -> None:
    outbox = make_outbox()
    payload = {"session_id": SID}
    assert await outbox.enqueue("session_processor", "finalize_session", payload, delivery_id="d1")
    assert not await outbox.enqueue("session_processor", "finalize_session", payload, delivery_id="d1")
    assert len(await deliveries(store)) == 1


async def test_a_peer_without_url_gets_no_delivery(make_outbox: Build, store: MongoStore) -> None:
    outbox = make_outbox(SESSION_PROCESSOR_URL="")
    assert not await outbox.enqueue(
        "session_processor", "finalize_session", {"session_id": SID}, delivery_id="d1"
    )
    assert await deliveries(store) == {}


async def test_unknown_operations_are_refused(make_outbox: Build) -> None:
    with pytest.raises(ValueError, match="unknown outbox operation"):
        await make_outbox().enqueue("session_processor", "explode", {}, delivery_id="d1")


async def test_failure_reschedules_with_backoff_then_gives_up(
    make_outbox: Build, peers: Peers, store: MongoStore, clock: Clock
) -> None:
    metrics = Metrics()
    outbox = make_outbox(metrics)
    peers.status["session-processor.test"] = 503
    await outbox.enqueue("session_processor", "finalize_session", {"session_id": SID}, delivery_id="d1")
    assert await outbox.dispatch_once() == 1
    document = (await deliveries(store))["d1"]
    assert document["status"] == "pending" and document["attempts"] == 1
    assert "HTTP 503" in document["last_error"]
    wait = (document["next_attempt_at"] - clock.now).total_seconds()
    assert 5.0 <= wait <= 10.0  # first delay: base 10 s, equal jitter
    assert await outbox.dispatch_once() == 0  # not due yet
    clock.advance(10)
    assert await outbox.dispatch_once() == 1
    document = (await deliveries(store))["d1"]
    wait = (document["next_attempt_at"] - clock.now).total_seconds()
    assert document["attempts"] == 2 and 10.0 <= wait <= 20.0  # doubled
    clock.advance(20)
    assert await outbox.dispatch_once() == 1
    document = (await deliveries(store))["d1"]
    assert document["status"] == "failed" and document["attempts"] == 3
    assert document["last_error"].startswith("gave up after 3 attempts")
    assert metrics.by_label("outbox_failed") == {"session_processor": 1}
    assert metrics.by_label("outbox_retried") == {"session_processor": 2}
    assert (await outbox.counts())["failed"] == 1


async def test_a_4xx_fails_at_once(make_outbox: Build, peers: Peers, store: MongoStore) -> None:
    outbox = make_outbox()
    peers.status["session-recorder.test"] = 422
    await outbox.enqueue(
        "session_recorder", "start_recording", {"session_id": SID, "owner_address": "a"}, delivery_id="d1"
    )
    await outbox.dispatch_once()
    document = (await deliveries(store))["d1"]
    assert document["status"] == "failed" and "422" in document["last_error"] and document["attempts"] == 1


async def test_finalize_404_is_delivered_with_a_note(
    make_outbox: Build, peers: Peers, store: MongoStore
) -> None:
    outbox = make_outbox()
    peers.status["session-processor.test"] = 404
    await outbox.enqueue("session_processor", "finalize_session", {"session_id": SID}, delivery_id="d1")
    await outbox.dispatch_once()
    document = (await deliveries(store))["d1"]
    assert document["status"] == "delivered" and "404" in document["note"]
    assert len(peers.to("session-processor.test")) == 1


async def test_finalize_records_the_merkle_root(make_outbox: Build, store: MongoStore) -> None:
    outbox = make_outbox()
    await outbox.enqueue("session_processor", "finalize_session", {"session_id": SID}, delivery_id="d1")
    await outbox.dispatch_once()
    assert (await deliveries(store))["d1"]["note"] == "merkle_root=" + "ff" * 32


async def test_two_replicas_never_send_one_delivery_twice(make_outbox: Build, peers: Peers) -> None:
    first, second = make_outbox(), make_outbox()
    peers.delay = 0.05
    for n in range(20):
        await first.enqueue(
            "session_processor", "finalize_session", {"session_id": f"s{n}"}, delivery_id=f"d{n}"
        )
    sent = await asyncio.gather(first.dispatch_once(), second.dispatch_once())
    assert sum(sent) == 20
    keys = [call[2] for call in peers.calls]
    assert sorted(keys) == sorted(f"d{n}" for n in range(20))


async def test_a_crashed_claimers_delivery_becomes_due_again(
    make_outbox: Build, peers: Peers, store: MongoStore, clock: Clock
) -> None:
    outbox = make_outbox()
    await outbox.enqueue("session_processor", "finalize_session", {"session_id": SID}, delivery_id="d1")
    claimed = await outbox._claim("crashed-replica", None)  # claimed, then the replica died
    assert claimed is not None and claimed["status"] == "in_flight"
    assert await outbox.dispatch_once() == 0
    clock.advance(61)
    assert await outbox.dispatch_once() == 1
    document = (await deliveries(store))["d1"]
    assert document["status"] == "delivered" and document["attempts"] == 2
    assert [call[2] for call in peers.calls] == ["d1"]


async def test_a_session_s_calls_to_one_peer_keep_their_order(
    make_outbox: Build, peers: Peers, store: MongoStore, clock: Clock
) -> None:
    outbox = make_outbox()
    peers.status["session-recorder.test"] = 503
    order_key = f"{SID}:session_recorder"
    start = {"session_id": SID, "owner_address": "alice"}
    await outbox.enqueue(
        "session_recorder", "start_recording", start, delivery_id="start", order_key=order_key
    )
    await outbox.dispatch_once()  # start fails, rescheduled
    await outbox.enqueue(
        "session_recorder", "stop_recording", {"session_id": SID}, delivery_id="stop", order_key=order_key
    )
    peers.status.clear()  # the recorder is back, but start is not due yet
    await outbox.dispatch_once()
    documents = await deliveries(store)
    assert documents["stop"]["status"] == "pending" and documents["stop"]["attempts"] == 0
    assert [call[1] for call in peers.calls] == ["/recordings/start"]
    clock.advance(30)
    await outbox.dispatch_once()
    documents = await deliveries(store)
    assert documents["start"]["status"] == "delivered" and documents["stop"]["status"] == "delivered"
    assert [call[1] for call in peers.calls] == [
        "/recordings/start",
        "/recordings/start",
        f"/recordings/{SID}/stop",
    ]


async def test_an_open_circuit_defers_without_calling(
    make_outbox: Build, peers: Peers, store: MongoStore, clock: Clock
) -> None:
    outbox = make_outbox(SERVICE_CIRCUIT_FAILURE_THRESHOLD=1, SERVICE_CIRCUIT_RESET_SECONDS=600)
    peers.status["rdp-monitor.test"] = 503
    for n in range(2):
        await outbox.enqueue("rdp_monitor", "stop_monitoring", {"session_id": f"s{n}"}, delivery_id=f"d{n}")
    await outbox.dispatch_once()
    documents = await deliveries(store)
    assert len(peers.calls) == 1  # the second was refused by the open circuit
    refused = next(d for d in documents.values() if "circuit open" in (d["last_error"] or ""))
    assert (refused["next_attempt_at"] - clock.now).total_seconds() >= 590


async def test_kick_dispatches_in_the_background(make_outbox: Build, peers: Peers, store: MongoStore) -> None:
    outbox = make_outbox()
    await outbox.enqueue("session_processor", "finalize_session", {"session_id": SID}, delivery_id="d1")
    outbox.kick("session_processor")
    outbox.kick("session_processor")  # coalesced with the running one
    for _ in range(200):
        if (await deliveries(store))["d1"]["status"] == "delivered":
            break
        await asyncio.sleep(0.01)
    assert (await deliveries(store))["d1"]["status"] == "delivered"
    assert len(peers.calls) == 1
    await outbox.close()
