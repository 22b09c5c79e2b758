"""
SessionWire: a session follows its client connection, as the RDP relay sees it.

The relay tells it when it has connected a client to the session's host (``active``, a new
connection record with the client's address), when the connection closed (``suspended``, unless
a newer connection took the session over), and what the client sent (input resets the idle timer;
a flush period without input makes the session ``idle``).
"""

from __future__ import annotations

from datetime import datetime

from common.errors import Conflict, NotFound

from .models import SessionStatus
from .session_controller import SessionController
from .session_states import Decision, Document, invalid_transition
from .storage.mongo import MongoStore, new_id, utcnow

S = SessionStatus


class SessionWire:
    def __init__(self, sessions: SessionController, store: MongoStore):
        self.sessions = sessions
        self.store = store

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

        document = await self.sessions.move(
            session_id, None, decide, reason="client_connected", actor=f"relay:{relay_id}"
        )
        await self.sessions.open_connection(document, client_address, relay_id=relay_id)
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
            return await self.sessions.move(
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

        document = await self.sessions.move(
            session_id, None, decide, reason="activity", actor=f"relay:{relay_id}"
        )
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

        document = await self.sessions.move(
            session_id, None, decide, reason="no_input", actor=f"relay:{relay_id}"
        )
        await self.store.connections.record_activity(connection_id, None, bytes_in, bytes_out)
        return document
