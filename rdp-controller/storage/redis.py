"""
Redis coordination shared by every replica: slot leases, per-user counts, leader locks, events.

Slot leases: per server a sorted set ``{prefix}:slots:{server_id}`` whose members are session
ids scored by lease expiry (ms). Per user a sorted set ``{prefix}:user:{user_id}`` the same
way. One Lua script drops expired members and reserves in both sets, or in neither, so
capacity and the per-user limit hold across replicas. Everything here can be rebuilt from
MongoDB (see ``SessionMaintenance.reconcile_once``).

Trust: the lease sets count only while the marker ``{prefix}:leases:trusted`` exists. The
reconciler sets it after each rebuild from MongoDB, with an expiry just short of the leases it
renewed, so it vanishes when Redis loses its data (restart, ``FLUSHALL``) and when MongoDB has
been away so long that live sessions' leases may have lapsed. Without it the reserve script
refuses (``Reservation.UNTRUSTED``) and creates answer 503 until the next rebuild.
``{prefix}:leases:epoch`` (no expiry) tells a lapsed marker (the leases are still there) from
lost data (they are not).
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, cast

from redis.asyncio import Redis

EVENT_STREAM_MAXLEN = 10_000

# KEYS: server slots, user sessions, trust marker. ARGV: now_ms, expiry_ms, capacity, user_limit,
# session_id. Returns 1 reserved (or renewed), -1 user limit reached, -2 server full, -3 the lease
# sets are not trusted (not rebuilt from MongoDB since Redis lost its data or the marker lapsed).
_RESERVE = """
if redis.call('EXISTS', KEYS[3]) == 0 then
  return -3
end
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

# KEYS: the pass's own key, trust marker, epoch. ARGV: ttl_ms. A reconcile pass starts: its key is
# written (a flush during the pass deletes it, so the pass cannot mark a flushed set trusted).
# Returns {marker exists (0/1), epoch or false}.
_BEGIN_REBUILD = """
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
return {redis.call('EXISTS', KEYS[2]), redis.call('GET', KEYS[3])}
"""

# KEYS: the pass's own key, trust marker, epoch. ARGV: marker ttl_ms, epoch. The pass whose key is
# still there marks the lease sets trusted. Returns 1 marked, 0 the key is gone (Redis lost its data).
_MARK_TRUSTED = """
if redis.call('DEL', KEYS[1]) == 0 then
  return 0
end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[1])
redis.call('SET', KEYS[3], ARGV[2])
return 1
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
    UNTRUSTED = -3


@dataclass(frozen=True)
class RebuildStart:
    """What a reconcile pass found when it began."""

    trusted: bool  # the marker was there: the lease sets are complete
    epoch: str | None  # the epoch the sets were last rebuilt under (None: Redis lost its data)


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
        self._begin_rebuild = client.register_script(_BEGIN_REBUILD)
        self._mark_trusted = client.register_script(_MARK_TRUSTED)

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def _lease_keys(self, lease: Lease) -> list[str]:
        return [self.key("slots", lease.server_id), self.key("user", lease.user_id)]

    def _trust_keys(self, token: str) -> list[str]:
        return [
            self.key("leases", "rebuild", token),
            self.key("leases", "trusted"),
            self.key("leases", "epoch"),
        ]

    async def reserve(self, lease: Lease, *, capacity: int, user_limit: int) -> Reservation:
        """Reserve a slot on the server and a place in the user's quota, both or neither.

        ``UNTRUSTED`` (nothing reserved) while the lease sets are not rebuilt from MongoDB.
        """
        now = _now_ms()
        result = await self._reserve(
            keys=[*self._lease_keys(lease), self.key("leases", "trusted")],
            args=[now, now + self.lease_ttl_ms, capacity, user_limit, lease.session_id],
        )
        return Reservation(int(result))

    async def renew(self, leases: list[Lease]) -> int:
        """Extend (or re-create) leases of live sessions; used by the reconciler. Their expiry (ms)."""
        expiry = _now_ms() + self.lease_ttl_ms
        if not leases:
            return expiry
        async with self.client.pipeline(transaction=False) as pipe:
            for lease in leases:
                for key in self._lease_keys(lease):
                    pipe.zadd(key, {lease.session_id: expiry})
            await pipe.execute()
        return expiry

    def lease_keys(self, lease: Lease) -> list[str]:
        """The slot key and the user key a lease is an entry of."""
        return self._lease_keys(lease)

    def new_expiry_ms(self) -> int:
        return _now_ms() + self.lease_ttl_ms

    async def set_expiry(
        self, entries: list[tuple[str, str]], expiry_ms: int, *, only_existing: bool
    ) -> None:
        """Give (key, session id) entries this expiry; ``only_existing`` leaves absent ones absent."""
        if not entries:
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for key, member in entries:
                pipe.zadd(key, {member: expiry_ms}, xx=only_existing)
            await pipe.execute()

    # Trust in the lease sets --------------------------------------------------------------
    async def begin_rebuild(self, token: str) -> RebuildStart:
        """Start a reconcile pass holding ``token``; whether the sets are trusted now, and their epoch."""
        reply = await self._begin_rebuild(keys=self._trust_keys(token), args=[self.lease_ttl_ms])
        exists, epoch = cast(list[Any], reply)
        return RebuildStart(trusted=int(exists) == 1, epoch=str(epoch) if epoch else None)

    async def mark_trusted(self, token: str, *, epoch: str, valid_until_ms: int) -> bool:
        """Mark the sets trusted until ``valid_until_ms`` unless Redis lost its data since ``token`` began."""
        ttl_ms = valid_until_ms - _now_ms()
        if ttl_ms <= 0:
            return False
        result = await self._mark_trusted(keys=self._trust_keys(token), args=[ttl_ms, epoch])
        return int(result) == 1

    async def trusted(self) -> bool:
        return bool(await self.client.exists(self.key("leases", "trusted")))

    async def scored_members(self, key: str) -> dict[str, float]:
        """Members of a lease set with their expiry (ms), expired ones included."""
        pairs = cast(list[tuple[str, float]], await self.client.zrange(key, 0, -1, withscores=True))
        return {str(member): float(score) for member, score in pairs}

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

    # The pool view's version ----------------------------------------------------------------
    # ``{prefix}:pool:version`` holds a random token that every change of a server document replaces
    # (``bump_pool_version``); a replica's cached pool view is valid while the token is the one it was
    # read under. A token, not a counter: after Redis lost its data a counter could come back to a
    # value a stale view was read under; a fresh random token cannot.
    async def bump_pool_version(self) -> None:
        await self.client.set(self.key("pool", "version"), secrets.token_hex(8))

    async def pool_version(self) -> str:
        """The current token (created when missing), to read the server documents under."""
        key = self.key("pool", "version")
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.set(key, secrets.token_hex(8), nx=True)
            pipe.get(key)
            _created, version = await pipe.execute()
        return str(version)

    async def pool_version_and_counts(self, server_ids: list[str]) -> tuple[str | None, dict[str, int]]:
        """The token (None when missing) and ``live_counts(server_ids)``, in one round trip."""
        now = _now_ms()
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.get(self.key("pool", "version"))
            for server_id in server_ids:
                pipe.zcount(self.key("slots", server_id), now, "+inf")
            version, *counts = await pipe.execute()
        found = {server_id: int(count) for server_id, count in zip(server_ids, counts, strict=True)}
        return (None if version is None else str(version)), found

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
