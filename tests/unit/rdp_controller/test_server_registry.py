"""server_registry.py: the placement order of ServerRegistry.place, on in-memory stand-ins for MongoDB
and Redis, and the health state of a server document (health_state_of)."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any, cast

import pytest

from common.errors import Conflict, NoCapacity
from rdp_controller.config import RdpControllerSettings
from rdp_controller.metrics import Metrics
from rdp_controller.models import ServerState
from rdp_controller.server_registry import ServerRegistry, health_state_of
from rdp_controller.storage.redis import Lease, Reservation

SETTINGS = RdpControllerSettings(
    LUCID_ENV="test",
    MONGODB_URL="mongodb://db:1",
    REDIS_URL="redis://r:1",
    RDP_CONTROLLER_MAX_SESSIONS_PER_USER=3,
    RDP_CONTROLLER_POOL_VIEW_TTL=0,  # the order of one read; the cached view: tests/integration/pool
)


class FakeServers:
    def __init__(self, servers: list[dict[str, Any]]):
        self.servers = servers
        self.change_listeners: list[Any] = []

    async def all(self) -> list[dict[str, Any]]:
        return sorted(self.servers, key=lambda s: s["name"])

    async def get(self, server_id: str) -> dict[str, Any] | None:
        return next((s for s in self.servers if s["server_id"] == server_id), None)


class FakeStore:
    def __init__(self, servers: list[dict[str, Any]]):
        self.servers = FakeServers(servers)


class FakeCoordination:
    """Slot sets per server and per user, with the reservation rules of the Lua script."""

    def __init__(self, load: dict[str, int] | None = None, *, hidden: dict[str, int] | None = None):
        self.slots: dict[str, set[str]] = {
            k: {f"pre-{k}-{i}" for i in range(n)} for k, n in (load or {}).items()
        }
        # Leases the snapshot of live_counts does not see (another replica reserving meanwhile).
        self.hidden = hidden or {}
        self.users: Counter[str] = Counter()
        self.attempts: list[str] = []

    async def live_counts(self, server_ids: list[str]) -> dict[str, int]:
        return {server_id: len(self.slots.get(server_id, set())) for server_id in server_ids}

    async def reserve(self, lease: Lease, *, capacity: int, user_limit: int) -> Reservation:
        self.attempts.append(lease.server_id)
        if self.users[lease.user_id] >= user_limit:
            return Reservation.USER_LIMIT
        taken = self.slots.setdefault(lease.server_id, set())
        if len(taken) + self.hidden.get(lease.server_id, 0) >= capacity:
            return Reservation.SERVER_FULL
        taken.add(lease.session_id)
        self.users[lease.user_id] += 1
        return Reservation.RESERVED


def srv(
    name: str, *, capacity: int = 10, weight: float = 1.0, state: str = "available", **labels: str
) -> dict[str, Any]:
    return {
        "server_id": str(uuid.uuid5(uuid.NAMESPACE_DNS, name)),
        "name": name,
        "address": f"{name}.test",
        "port": 3389,
        "capacity": capacity,
        "weight": weight,
        "labels": labels,
        "state": state,
    }


def manager(servers: list[dict[str, Any]], coordination: FakeCoordination) -> ServerRegistry:
    return ServerRegistry(cast(Any, FakeStore(servers)), cast(Any, coordination), SETTINGS, Metrics())


def load(**by_name: int) -> dict[str, int]:
    return {str(uuid.uuid5(uuid.NAMESPACE_DNS, name)): n for name, n in by_name.items()}


async def place(
    cm: ServerRegistry,
    *,
    user: str = "u1",
    labels: dict[str, str] | None = None,
    pinned: str | None = None,
) -> str:
    server = await cm.place(
        session_id=str(uuid.uuid4()), user_id=user, pinned_server_id=pinned, labels=labels or {}
    )
    return str(server["name"])


async def test_the_least_loaded_relative_to_capacity_wins() -> None:
    servers = [srv("a", capacity=10), srv("b", capacity=4), srv("c", capacity=100)]
    # a: 5/10 = 0.5, b: 1/4 = 0.25, c: 40/100 = 0.4
    assert await place(manager(servers, FakeCoordination(load(a=5, b=1, c=40)))) == "b"


async def test_weight_scales_the_capacity() -> None:
    servers = [srv("a", capacity=10, weight=1.0), srv("b", capacity=10, weight=3.0)]
    # a: 3/(10*1) = 0.3, b: 6/(10*3) = 0.2 -> b although it has more sessions
    assert await place(manager(servers, FakeCoordination(load(a=3, b=6)))) == "b"
    # a: 1/10 = 0.1 beats b: 6/30 = 0.2
    assert await place(manager(servers, FakeCoordination(load(a=1, b=6)))) == "a"


async def test_only_available_servers_take_sessions() -> None:
    servers = [
        srv("degraded", state="degraded"),
        srv("unhealthy", state="unhealthy"),
        srv("draining", state="draining"),
        srv("disabled", state="disabled"),
        srv("z-ok", capacity=10),
    ]
    coordination = FakeCoordination(load(**{"z-ok": 9}))
    assert await place(manager(servers, coordination)) == "z-ok"
    assert set(coordination.attempts) == {srv("z-ok")["server_id"]}


async def test_labels_must_all_match() -> None:
    servers = [srv("a", gpu="yes"), srv("b", gpu="yes", region="eu"), srv("c", region="eu")]
    coordination = FakeCoordination(load(a=0, b=5, c=0))
    assert await place(manager(servers, coordination), labels={"gpu": "yes", "region": "eu"}) == "b"
    with pytest.raises(NoCapacity) as caught:
        await place(manager(servers, coordination), labels={"gpu": "no"})
    assert caught.value.details["servers_considered"] == 0
    hint = caught.value.details["hint"]  # the answer says how to add a host
    assert "POST /api/v1/servers" in hint and "RDP_CONTROLLER_SERVERS" in hint
    assert hint in caught.value.message


async def test_full_servers_are_skipped_and_a_lost_race_moves_on() -> None:
    servers = [srv("a", capacity=2), srv("b", capacity=10), srv("c", capacity=10)]
    # a looks empty but another replica filled it meanwhile; b is full; c has room.
    coordination = FakeCoordination(load(a=0, b=10, c=5), hidden=load(a=2))
    assert await place(manager(servers, coordination)) == "c"
    assert coordination.attempts == [srv("a")["server_id"], srv("c")["server_id"]]


async def test_no_free_slot_anywhere_is_no_capacity() -> None:
    servers = [srv("a", capacity=1), srv("b", capacity=1)]
    with pytest.raises(NoCapacity) as caught:
        await place(manager(servers, FakeCoordination(load(a=1, b=1))))
    assert caught.value.code == "NO_CAPACITY" and caught.value.status_code == 503


async def test_ties_are_broken_at_random() -> None:
    servers = [srv("a"), srv("b")]
    chosen = Counter()
    for _ in range(60):
        chosen[await place(manager(servers, FakeCoordination()))] += 1
    assert chosen["a"] > 5 and chosen["b"] > 5


async def test_filling_up_spreads_by_relative_load() -> None:
    servers = [srv("a", capacity=2), srv("b", capacity=6)]
    coordination = FakeCoordination()
    cm = manager(servers, coordination)
    placed = Counter([await place(cm, user=f"user{i}") for i in range(8)])
    assert placed == {"a": 2, "b": 6}
    with pytest.raises(NoCapacity):
        await place(cm, user="user9")


async def test_pinned_server_must_be_available_and_not_full() -> None:
    servers = [srv("a", state="unhealthy"), srv("b", capacity=1)]
    cm = manager(servers, FakeCoordination(load(b=1)))
    with pytest.raises(Conflict) as caught:
        await place(cm, pinned=srv("a")["server_id"])
    assert caught.value.code == "SERVER_NOT_AVAILABLE" and caught.value.details["state"] == "unhealthy"
    with pytest.raises(Conflict) as caught:
        await place(cm, pinned=srv("b")["server_id"])
    assert caught.value.code == "SERVER_FULL"


async def test_the_per_user_limit_is_a_conflict_not_no_capacity() -> None:
    cm = manager([srv("a", capacity=100)], FakeCoordination())
    for _ in range(3):
        await place(cm, user="same")
    with pytest.raises(Conflict) as caught:
        await place(cm, user="same")
    assert caught.value.code == "USER_SESSION_LIMIT"


def test_health_state_of_older_documents_falls_back_to_their_state() -> None:
    assert health_state_of({"state": "degraded"}) is ServerState.DEGRADED
    assert health_state_of({"state": "draining"}) is ServerState.AVAILABLE
    assert health_state_of({"state": "draining", "health_state": "unhealthy"}) is ServerState.UNHEALTHY
