"""The storage "floor" of bench_sessions.py: what one session create and one terminate do to MongoDB
and Redis, done directly, without the service.

``FLOOR_OPERATIONS`` lists them in order (``SessionCreation.create`` without an Idempotency-Key, then
``SessionController.terminate`` of a ready session), each with the line the benchmark prints for it;
``FloorTarget`` runs them as create+terminate pairs with ``pymongo.AsyncMongoClient`` and
``redis.asyncio`` (the real ``RedisCoordination`` for the Lua scripts and the stream), in a scratch
database with the service's indexes, and reads the servers' own operation counters.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import DESCENDING, ReturnDocument

from common.backends import create_mongo_client, create_redis_client
from rdp_controller.models import SessionConfig
from rdp_controller.storage.mongo import CONNECTIONS, EVENTS, SERVERS, SESSIONS, MongoStore
from rdp_controller.storage.redis import Lease, RedisCoordination, Reservation

NO_ID = {"_id": False}
LEASE_TTL_SECONDS = 90
SERVER_CAPACITY = 10_000  # of the one server both sides place sessions on


# The floor: what one create and one terminate do to MongoDB and Redis (SessionCreation.create
# without an Idempotency-Key, and SessionController.terminate of a ready session). One place, printed
# with the figures.
@dataclass
class Pair:
    """One session of the floor run: its ids and the documents its operations write."""

    worker: int
    session_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def user_id(self) -> str:
        return f"bench-{self.worker}"


@dataclass
class Floor:
    db: Any
    coordination: RedisCoordination
    server: dict[str, Any]
    config: dict[str, Any]


Operation = Callable[[Floor, Pair], Awaitable[None]]


def _session_document(floor: Floor, pair: Pair) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "session_id": pair.session_id,
        "user_id": pair.user_id,
        "server_id": floor.server["server_id"],
        "connection_id": str(uuid.uuid4()),
        "status": "ready",
        "session_config": floor.config,
        "created_at": now,
        "updated_at": now,
        "max_deadline": now + timedelta(seconds=floor.config["session_timeout"]),
        "termination_reason": None,
        "version": 1,
        "created_by": "bench",
        "idempotency_key": None,
        "request_fingerprint": hashlib.sha256(pair.session_id.encode()).hexdigest(),
        "idle_deadline": now + timedelta(seconds=floor.config["idle_timeout"]),
        "disconnect_deadline": None,
        "next_deadline": now + timedelta(seconds=floor.config["idle_timeout"]),
    }


def _event(
    floor: Floor, pair: Pair, from_status: str | None, to_status: str, reason: str | None
) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "session_id": pair.session_id,
        "user_id": pair.user_id,
        "server_id": floor.server["server_id"],
        "from_status": from_status,
        "to_status": to_status,
        "reason": reason,
        "actor": "bench",
        "at": datetime.now(UTC),
        "seq": time.monotonic_ns(),
    }


async def _append_and_publish(floor: Floor, event: dict[str, Any]) -> None:
    """A transition's event, appended once (upsert by id) and published, then the transition settled."""
    await floor.db[EVENTS].update_one({"event_id": event["event_id"]}, {"$setOnInsert": event}, upsert=True)
    await floor.coordination.publish_event({**event, "at": event["at"].isoformat()})
    await floor.db[SESSIONS].update_one(
        {"session_id": event["session_id"]},
        {"$pull": {"pending_transitions": {"event_id": event["event_id"]}}},
    )


async def op_suspended_for(floor: Floor, pair: Pair) -> None:
    query = {"user_id": pair.user_id, "status": "suspended"}
    await floor.db[SESSIONS].find(query, NO_ID).sort("suspended_at", DESCENDING).to_list(length=100)


async def op_live_counts(floor: Floor, pair: Pair) -> None:
    # Placement's cached pool view: its version token is read with the live counts, in one round trip;
    # the server documents are read again only after a server changed (none does here).
    await floor.coordination.pool_version_and_counts([floor.server["server_id"]])


async def op_reserve(floor: Floor, pair: Pair) -> None:
    lease = Lease(floor.server["server_id"], pair.user_id, pair.session_id)
    outcome = await floor.coordination.reserve(lease, capacity=SERVER_CAPACITY, user_limit=1000)
    if outcome is not Reservation.RESERVED:
        raise RuntimeError(f"floor reserve refused: {outcome!r}")


async def op_insert_session(floor: Floor, pair: Pair) -> None:
    await floor.db[SESSIONS].insert_one(_session_document(floor, pair))


async def op_created_event(floor: Floor, pair: Pair) -> None:
    await _append_and_publish(floor, _event(floor, pair, None, "ready", "slot_reserved"))


async def op_get(floor: Floor, pair: Pair) -> None:
    if await floor.db[SESSIONS].find_one({"session_id": pair.session_id}, NO_ID) is None:
        raise RuntimeError(f"floor session {pair.session_id} not found")


async def op_compare_and_set(floor: Floor, pair: Pair) -> None:
    now = datetime.now(UTC)
    updated = await floor.db[SESSIONS].find_one_and_update(
        {"session_id": pair.session_id, "status": "ready", "version": 1},
        {
            "$set": {
                "status": "terminated",
                "terminated_at": now,
                "termination_reason": "admin",
                "idle_deadline": None,
                "disconnect_deadline": None,
                "max_deadline": None,
                "next_deadline": None,
                "updated_at": now,
            },
            "$inc": {"version": 1},
        },
        projection=NO_ID,
        return_document=ReturnDocument.AFTER,
    )
    if updated is None:
        raise RuntimeError(f"floor compare-and-set of {pair.session_id} lost")


