"""
SessionController: the session lifecycle state machine: reads, moves, connect and reconnect.

The state machine is enforced here and only here (``TRANSITIONS``). Every change is a
compare-and-set on ``status`` and ``version`` in MongoDB; a loser reloads and decides again,
so two replicas racing on one session cannot both win. A change commits together with the
record of its transition, whose effects (event, lease release, closing connections, peer
deliveries) ``TransitionEffects`` carries out exactly once. Slots are Redis leases reserved by
the connection manager.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pymongo.errors import DuplicateKeyError

from common.errors import Conflict, NotFound, ValidationFailed

from .config import RdpControllerSettings
from .descriptors import DescriptorIssuer
from .metrics import Metrics
from .models import (
    FINAL_STATUSES,
    ConnectionDescriptor,
    ConnectionMode,
    SessionStatus,
    TerminationReason,
    is_uuid,
)
from .server_registry import ServerRegistry
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


class SessionController:
    """Read sessions and move them through their life (``SessionCreation`` makes new ones)."""

    def __init__(
        self,
        store: MongoStore,
        coordination: RedisCoordination,
        servers: ServerRegistry,
        descriptors: DescriptorIssuer,
        settings: RdpControllerSettings,
        metrics: Metrics,
        effects: TransitionEffects,
    ):
        self.store = store
        self.coordination = coordination
        self.servers = servers
        self.descriptors = descriptors
        self.settings = settings
        self.metrics = metrics
        self.effects = effects
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

    async def connection_records(self, filters: Document, limit: int) -> list[Document]:
        """The sessions' client connection records, newest first (operators and services only)."""
        return await self.store.connections.page(filters, limit)

    async def events(self, session_id: str, *, owner: str | None, limit: int) -> list[Document]:
        await self.get(session_id, owner=owner)
        return await self.store.events.for_session(session_id, limit)

    # Create -------------------------------------------------------------------------------
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
                raise Conflict(
                    f"status {target.value} is set by the controller itself, not through the API",
                    code="INVALID_TRANSITION",
                    details=invalid_transition(status, target).details,
                )
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
        await self.open_connection(document, client_address)
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
        await self.servers.reserve_existing(Lease(document["server_id"], document["user_id"], session_id))
        if not self.relay_mode:
            await self.open_connection(document, None)
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

    async def open_connection(
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
