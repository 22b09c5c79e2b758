"""MongoDB and Redis client factories and health pings shared by Lucid services.

Clients are created by the application's lifespan and closed by it; nothing here holds a
module-level client.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError

MongoDocument = dict[str, Any]


@dataclass(frozen=True)
class BackendStatus:
    """The answer of one backend to a ping."""

    up: bool
    latency_ms: float | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": "up" if self.up else "down"}
        if self.latency_ms is not None:
            body["latency_ms"] = round(self.latency_ms, 2)
        if self.error:
            body["error"] = self.error
        return body


def create_mongo_client(
    url: str, *, timeout_seconds: float, app_name: str
) -> AsyncMongoClient[MongoDocument]:
    """PyMongo's native asyncio client. It connects lazily, so a server that is down does not fail here.

    ``timeoutMS`` (PyMongo's client-side operation timeout) bounds every operation as a whole:
    server selection, connection checkout, the round trip and any retry. Without it a request on an
    open connection to a hung server (SIGSTOPped, or a stalled network) waits until the driver's
    heartbeat gives the server up, several times ``timeout_seconds``.
    """
    timeout_ms = int(timeout_seconds * 1000)
    return AsyncMongoClient(
        url,
        appname=app_name,
        tz_aware=True,
        uuidRepresentation="standard",
        timeoutMS=timeout_ms,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        retryWrites=True,
    )


# Connections one Redis client keeps at most. More concurrent commands wait (up to the timeout) for
# a free one: redis-py's default pool refuses the 101st at once (MaxConnectionsError), which a burst
# of requests reaches as soon as nothing else throttles them.
REDIS_MAX_CONNECTIONS = 100


def create_redis_client(url: str, *, timeout_seconds: float) -> Redis:
    """redis-py's asyncio client with string replies, on a blocking pool. Connects lazily."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=REDIS_MAX_CONNECTIONS,
        timeout=timeout_seconds,
        decode_responses=True,
        socket_timeout=timeout_seconds,
        socket_connect_timeout=timeout_seconds,
        health_check_interval=30,
    )
    client: Redis = Redis.from_pool(pool)  # the client owns the pool: aclose() closes it
    return client


async def ping_mongo(client: AsyncMongoClient[MongoDocument]) -> BackendStatus:
    started = time.perf_counter()
    try:
        await client.admin.command("ping")
    except PyMongoError as exc:
        return BackendStatus(up=False, error=f"{type(exc).__name__}: {_first_line(exc)}")
    return BackendStatus(up=True, latency_ms=(time.perf_counter() - started) * 1000)


async def ping_redis(client: Redis) -> BackendStatus:
    started = time.perf_counter()
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        return BackendStatus(up=False, error=f"{type(exc).__name__}: {_first_line(exc)}")
    return BackendStatus(up=True, latency_ms=(time.perf_counter() - started) * 1000)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
