"""
What a committed state change sets off, exactly once, whatever the caller was answered.

A move of a session is committed together with the record of its transition: the same
compare-and-set (or the insert of a new session) pushes it onto the session's
``pending_transitions``. ``settle`` then carries out each pending transition's effects, every
one of them idempotent, and removes it:

- a final state: the session's open connection records closed, its slot lease released, its
  relayed connections closed on every replica and its unused connection tokens revoked;
- its event appended to ``rdp_session_events`` (an upsert by ``event_id``: once) and published on
  the Redis stream (at least once: stream readers dedupe by ``event_id``);
- the lifecycle hooks (outbox deliveries whose ids derive from the session and the operation: once).

A failure part-way (MongoDB hung, Redis gone, the replica killed) leaves the transition pending.
The next move of the same session settles it first (so a retried request repairs what its first
try interrupted), and a background pass settles what stays pending longer (``settle_interrupted``).
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any, Protocol

from pymongo.errors import PyMongoError
from redis.exceptions import RedisError

from common.errors import LucidError

from .descriptors import DescriptorIssuer
from .metrics import Metrics
from .models import FINAL_STATUSES, SessionStatus
from .server_registry import ServerRegistry
from .storage.mongo import MongoStore, new_id, utcnow
from .storage.redis import Lease, RedisCoordination

logger = logging.getLogger(__name__)

Document = dict[str, Any]
STALE_BATCH = 200


class LifecycleHooks(Protocol):
    """Told of every committed transition; must not block (the integration layer queues work)."""

    async def on_transition(
        self,
        session: Document,
        from_status: SessionStatus | None,
        to_status: SessionStatus,
        reason: str | None,
    ) -> None: ...


class ConnectionCloser(Protocol):
    """Closes a session's relayed client connections on whichever replica holds them."""

    async def close(self, session_id: str, *, keep: str | None = None, why: str = "closed") -> None: ...


def transition_record(
    document: Document,
    from_status: SessionStatus | None,
    to_status: SessionStatus,
    reason: str | None,
    actor: str,
) -> Document:
    """The event of one move, stored in ``pending_transitions`` by the write that commits the move."""
    return {
        "event_id": new_id(),
        "session_id": document["session_id"],
        "user_id": document["user_id"],
        "server_id": document.get("server_id"),
        "from_status": from_status.value if from_status else None,
        "to_status": to_status.value,
        "reason": reason,
        "actor": actor,
        "at": utcnow(),
        "seq": time.monotonic_ns(),
    }


class TransitionEffects:
    def __init__(
        self,
        store: MongoStore,
        coordination: RedisCoordination,
        servers: ServerRegistry,
        descriptors: DescriptorIssuer,
        metrics: Metrics,
        *,
        grace_seconds: float,
        hooks: LifecycleHooks | None = None,
        closer: ConnectionCloser | None = None,
    ):
        self.store = store
        self.coordination = coordination
        self.servers = servers
        self.descriptors = descriptors
        self.metrics = metrics
        self.hooks = hooks
        self.closer = closer
        self.grace_seconds = grace_seconds

    async def settle(self, document: Document) -> None:
        """Carry out the pending transitions of this copy of the session, oldest first.

        A MongoDB error propagates (the transition stays pending for a retry or the reaper);
        Redis-side effects that fail are logged: the reconciler and the relay's sweep make up for them.
        """
        for transition in document.get("pending_transitions") or []:
            await self._carry_out(document, transition)
            await self.store.sessions.settled(document["session_id"], transition["event_id"])
        document["pending_transitions"] = []

    async def settle_interrupted(self) -> int:
        """Settle the sessions whose transitions stayed pending longer than the grace (a background pass).

        The grace leaves the requests still under way to settle their own transitions.
        """
        settled = 0
        older_than = utcnow() - timedelta(seconds=self.grace_seconds)
        for document in await self.store.sessions.unsettled(older_than, STALE_BATCH):
            try:
                await self.settle(document)
            except PyMongoError as exc:
                logger.warning("Pending transitions of %s not settled yet: %s", document["session_id"], exc)
                continue
            settled += 1
            logger.info("Settled interrupted transitions of %s", document["session_id"])
        return settled

    async def _carry_out(self, document: Document, transition: Document) -> None:
        session_id = document["session_id"]
        to_status = SessionStatus(transition["to_status"])
        from_status = SessionStatus(transition["from_status"]) if transition["from_status"] else None
        reason = transition["reason"]
        if to_status in FINAL_STATUSES:
            await self.store.connections.close_open(session_id, transition["at"])
            if document.get("server_id"):
                try:
                    await self.servers.release(Lease(document["server_id"], document["user_id"], session_id))
                except RedisError as exc:
                    # The reconciler drops leases of final sessions; the lease also expires.
                    logger.warning("Lease of %s not released now: %s", session_id, exc)
            await self.end_connections(session_id, why=f"session {to_status.value}")
        if await self.store.events.append_once(transition) and to_status in FINAL_STATUSES:
            self.metrics.inc("sessions_terminated", reason or "")
        try:
            await self.coordination.publish_event({**transition, "at": transition["at"].isoformat()})
        except RedisError as exc:
            logger.warning("Event %s not published on the stream: %s", transition["event_id"], exc)
        if self.hooks is not None:
            await self.hooks.on_transition(document, from_status, to_status, reason)

    async def end_connections(self, session_id: str, *, why: str) -> None:
        """Close the session's relayed connection wherever it is, and revoke its unused tokens."""
        try:
            await self.descriptors.revoke(session_id)
            if self.closer is not None:
                await self.closer.close(session_id, why=why)
        except (RedisError, LucidError) as exc:
            # The relay's sweep closes connections of final sessions; tokens expire on their own
            # and the relay refuses tokens of final sessions.
            logger.warning("Connections of %s not closed through Redis now: %s", session_id, exc)
