"""
Pool operations that touch both servers and their sessions: removal with force, and drain
deadlines (a draining server's remaining sessions are terminated with reason
``server_removed`` when its deadline passes; a drained server that is also disabled keeps its
deadline), and terminating every live session of one server (the health monitor's grace).
"""

from __future__ import annotations

import logging

from common.errors import Conflict, NotFound

from .models import ServerState, TerminationReason
from .server_registry import ServerRegistry
from .session_controller import SessionController
from .storage.mongo import MongoStore, utcnow

logger = logging.getLogger(__name__)


class ServerPool:
    def __init__(self, servers: ServerRegistry, sessions: SessionController, store: MongoStore):
        self.servers = servers
        self.sessions = sessions
        self.store = store

    async def _terminate_all(
        self, session_ids: list[str], reason: TerminationReason, actor: str
    ) -> list[str]:
        done = []
        for session_id in session_ids:
            try:
                await self.sessions.terminate(session_id, owner=None, reason=reason, actor=actor)
                done.append(session_id)
            except (Conflict, NotFound) as exc:
                logger.info("Session %s not terminated: %s", session_id, exc)
        return done

    async def terminate_sessions(self, server_id: str, reason: TerminationReason, *, actor: str) -> list[str]:
        """Terminate every live session of a server; returns the ids terminated."""
        live = [s["session_id"] for s in await self.store.sessions.live_on_server(server_id)]
        return await self._terminate_all(live, reason, actor)

    async def remove_server(self, server_id: str, *, force: bool) -> list[str]:
        """Remove a server; with ``force`` its live sessions are terminated (``server_removed``)."""
        live = await self.servers.remove(server_id, force=force)
        return await self._terminate_all(live, TerminationReason.SERVER_REMOVED, "operator")

    async def enforce_drain_deadlines(self) -> int:
        """Terminate the sessions of draining servers whose deadline has passed."""
        terminated = 0
        now = utcnow()
        for server in await self.store.servers.all():
            deadline = server.get("drain_deadline")
            draining = server.get("draining") or server["state"] == ServerState.DRAINING.value
            if not draining or deadline is None or deadline > now:
                continue
            done = await self.terminate_sessions(
                server["server_id"], TerminationReason.SERVER_REMOVED, actor="drain"
            )
            terminated += len(done)
        return terminated
