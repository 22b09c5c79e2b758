"""
SessionController: the session lifecycle state machine, limits, timers and reconnect.

The state machine is enforced here and only here (``TRANSITIONS``). Every change is a
compare-and-set on ``status`` and ``version`` in MongoDB; a loser reloads and decides again,
so two replicas racing on one session cannot both win. A change commits together with the
record of its transition, whose effects (event, lease release, closing connections, peer
deliveries) ``TransitionEffects`` carries out exactly once. Slots are Redis leases reserved by
the connection manager.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

from pymongo.errors import DuplicateKeyError, PyMongoError, ServerSelectionTimeoutError
from redis.exceptions import RedisError

from common.errors import Conflict, LucidError, NoCapacity, NotFound, ValidationFailed

from .config import RdpControllerSettings
from .connection_manager import ConnectionManager
from .descriptors import DescriptorIssuer
from .metrics import Metrics
from .models import (
    FINAL_STATUSES,
    ConnectionDescriptor,
    ConnectionMode,
    CreateSessionRequest,
    SessionConfig,
    SessionStatus,
    TerminationReason,
    is_uuid,
)
from .session_effects import TransitionEffects, transition_record
from .session_states import (
    CONTROLLER_ONLY,
    TRANSITIONS,
    Decision,
    Document,
    compute_deadlines,
    invalid_transition,
)
from .storage.mongo import MongoStore, new_id, utcnow
from .storage.redis import Lease, RedisCoordination

logger = logging.getLogger(__name__)

S = SessionStatus
CAS_ATTEMPTS = 8
# A replay waits for the first request with its Idempotency-Key at most this many backend timeouts.
IDEMPOTENCY_WAIT_FACTOR = 3
IDEMPOTENCY_POLL_SECONDS = 0.05


class DedicatedServers(Protocol):
    """Hands out a dedicated server (from the warm pool or freshly provisioned) for one session."""

    async def from_stock(self, *, session_id: str, user_id: str) -> str | None:
        """A warm server reserved for this session at once, or None when one must be provisioned."""
        ...

    async def acquire(self, *, session_id: str, user_id: str, session_config: Document) -> str:
        """Return the ``server_id`` of a registered, available server reserved for this session."""
        ...


def _check_connectable(status: SessionStatus) -> None:
    if status is S.SUSPENDED:
        raise Conflict(
            "session is suspended: use POST .../reconnect",
            code="INVALID_TRANSITION",
            details={"from": status.value, "to": "active", "allowed": ["active (reconnect)", "terminated"]},
        )
    if status not in (S.READY, S.ACTIVE, S.IDLE):
        raise invalid_transition(status, S.ACTIVE)


def _check_suspended(status: SessionStatus) -> None:
    if status is not S.SUSPENDED:
        raise Conflict(
            f"only a suspended session can be reconnected; this one is {status.value}",
            code="INVALID_TRANSITION",
            details={
                "from": status.value,
                "to": "active",
                "allowed": sorted(t.value for t in TRANSITIONS[status]),
            },
        )


def new_session(
    session_id: str,
    user_id: str,
    config: Document,
    status: SessionStatus,
    server_id: str | None,
    actor: str,
    now: datetime,
) -> Document:
    """The document of a session just created (its deadlines included)."""
    document: Document = {
        "session_id": session_id,
        "user_id": user_id,
        "server_id": server_id,
        "connection_id": new_id(),
        "status": status.value,
        "session_config": config,
        "created_at": now,
        "updated_at": now,
        "max_deadline": now + timedelta(seconds=config["session_timeout"]),
        "termination_reason": None,
        "version": 1,
        "created_by": actor,
    }
    document.update(compute_deadlines(document))
    return document


class SessionController:
    """Create, read and move sessions through their life."""

    def __init__(
        self,
        store: MongoStore,
        coordination: RedisCoordination,
        connections: ConnectionManager,
        descriptors: DescriptorIssuer,
        settings: RdpControllerSettings,
        metrics: Metrics,
        effects: TransitionEffects,
        dedicated: DedicatedServers | None = None,
    ):
        self.store = store
        self.coordination = coordination
        self.connections = connections
        self.descriptors = descriptors
        self.settings = settings
        self.metrics = metrics
        self.effects = effects
        self.dedicated = dedicated
        self._provisioning: set[asyncio.Task[None]] = set()
        # Relay mode: the relay moves sessions to active/suspended as it sees clients come and go.
        # Direct mode: the API callers say so (connect, disconnect, activity).
        self.relay_mode = descriptors.mode is ConnectionMode.RELAY

    # Reading ------------------------------------------------------------------------------
    async def get(self, session_id: str, *, owner: str | None = None) -> Document:
        """The session; ``owner`` set means only that user's session is visible (else 404)."""
        document = await self.store.sessions.get(session_id) if is_uuid(session_id) else None
        if document is None or (owner is not None and document["user_id"] != owner):
            raise NotFound(f"session {session_id} not found", code="SESSION_NOT_FOUND")
        return document

    async def page(
        self, *, filters: Document, limit: int, cursor: str | None
    ) -> tuple[list[Document], str | None]:
        query = {key: value for key, value in filters.items() if value is not None}
        return await self.store.sessions.page(query, limit, cursor)

    async def final_among(self, session_ids: list[str]) -> set[str]:
        return await self.store.sessions.final_among(session_ids)

    async def events(self, session_id: str, *, owner: str | None, limit: int) -> list[Document]:
        await self.get(session_id, owner=owner)
        return await self.store.events.for_session(session_id, limit)

    # Create -------------------------------------------------------------------------------
    def effective_config(self, config: SessionConfig) -> Document:
        values = config.model_dump()
        values["idle_timeout"] = config.idle_timeout or self.settings.RDP_CONTROLLER_IDLE_TIMEOUT
        values["session_timeout"] = config.session_timeout or self.settings.RDP_CONTROLLER_SESSION_TIMEOUT
        values["disconnect_timeout"] = (
            config.disconnect_timeout or self.settings.RDP_CONTROLLER_DISCONNECT_TIMEOUT
        )
        return values

    async def create(
        self, request: CreateSessionRequest, *, user_id: str, idempotency_key: str | None, actor: str
    ) -> tuple[Document, bool]:
        """Create (or return) a session. The flag is True when a new session was created.

        With an ``Idempotency-Key`` the first request claims the key and records the session it
        answered with, whichever path it took (new, reconnected); a replay, on any replica,
        returns that session. A request arriving while the first is still under way waits for it.
        """
        config = self.effective_config(request.session_config)
        fingerprint = hashlib.sha256(
            json.dumps([user_id, request.model_dump(mode="json")], sort_keys=True).encode()
        ).hexdigest()
        if idempotency_key is None:
            return await self._create(
                request, config, user_id=user_id, key=None, fingerprint=fingerprint, actor=actor
            )
        claims = self.store.idempotency
        claim = await claims.claim(user_id, idempotency_key, fingerprint)
        if claim is not None:
            return await self._replay(claim, user_id, idempotency_key, fingerprint), False
        try:
            document, created = await self._create(
                request, config, user_id=user_id, key=idempotency_key, fingerprint=fingerprint, actor=actor
            )
        except BaseException:
            try:
                await claims.release(user_id, idempotency_key)
            except PyMongoError as exc:  # the stale claim is taken over by the next request with the key
                logger.warning("Idempotency-Key claim of %s not released: %s", user_id, exc)
            raise
        await claims.complete(user_id, idempotency_key, document["session_id"], reconnected=not created)
        return document, created

    async def _replay(self, claim: Document, user_id: str, key: str, fingerprint: str) -> Document:
        if claim.get("fingerprint") != fingerprint:
            raise ValidationFailed(
                "Idempotency-Key: this key was used with a different request",
                code="IDEMPOTENCY_KEY_REUSED",
                details={"field": "Idempotency-Key", "session_id": claim.get("session_id")},
            )
        deadline = time.monotonic() + IDEMPOTENCY_WAIT_FACTOR * self.settings.BACKEND_TIMEOUT_SECONDS
        while claim.get("session_id") is None:
            # The first request with this key is still under way (on this replica or another).
            if time.monotonic() > deadline:
                raise Conflict(
                    "Idempotency-Key: the first request with this key is still under way; retry shortly",
                    code="IDEMPOTENCY_KEY_IN_PROGRESS",
                    details={"field": "Idempotency-Key"},
                )
            await asyncio.sleep(IDEMPOTENCY_POLL_SECONDS)
            found = await self.store.idempotency.get(user_id, key)
            if found is None:
                raise Conflict(
                    "Idempotency-Key: the first request with this key failed; retry it",
                    code="IDEMPOTENCY_KEY_IN_PROGRESS",
                    details={"field": "Idempotency-Key"},
                )
            claim = found
        session = await self.get(claim["session_id"])
        return {**session, "reconnected": True} if claim.get("reconnected") else session

    async def _create(
        self,
        request: CreateSessionRequest,
        config: Document,
        *,
        user_id: str,
        key: str | None,
        fingerprint: str,
        actor: str,
    ) -> tuple[Document, bool]:
        if not request.new_session and request.server_id is None:
            offered = await self._offer_reconnect(user_id, config, actor)
            if offered is not None:
                return {**offered, "reconnected": True}, False
        session_id, started = new_id(), time.perf_counter()
        pinned = request.server_id
        try:
            if request.session_config.dedicated_server:
                if self.dedicated is None:
                    raise NoCapacity(  # 503, like the warm pool's: the capability is unavailable
                        "dedicated servers need the rdp-server-manager integration (RDP_SERVER_MANAGER_URL)",
                        code="DEDICATED_UNAVAILABLE",
                        details={"field": "session_config.dedicated_server"},
                    )
                pinned = await self.dedicated.from_stock(session_id=session_id, user_id=user_id)
                if pinned is None:  # none warm: creating until one is provisioned
                    return await self._create_provisioned(
                        session_id, request, config, user_id, key, fingerprint, actor
                    )
            server = await self.connections.place(
                session_id=session_id,
                user_id=user_id,
                pinned_server_id=pinned,
                labels=request.session_config.labels,
            )
        except Exception:
            self.metrics.inc("session_create_failures")
            raise
        self.metrics.placement_latency.observe(time.perf_counter() - started)
        lease = Lease(server["server_id"], user_id, session_id)
        now = utcnow()
        document = new_session(session_id, user_id, config, S.READY, server["server_id"], actor, now)
        document.update({"idempotency_key": key, "request_fingerprint": fingerprint})
        document["pending_transitions"] = [transition_record(document, None, S.READY, "slot_reserved", actor)]
        try:
            await self.store.sessions.insert(document)
        except DuplicateKeyError:
            await self.connections.release(lease)
            raise
        except ServerSelectionTimeoutError:
            await self.connections.release(lease)  # no server was reached: nothing was written
            self.metrics.inc("session_create_failures")
            raise
        except PyMongoError:
            # The insert may have been written before the error: the slot stays reserved. Written,
            # the session's transition is settled by the reaper; not, the reconciler drops the lease.
            self.metrics.inc("session_create_failures")
            raise
        document.pop("_id", None)
        self.metrics.inc("sessions_created")
        await self.effects.settle(document)
        return document, True

    async def _create_provisioned(
        self,
        session_id: str,
        request: CreateSessionRequest,
        config: Document,
        user_id: str,
        key: str | None,
        fingerprint: str,
        actor: str,
    ) -> tuple[Document, bool]:
        """A session that is ``creating`` while its dedicated server is provisioned in the background."""
        document = new_session(session_id, user_id, config, S.CREATING, None, actor, utcnow())
        document.update({"idempotency_key": key, "request_fingerprint": fingerprint})
        document["pending_transitions"] = [
            transition_record(document, None, S.CREATING, "provisioning", actor)
        ]
        await self.store.sessions.insert(document)
        document.pop("_id", None)
        self.metrics.inc("sessions_created")
        await self.effects.settle(document)
        task = asyncio.create_task(
            self._provision(session_id, user_id, config, request.session_config.labels)
        )
        self._provisioning.add(task)
        task.add_done_callback(self._provisioning.discard)
        return document, True

    async def _provision(
        self, session_id: str, user_id: str, config: Document, labels: dict[str, str]
    ) -> None:
        """creating -> ready on the provisioned server, or -> error (with why) releasing what it held."""
        assert self.dedicated is not None
        server_id: str | None = None
        timeout = self.settings.RDP_CONTROLLER_PROVISION_TIMEOUT
        try:
            async with asyncio.timeout(timeout):
                server_id = await self.dedicated.acquire(
                    session_id=session_id, user_id=user_id, session_config=config
                )
                await self.connections.place(
                    session_id=session_id, user_id=user_id, pinned_server_id=server_id, labels=labels
                )
        except TimeoutError:
            await self._provisioning_failed(session_id, server_id, f"not provisioned within {timeout:g} s")
            return
        except (LucidError, PyMongoError, RedisError) as exc:
            await self._provisioning_failed(session_id, server_id, str(exc))
            return

        def decide(current: Document) -> Decision:
            if current["status"] != S.CREATING.value:
                return None
            return S.READY, {"server_id": server_id, "ready_at": utcnow()}

        try:
            document = await self.move(session_id, None, decide, reason="provisioned", actor="provisioner")
        except (LucidError, PyMongoError) as exc:
            logger.warning("Provisioned session %s not made ready now: %s", session_id, exc)
            return
        if document["status"] != S.READY.value:  # it failed meanwhile (timed out): free the slot
            await self.connections.release(Lease(server_id or "", user_id, session_id))

    async def _provisioning_failed(self, session_id: str, server_id: str | None, why: str) -> None:
        def decide(current: Document) -> Decision:
            if current["status"] != S.CREATING.value:
                return None
            # The server, if one was handed out, goes back through the release_dedicated_server delivery.
            return S.ERROR, {"server_id": server_id, "termination_reason": "error", "error_detail": why[:300]}

        logger.warning("Provisioning of session %s failed: %s", session_id, why)
        try:
            await self.move(session_id, None, decide, reason="provisioning_failed", actor="provisioner")
        except (LucidError, PyMongoError) as exc:
            # Still creating: expire_provisioning ends it once the provisioning timeout has passed.
            logger.warning("Session %s not marked error now: %s", session_id, exc)

    async def expire_provisioning(self) -> int:
        """End the sessions left ``creating`` past the provisioning timeout (their replica died)."""
        cutoff = utcnow() - timedelta(seconds=self.settings.RDP_CONTROLLER_PROVISION_TIMEOUT)
        expired = 0
        for document in await self.store.sessions.creating_before(cutoff):
            await self._provisioning_failed(document["session_id"], None, "provisioning timed out")
            expired += 1
        return expired

    async def stop(self) -> None:
        """Cancel provisioning still under way (its sessions end through ``expire_provisioning``)."""
        for task in list(self._provisioning):
            task.cancel()
        if self._provisioning:
            await asyncio.wait(self._provisioning, timeout=5.0)

    async def _offer_reconnect(self, user_id: str, config: Document, actor: str) -> Document | None:
        keys = ("display_resolution", "color_depth", "labels")
        for candidate in await self.store.sessions.suspended_for(user_id):
            if all(candidate["session_config"].get(k) == config[k] for k in keys):
                try:
                    return await self.reconnect(candidate["session_id"], owner=user_id, actor=actor)
                except (Conflict, NotFound):
                    continue  # it moved meanwhile (terminated by the reaper): try the next one
        return None

    # Moves --------------------------------------------------------------------------------
    async def move(
        self,
        session_id: str,
        owner: str | None,
        decide: Callable[[Document], Decision],
        *,
        reason: str | None,
        actor: str,
    ) -> Document:
        """Decide on the freshest copy and compare-and-set; reload and decide again on a lost race.

        A status change is committed with the record of its transition and then settled
        (``TransitionEffects``); transitions an earlier failure left pending are settled first.
        """
        for _attempt in range(CAS_ATTEMPTS):
            current = await self.get(session_id, owner=owner)
            if current.get("pending_transitions"):
                await self.effects.settle(current)
            decision = decide(current)
            if decision is None:
                return current
            target, changes = decision
            status = SessionStatus(current["status"])
            if target is not None and target is not status and target not in TRANSITIONS[status]:
                raise invalid_transition(status, target)
            merged = {**current, **changes, "status": (target or status).value}
            fields = {**changes, "status": merged["status"], **compute_deadlines(merged)}
            transition = None
            if target is not None and target is not status:
                # A decision made on the freshest copy (the reaper's) carries its own reason.
                event_reason = reason if reason is not None else changes.get("termination_reason")
                transition = transition_record(merged, status, target, event_reason, actor)
            updated = await self.store.sessions.compare_and_set(
                session_id, status, current["version"], fields, transition=transition
            )
            if updated is None:
                continue
            await self.effects.settle(updated)
            return updated
        raise Conflict(f"session {session_id} is changing too fast; try again", code="CONCURRENT_UPDATE")

    async def terminate(
        self, session_id: str, *, owner: str | None, reason: TerminationReason, actor: str
    ) -> Document:
        """Terminate; a session that is final already is returned as it is (idempotent)."""

        def decide(current: Document) -> Decision:
            if SessionStatus(current["status"]) in FINAL_STATUSES:
                return None
            return S.TERMINATED, {"terminated_at": utcnow(), "termination_reason": reason.value}

        return await self.move(session_id, owner, decide, reason=reason.value, actor=actor)

    async def update_status(
        self,
        session_id: str,
        target: SessionStatus,
        *,
        owner: str | None,
        reason: TerminationReason | None,
        actor: str,
    ) -> Document:
        if target is S.TERMINATED:
            return await self.terminate(
                session_id, owner=owner, reason=reason or TerminationReason.ADMIN, actor=actor
            )
        if reason is not None:
            raise ValidationFailed("reason: only with status terminated", details={"field": "reason"})

        def decide(current: Document) -> Decision:
            status, now = SessionStatus(current["status"]), utcnow()
            if target is status:
                raise invalid_transition(status, target)
            changes: Document = {}
            if target is S.ACTIVE:
                changes = {"last_activity_at": now, "started_at": current.get("started_at") or now}
            elif target is S.SUSPENDED:
                changes = {"suspended_at": now}
            elif target in CONTROLLER_ONLY:
                error = invalid_transition(status, target)
                error.message = f"status {target.value} is set by the controller itself, not through the API"
                raise error
            return target, changes

        return await self.move(session_id, owner, decide, reason=None, actor=actor)

    async def rdp_file(self, session_id: str, *, owner: str | None) -> str:
        """The ``.rdp`` file of a live session; in relay mode it carries a fresh one-time token."""
        document = await self.get(session_id, owner=owner)
        status = SessionStatus(document["status"])
        if status in FINAL_STATUSES:
            raise Conflict(f"session is {status.value}: it has no connection", code="SESSION_FINAL")
        return await self.descriptors.rdp_file(document)

    async def connect(
        self, session_id: str, *, owner: str | None, actor: str, client_address: str | None
    ) -> ConnectionDescriptor:
        """A descriptor and one-time token for a ready, active or idle session.

        Relay mode: nothing moves until the relay connects the client. Direct mode: the session
        becomes active now, since the controller will not see the client.
        """
        if self.relay_mode:
            return await self.descriptors.issue(await self._connectable(session_id, owner))

        def decide(current: Document) -> Decision:
            status, now = SessionStatus(current["status"]), utcnow()
            _check_connectable(status)
            return S.ACTIVE, {
                "connection_id": new_id() if current.get("started_at") else current["connection_id"],
                "started_at": current.get("started_at") or now,
                "last_activity_at": now,
            }

        document = await self.move(session_id, owner, decide, reason="client_connected", actor=actor)
        await self._open_connection(document, client_address)
        return await self.descriptors.issue(document)

    async def _connectable(self, session_id: str, owner: str | None) -> Document:
        document = await self.get(session_id, owner=owner)
        _check_connectable(SessionStatus(document["status"]))
        return document

    async def reconnect_with_descriptor(
        self, session_id: str, *, owner: str | None, actor: str
    ) -> ConnectionDescriptor:
        return await self.descriptors.issue(await self.reconnect(session_id, owner=owner, actor=actor))

    async def reconnect(self, session_id: str, *, owner: str | None, actor: str) -> Document:
        """A suspended session goes back to its own server (its slot is renewed).

        Relay mode: it stays suspended until the relay connects the client with the new token.
        """
        if self.relay_mode:
            document = await self.get(session_id, owner=owner)
            _check_suspended(SessionStatus(document["status"]))
        else:

            def decide(current: Document) -> Decision:
                _check_suspended(SessionStatus(current["status"]))
                return S.ACTIVE, {
                    "connection_id": new_id(),
                    "last_activity_at": utcnow(),
                    "suspended_at": None,
                }

            document = await self.move(session_id, owner, decide, reason="reconnected", actor=actor)
        await self.connections.reserve_existing(Lease(document["server_id"], document["user_id"], session_id))
        if not self.relay_mode:
            await self._open_connection(document, None)
        return document

    async def disconnect(self, session_id: str, *, owner: str | None, actor: str) -> Document:
        """Active or idle -> suspended; in relay mode the client's connection is closed too."""

        def decide(current: Document) -> Decision:
            status = SessionStatus(current["status"])
            if status not in (S.ACTIVE, S.IDLE):
                raise invalid_transition(status, S.SUSPENDED)
            return S.SUSPENDED, {"suspended_at": utcnow()}

        document = await self.move(session_id, owner, decide, reason="client_disconnected", actor=actor)
        await self.store.connections.close_open(session_id, utcnow())
        if self.relay_mode:
            await self.effects.end_connections(session_id, why="disconnected by the API")
        return document

    async def record_activity(
        self, session_id: str, *, owner: str | None, actor: str, bytes_in: int | None, bytes_out: int | None
    ) -> Document:
        """Heartbeat from a connected client: resets the idle timer; an idle session becomes active."""

        def decide(current: Document) -> Decision:
            status = SessionStatus(current["status"])
            if status not in (S.ACTIVE, S.IDLE):
                raise Conflict(
                    f"activity is recorded for active or idle sessions; this one is {status.value}",
                    code="INVALID_TRANSITION",
                    details={"from": status.value},
                )
            return (S.ACTIVE if status is S.IDLE else None), {"last_activity_at": utcnow()}

        document = await self.move(session_id, owner, decide, reason="activity", actor=actor)
        await self.store.connections.record_activity(document["connection_id"], utcnow(), bytes_in, bytes_out)
        return document

    # The relay's view of the wire --------------------------------------------------------
    async def client_connected(
        self, session_id: str, *, server_id: str, client_address: str, relay_id: str
    ) -> Document:
        """The relay connected a client to the session's host: the session is active on a new connection.

        A suspended session comes back (same host); an active or idle one is taken over by the
        newer connection. Refused (Conflict) when the session is final or moved to another host.
        """

        def decide(current: Document) -> Decision:
            status, now = SessionStatus(current["status"]), utcnow()
            if current.get("server_id") != server_id:
                raise Conflict("the token was issued for another host", code="INVALID_TRANSITION")
            if status not in (S.READY, S.ACTIVE, S.IDLE, S.SUSPENDED):
                raise invalid_transition(status, S.ACTIVE)
            return S.ACTIVE, {
                "connection_id": new_id() if current.get("started_at") else current["connection_id"],
                "started_at": current.get("started_at") or now,
                "last_activity_at": now,
                "suspended_at": None,
            }

        document = await self.move(
            session_id, None, decide, reason="client_connected", actor=f"relay:{relay_id}"
        )
        await self._open_connection(document, client_address, relay_id=relay_id)
        return document

    async def client_disconnected(
        self, session_id: str, connection_id: str, *, bytes_in: int, bytes_out: int, relay_id: str
    ) -> Document | None:
        """The relayed connection closed: the session is suspended, unless a newer connection took over."""
        await self.store.connections.close(connection_id, utcnow(), bytes_in=bytes_in, bytes_out=bytes_out)

        def decide(current: Document) -> Decision:
            status = SessionStatus(current["status"])
            if current["connection_id"] != connection_id or status not in (S.ACTIVE, S.IDLE):
                return None
            return S.SUSPENDED, {"suspended_at": utcnow()}

        try:
            return await self.move(
                session_id, None, decide, reason="client_disconnected", actor=f"relay:{relay_id}"
            )
        except NotFound:
            return None

    async def client_input(
        self,
        session_id: str,
        connection_id: str,
        *,
        at: datetime,
        bytes_in: int,
        bytes_out: int,
        relay_id: str,
    ) -> Document:
        """Client input seen by the relay: resets the idle timer; an idle session becomes active."""

        def decide(current: Document) -> Decision:
            status = SessionStatus(current["status"])
            if current["connection_id"] != connection_id or status not in (S.ACTIVE, S.IDLE):
                return None
            return (S.ACTIVE if status is S.IDLE else None), {"last_activity_at": at}

        document = await self.move(session_id, None, decide, reason="activity", actor=f"relay:{relay_id}")
        await self.store.connections.record_activity(connection_id, at, bytes_in, bytes_out)
        return document

    async def client_quiet(
        self, session_id: str, connection_id: str, *, bytes_in: int, bytes_out: int, relay_id: str
    ) -> Document:
        """No client input for a whole flush period: active -> idle (the idle timer runs on)."""

        def decide(current: Document) -> Decision:
            if current["connection_id"] != connection_id or current["status"] != S.ACTIVE.value:
                return None
            return S.IDLE, {}

        document = await self.move(session_id, None, decide, reason="no_input", actor=f"relay:{relay_id}")
        await self.store.connections.record_activity(connection_id, None, bytes_in, bytes_out)
        return document

    async def _open_connection(
        self, document: Document, client_address: str | None, *, relay_id: str | None = None
    ) -> None:
        now = utcnow()
        await self.store.connections.close_open(document["session_id"], now)
        relayed = relay_id is not None
        connection = {
            "connection_id": document["connection_id"],
            "session_id": document["session_id"],
            "server_id": document["server_id"],
            "user_id": document["user_id"],
            "client_address": client_address,
            "relay": relay_id,
            "opened_at": now,
            "closed_at": None,
            "last_activity_at": now,
            "bytes_in": 0 if relayed else None,
            "bytes_out": 0 if relayed else None,
        }
        try:
            await self.store.connections.open(connection)
        except DuplicateKeyError:
            await self.store.connections.reopen(connection)
