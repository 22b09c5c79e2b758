"""
Redis coordination shared by every replica: slot leases, per-user counts, leader locks, events.

Slot leases: per server a sorted set ``{prefix}:slots:{server_id}`` whose members are session
ids scored by lease expiry (ms). Per user a sorted set ``{prefix}:user:{user_id}`` the same
way. One Lua script drops expired members and reserves in both sets, or in neither, so
capacity and the per-user limit hold across replicas. Everything here can be rebuilt from
MongoDB (see ``SessionController.reconcile``).
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from redis.asyncio import Redis

EVENT_STREAM_MAXLEN = 10_000

# KEYS: server slots, user sessions. ARGV: now_ms, expiry_ms, capacity, user_limit, session_id.
# Returns 1 reserved (or renewed), -1 user limit reached, -2 server full.
_RESERVE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
if redis.call('ZSCORE', KEYS[1], ARGV[5]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[5])
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[5])
  return 1
end
if tonumber(ARGV[4]) > 0 and redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then
  return -1
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return -2
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[5])
return 1
"""

# KEYS: server slots, user sessions. ARGV: session_id. Returns members removed.
_RELEASE = """
return redis.call('ZREM', KEYS[1], ARGV[1]) + redis.call('ZREM', KEYS[2], ARGV[1])
"""

# KEYS: slot set. ARGV: now_ms. Drops expired leases, returns live count.
_LIVE_COUNT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return redis.call('ZCARD', KEYS[1])
"""

# KEYS: lock. ARGV: token, ttl_ms. Acquire or renew a lock we hold; 1 when held after the call.
_LOCK = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if holder then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Reservation(IntEnum):
    RESERVED = 1
    USER_LIMIT = -1
    SERVER_FULL = -2


@dataclass(frozen=True)
class Lease:
    server_id: str
    user_id: str
    session_id: str


def _now_ms() -> int:
    return int(time.time() * 1000)


class RedisCoordination:
    """Leases, locks and the event stream, on one ``redis.asyncio.Redis`` with string replies."""

    def __init__(self, client: Redis, prefix: str, *, lease_ttl_seconds: int):
        self.client = client
        self.prefix = prefix
        self.lease_ttl_ms = lease_ttl_seconds * 1000
        self._reserve = client.register_script(_RESERVE)
        self._release = client.register_script(_RELEASE)
        self._live_count = client.register_script(_LIVE_COUNT)
        self._lock = client.register_script(_LOCK)
        self._unlock = client.register_script(_UNLOCK)

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def _lease_keys(self, lease: Lease) -> list[str]:
        return [self.key("slots", lease.server_id), self.key("user", lease.user_id)]

    async def reserve(self, lease: Lease, *, capacity: int, user_limit: int) -> Reservation:
        """Reserve a slot on the server and a place in the user's quota, both or neither."""
        now = _now_ms()
        result = await self._reserve(
            keys=self._lease_keys(lease),
            args=[now, now + self.lease_ttl_ms, capacity, user_limit, lease.session_id],
        )
        return Reservation(int(result))

    async def renew(self, leases: list[Lease]) -> None:
        """Extend (or re-create) leases of live sessions; used by the reconciler."""
        if not leases:
            return
        expiry = _now_ms() + self.lease_ttl_ms
        async with self.client.pipeline(transaction=False) as pipe:
            for lease in leases:
                for key in self._lease_keys(lease):
                    pipe.zadd(key, {lease.session_id: expiry})
            await pipe.execute()

    async def release(self, lease: Lease) -> int:
        return int(await self._release(keys=self._lease_keys(lease), args=[lease.session_id]))

    async def live_count(self, server_id: str) -> int:
        return int(await self._live_count(keys=[self.key("slots", server_id)], args=[_now_ms()]))

    async def live_counts(self, server_ids: list[str]) -> dict[str, int]:
        if not server_ids:
            return {}
        now = _now_ms()
        async with self.client.pipeline(transaction=False) as pipe:
            for server_id in server_ids:
                pipe.zcount(self.key("slots", server_id), now, "+inf")
            counts = await pipe.execute()
        return {server_id: int(count) for server_id, count in zip(server_ids, counts, strict=True)}

    async def user_count(self, user_id: str) -> int:
        return int(await self._live_count(keys=[self.key("user", user_id)], args=[_now_ms()]))

    async def lease_members(self, server_id: str) -> set[str]:
        members = await self.client.zrangebyscore(self.key("slots", server_id), _now_ms(), "+inf")
        return {str(member) for member in members}

    async def scan_lease_keys(self) -> list[str]:
        """Every slot and user key under the prefix (for the reconciler)."""
        keys: list[str] = []
        for kind in ("slots", "user"):
            async for key in self.client.scan_iter(match=self.key(kind, "*"), count=500):
                keys.append(key)
        return keys

    async def drop_members(self, key: str, members: list[str]) -> None:
        if members:
            await self.client.zrem(key, *members)

    async def members(self, key: str) -> list[str]:
        return [str(member) for member in await self.client.zrange(key, 0, -1)]

    # Leader locks -------------------------------------------------------------------------
    async def hold_lock(self, name: str, token: str, ttl_seconds: float) -> bool:
        """Acquire the lock ``name`` or renew it if ``token`` holds it already."""
        result = await self._lock(keys=[self.key("lock", name)], args=[token, int(ttl_seconds * 1000)])
        return int(result) == 1

    async def release_lock(self, name: str, token: str) -> None:
        await self._unlock(keys=[self.key("lock", name)], args=[token])

    @staticmethod
    def new_lock_token() -> str:
        return secrets.token_hex(16)

    # Events -------------------------------------------------------------------------------
    async def publish_event(self, event: dict[str, Any]) -> None:
        fields: dict[Any, Any] = {
            key: value if isinstance(value, str) else json.dumps(value) for key, value in event.items()
        }
        await self.client.xadd(self.key("events"), fields, maxlen=EVENT_STREAM_MAXLEN, approximate=True)
