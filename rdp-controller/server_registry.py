"""
ServerRegistry: the pool of RDP hosts, placement, and slot leases.

Servers come from the API and from the static list ``RDP_CONTROLLER_SERVERS``. Placement
picks, among available servers that match the requested labels, the least loaded relative
to capacity and weight, and reserves a slot there through the Redis lease script, so that
capacity holds across replicas. Reconnects go to the session's own server.

Placement reads the pool through a cached view (``PoolView``): the server documents, reused
while the Redis token ``{prefix}:pool:version`` is the one they were read under (checked in the
same round trip as the live counts, on every create) and for at most
``RDP_CONTROLLER_POOL_VIEW_TTL`` seconds. Every committed change of a server document replaces the
token (``ServerRepository.changed``), so no replica places on a server drained, disabled, made
unhealthy or removed once that change has been answered; the TTL bounds a change whose token
update failed (Redis unreachable at that moment).

While the lease sets are not trusted (Redis lost its data, or MongoDB was away so long that
leases may have lapsed) nothing is reserved: creates answer 503 ``LEASES_REBUILDING`` until the
reconciler has rebuilt them from MongoDB.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from redis.exceptions import RedisError

from common.errors import BackendUnavailable, Conflict, NoCapacity, NotFound, ValidationFailed

from .config import RdpControllerSettings
from .metrics import Metrics
from .models import ServerState, is_uuid
from .server_models import ServerCreate, ServerUpdate
from .storage.mongo import MongoStore, new_id, utcnow
from .storage.redis import Lease, RedisCoordination, Reservation

logger = logging.getLogger(__name__)

SessionIds = list[str]  # (the method ``list`` below shadows the builtin inside the class)

# Servers carrying this label (the warm pool's) are placed on only when a session is pinned to them.
DEDICATED_LABEL = "dedicated"
#: Said by the 503 NO_CAPACITY answer: how an operator adds a host to the pool.
ADD_HOST_HINT = (
    "add an RDP host with POST /api/v1/servers (operator role) or list it in RDP_CONTROLLER_SERVERS"
)
# A create that finds the lease sets untrusted waits this share of BACKEND_TIMEOUT_SECONDS for a
# rebuild already under way (the first one at start-up takes milliseconds) before it answers 503.
UNTRUSTED_WAIT_SHARE = 0.5
UNTRUSTED_POLL_SECONDS = 0.05


def health_state_of(document: Mapping[str, Any]) -> ServerState:
    """The health the monitor last measured for a server (``available`` before any probe)."""
    value = document.get("health_state") or document.get("state")
    for state in (ServerState.AVAILABLE, ServerState.DEGRADED, ServerState.UNHEALTHY):
        if value == state.value:
            return state
    return ServerState.AVAILABLE


@dataclass(frozen=True)
class PoolView:
    """The server documents placement read, the pool version token they were read under, and when."""

    servers: list[dict[str, Any]]
    version: str
    loaded_at: float


class ServerRegistry:
    """Host pool, placement and slot leases."""

    def __init__(
        self,
        store: MongoStore,
        coordination: RedisCoordination,
        settings: RdpControllerSettings,
        metrics: Metrics,
    ):
        self.store = store
        self.coordination = coordination
        self.settings = settings
        self.metrics = metrics
        self._view: PoolView | None = None
        store.servers.change_listeners.append(self.pool_changed)

    async def pool_changed(self) -> None:
        """A server document changed (committed): drop this replica's view, and every replica's (token)."""
        self._view = None
        try:
            await self.coordination.bump_pool_version()
        except (RedisError, OSError) as exc:
            # The change is committed; other replicas' views end within RDP_CONTROLLER_POOL_VIEW_TTL.
            logger.warning("Pool version not updated (views elsewhere expire by their TTL): %s", exc)

    async def _placeable(self, labels: dict[str, str]) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """The servers a session with ``labels`` may be placed on, and their live counts."""
        ttl = self.settings.RDP_CONTROLLER_POOL_VIEW_TTL
        view = self._view
        if view is not None and time.monotonic() - view.loaded_at < ttl:
            candidates = _candidates(view.servers, labels)
            version, counts = await self.coordination.pool_version_and_counts(
                [s["server_id"] for s in candidates]
            )
            if version == view.version:
                return candidates, counts
        # Read the token first: a change committed after it replaces it, so this view cannot outlive it.
        version = await self.coordination.pool_version() if ttl > 0 else None
        servers = await self.store.servers.all()
        self._view = PoolView(servers, version, time.monotonic()) if version is not None else None
        candidates = _candidates(servers, labels)
        return candidates, await self.coordination.live_counts([s["server_id"] for s in candidates])

    # Registry ---------------------------------------------------------------------------
    async def register(self, request: ServerCreate, *, source: str = "api") -> dict[str, Any]:
        now = utcnow()
        document: dict[str, Any] = {
            "server_id": new_id(),
            **request.model_dump(),
            "state": ServerState.AVAILABLE.value,
            "draining": False,
            "drain_deadline": None,
            "source": source,
            "last_probe": None,
            "consecutive_successes": 0,
            "consecutive_failures": 0,
            "created_at": now,
            "updated_at": now,
        }
        await self.store.servers.insert(document)
        logger.info("Registered server %s at %s:%s", document["name"], document["address"], document["port"])
        return await self._with_load(document)

    async def sync_static_servers(self) -> None:
        """Register the configured static servers that are not in the pool yet (idempotent)."""
        known = {(s["address"], s["port"]) for s in await self.store.servers.all()}
        for static in self.settings.RDP_CONTROLLER_SERVERS:
            request = ServerCreate.model_validate(static.model_dump())
            if (request.address, request.port) in known:
                continue
            try:
                await self.register(request, source="config")
            except Conflict:
                logger.debug("Static server %s registered by another replica", request.name)

    async def get_document(self, server_id: str) -> dict[str, Any]:
        document = await self.store.servers.get(server_id) if is_uuid(server_id) else None
        if document is None:
            raise NotFound(f"server {server_id} not found", code="SERVER_NOT_FOUND")
        return document

    async def get(self, server_id: str) -> dict[str, Any]:
        return await self._with_load(await self.get_document(server_id))

    async def list(self) -> list[dict[str, Any]]:
        servers = await self.store.servers.all()
        counts = await self.coordination.live_counts([s["server_id"] for s in servers])
        return [{**s, "live_sessions": counts.get(s["server_id"], 0)} for s in servers]

    async def _with_load(self, document: dict[str, Any]) -> dict[str, Any]:
        return {**document, "live_sessions": await self.coordination.live_count(document["server_id"])}

    async def live_session_count(self, server_id: str) -> int:
        return len(await self.store.sessions.live_on_server(server_id))

    async def update(self, server_id: str, request: ServerUpdate) -> dict[str, Any]:
        document = await self.get_document(server_id)
        changes = request.model_dump(
            exclude_none=True, exclude={"drain_deadline_seconds", "draining", "disabled"}
        )
        if request.capacity is not None:
            live = await self.live_session_count(server_id)
            if request.capacity < live:
                raise ValidationFailed(
                    f"capacity: {request.capacity} is below the {live} live sessions on this server",
                    details={"field": "capacity", "live_sessions": live},
                )
        if request.pinned_cert_sha256 == "":
            changes["pinned_cert_sha256"] = None
        if request.draining is not None:
            changes["draining"] = request.draining
            seconds = request.drain_deadline_seconds
            changes["drain_deadline"] = (
                utcnow() + timedelta(seconds=seconds) if request.draining and seconds is not None else None
            )
        if request.draining is not None or request.disabled is not None:
            # Disabled wins over draining; neither: back to the health the monitor measured.
            draining = request.draining if request.draining is not None else bool(document.get("draining"))
            disabled = (
                request.disabled
                if request.disabled is not None
                else document["state"] == ServerState.DISABLED
            )
            if disabled:
                changes["state"] = ServerState.DISABLED.value
            elif draining:
                changes["state"] = ServerState.DRAINING.value
            else:
                changes["state"] = health_state_of(document).value
        updated = await self.store.servers.update(server_id, changes)
        if updated is None:
            raise NotFound(f"server {server_id} not found", code="SERVER_NOT_FOUND")
        return await self._with_load(updated)

    async def remove(self, server_id: str, *, force: bool) -> SessionIds:
        """Remove a server; with live sessions only when ``force``. Returns the live session ids."""
        await self.get_document(server_id)
        live = [s["session_id"] for s in await self.store.sessions.live_on_server(server_id)]
        if live and not force:
            raise Conflict(
                f"server {server_id} has {len(live)} live sessions: drain it first or remove with force=true",
                code="SERVER_HAS_SESSIONS",
                details={"live_sessions": len(live)},
            )
        await self.store.servers.delete(server_id)
        # A session placed while we checked is on a server that is gone now: it goes too.
        late = [s["session_id"] for s in await self.store.sessions.live_on_server(server_id)]
        return live + [session_id for session_id in late if session_id not in live]

    # Placement --------------------------------------------------------------------------
    async def place(
        self,
        *,
        session_id: str,
        user_id: str,
        pinned_server_id: str | None,
        labels: dict[str, str],
    ) -> dict[str, Any]:
        """Reserve a slot for the session and return the chosen server document."""
        limit = self.settings.RDP_CONTROLLER_MAX_SESSIONS_PER_USER
        if pinned_server_id is not None:
            server = await self.get_document(pinned_server_id)
            if server["state"] != ServerState.AVAILABLE.value:
                raise Conflict(
                    f"server {pinned_server_id} takes no new sessions: it is {server['state']}",
                    code="SERVER_NOT_AVAILABLE",
                    details={"server_id": pinned_server_id, "state": server["state"]},
                )
            outcome = await self._reserve(server, session_id, user_id, limit)
            if outcome is Reservation.SERVER_FULL:
                raise Conflict(
                    f"server {pinned_server_id} is full ({server['capacity']} sessions)",
                    code="SERVER_FULL",
                    details={"server_id": pinned_server_id, "capacity": server["capacity"]},
                )
            return server
        candidates, counts = await self._placeable(labels)
        jitter = random.Random()
        candidates.sort(
            key=lambda s: (counts[s["server_id"]] / (s["capacity"] * s["weight"]), jitter.random())
        )
        for server in candidates:
            if counts[server["server_id"]] >= server["capacity"]:
                continue
            if await self._reserve(server, session_id, user_id, limit) is Reservation.RESERVED:
                return dict(server)  # a copy: the view's documents are shared by every create
        raise NoCapacity(
            "no available server has a free slot"
            + (f" with labels {labels}" if labels else "")
            + f"; {ADD_HOST_HINT}",
            details={"servers_considered": len(candidates), "hint": ADD_HOST_HINT},
        )

    async def _reserve(
        self, server: dict[str, Any], session_id: str, user_id: str, limit: int
    ) -> Reservation:
        lease = Lease(server["server_id"], user_id, session_id)
        give_up = time.monotonic() + self.settings.BACKEND_TIMEOUT_SECONDS * UNTRUSTED_WAIT_SHARE
        while True:
            outcome = await self.coordination.reserve(lease, capacity=server["capacity"], user_limit=limit)
            if outcome is not Reservation.UNTRUSTED:
                break
            if time.monotonic() >= give_up:
                self.metrics.inc("creates_refused_untrusted_leases")
                raise BackendUnavailable(
                    "slot leases are being rebuilt from MongoDB (Redis lost them, or MongoDB was away "
                    "longer than a lease lives); try again in a few seconds",
                    code="LEASES_REBUILDING",
                    details={"backend": "redis"},
                )
            await asyncio.sleep(UNTRUSTED_POLL_SECONDS)
        if outcome is Reservation.USER_LIMIT:
            raise Conflict(
                f"user {user_id} has reached the limit of {limit} live sessions",
                code="USER_SESSION_LIMIT",
                details={"user_id": user_id, "limit": limit},
            )
        return outcome

    async def reserve_existing(self, lease: Lease) -> None:
        """Re-assert the lease of a session that keeps its server (reconnect)."""
        await self.coordination.renew([lease])

    async def release(self, lease: Lease) -> None:
        await self.coordination.release(lease)


def _candidates(servers: list[dict[str, Any]], labels: dict[str, str]) -> list[dict[str, Any]]:
    """Available servers that match ``labels``; dedicated servers take pinned sessions only."""
    return [
        s
        for s in servers
        if s["state"] == ServerState.AVAILABLE.value
        and _labels_match(s.get("labels", {}), labels)
        and s.get("labels", {}).get(DEDICATED_LABEL) != "true"
    ]


def _labels_match(server_labels: dict[str, str], wanted: dict[str, str]) -> bool:
    return all(server_labels.get(key) == value for key, value in wanted.items())