async def op_close_open(floor: Floor, pair: Pair) -> None:
    await floor.db[CONNECTIONS].update_many(
        {"session_id": pair.session_id, "closed_at": None}, {"$set": {"closed_at": datetime.now(UTC)}}
    )


async def op_release(floor: Floor, pair: Pair) -> None:
    await floor.coordination.release(Lease(floor.server["server_id"], pair.user_id, pair.session_id))


async def op_revoke_tokens(floor: Floor, pair: Pair) -> None:
    coordination = floor.coordination
    await coordination.client.smembers(f"{coordination.prefix}:conntoken:session:{pair.session_id}")


async def op_terminated_event(floor: Floor, pair: Pair) -> None:
    await _append_and_publish(floor, _event(floor, pair, "ready", "terminated", "admin"))


FLOOR_OPERATIONS: tuple[tuple[str, str, Operation], ...] = (
    ("create", "MongoDB rdp_sessions.find(user, suspended).sort (sessions.suspended_for)", op_suspended_for),
    (
        "create",
        "Redis pipeline GET pool version + ZCOUNT per candidate server, 1 here (pool view, live counts)",
        op_live_counts,
    ),
    ("create", "Redis EVALSHA reserve script (RedisCoordination.reserve)", op_reserve),
    ("create", "MongoDB rdp_sessions.insert_one (sessions.insert)", op_insert_session),
    (
        "create",
        "MongoDB rdp_session_events upsert + Redis XADD + rdp_sessions $pull (ready)",
        op_created_event,
    ),
    ("terminate", "MongoDB rdp_sessions.find_one (get)", op_get),
    ("terminate", "MongoDB rdp_sessions.find_one_and_update (compare-and-set)", op_compare_and_set),
    ("terminate", "MongoDB rdp_connections.update_many (connections.close_open)", op_close_open),
    ("terminate", "Redis EVALSHA release script (RedisCoordination.release)", op_release),
    ("terminate", "Redis SMEMBERS of the session's tokens (revoke; none to delete)", op_revoke_tokens),
    (
        "terminate",
        "MongoDB rdp_session_events upsert + Redis XADD + rdp_sessions $pull (terminated)",
        op_terminated_event,
    ),
)


# Reading the counters is itself counted: leave that out.
COUNTER_NOISE = frozenset({"mongodb command", "redis info"})


class FloorTarget:
    """``FLOOR_OPERATIONS`` done directly, in a scratch database (with the service's indexes) and prefix."""

    name = "floor (direct)"

    def __init__(self, mongodb_url: str, redis_url: str, tag: str) -> None:
        self.mongo = create_mongo_client(mongodb_url, timeout_seconds=10.0, app_name="bench-floor")
        self.redis = create_redis_client(redis_url, timeout_seconds=10.0)
        self.database, self.prefix = f"bench_floor_{tag}", f"benchfloor{tag}"
        self.creating = [op for phase, _what, op in FLOOR_OPERATIONS if phase == "create"]
        self.terminating = [op for phase, _what, op in FLOOR_OPERATIONS if phase == "terminate"]
        self.floor: Floor | None = None

    async def __aenter__(self) -> FloorTarget:
        try:
            db = self.mongo[self.database]
            await MongoStore(db, event_retention_days=30).ensure_indexes()
            now = datetime.now(UTC)
            server = {
                "server_id": str(uuid.uuid4()),
                "name": "bench-host",
                "address": "127.0.0.1",
                "port": 9,
                "capacity": SERVER_CAPACITY,
                "weight": 1.0,
                "labels": {},
                "state": "available",
                "created_at": now,
                "updated_at": now,
            }
            await db[SERVERS].insert_one(dict(server))
        except BaseException:
            await self._close()
            raise
        config = SessionConfig().model_dump()
        config.update(idle_timeout=1800, session_timeout=28800, disconnect_timeout=900)
        coordination = RedisCoordination(self.redis, self.prefix, lease_ttl_seconds=LEASE_TTL_SECONDS)
        # The scratch lease sets start empty: trusted at once, as a reconcile pass over no session marks them
        # (the reserve script refuses until then). Not timed, not in FLOOR_OPERATIONS.
        token = coordination.new_lock_token()
        await coordination.begin_rebuild(token)
        valid_until_ms = int(time.time() * 1000) + 6 * 3600 * 1000
        if not await coordination.mark_trusted(token, epoch=token, valid_until_ms=valid_until_ms):
            raise RuntimeError("floor: could not mark the scratch lease sets trusted")
        self.floor = Floor(db, coordination, server, config)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await self.mongo.drop_database(self.database)
            keys = [key async for key in self.redis.scan_iter(match=f"{self.prefix}:*", count=500)]
            if keys:
                await self.redis.delete(*keys)
        finally:
            await self._close()

    async def _close(self) -> None:
        await self.redis.aclose()
        await self.mongo.close()

    async def counters(self) -> dict[str, int]:
        """The servers' operation counters: MongoDB ``opcounters``, Redis ``commandstats`` calls."""
        status = await self.mongo.admin.command("serverStatus")
        found = {f"mongodb {name}": int(count) for name, count in status.get("opcounters", {}).items()}
        stats = await self.redis.info("commandstats")
        found |= {f"redis {name.removeprefix('cmdstat_')}": int(v["calls"]) for name, v in stats.items()}
        return found

    async def one_pair(self, worker: int) -> tuple[float, float]:
        floor, pair = self.floor, Pair(worker)
        assert floor is not None
        started = time.perf_counter()
        for operation in self.creating:
            await operation(floor, pair)
        middle = time.perf_counter()
        for operation in self.terminating:
            await operation(floor, pair)
        return (middle - started) * 1000, (time.perf_counter() - middle) * 1000
