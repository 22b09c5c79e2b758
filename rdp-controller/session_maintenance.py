"""
The session timers and the Redis rebuild, run by background leader loops.

Reaper: terminates sessions whose idle, disconnect or maximum-duration deadline has passed
(deadlines live on the session documents, so a restart or a crashed replica loses none).
Reconciler: renews the Redis leases and per-user counts of every live session from MongoDB
and drops leases whose session is final; after a Redis flush the limits are right again
within one period.
"""

from __future__ import annotations

import logging
from datetime import datetime

from common.errors import Conflict, NotFound

from .models import LIVE_STATUSES, SessionStatus, TerminationReason
from .session_controller import SessionController
from .session_states import Decision, Document
from .storage.mongo import utcnow
from .storage.redis import Lease

logger = logging.getLogger(__name__)


def due_reason(document: Document, now: datetime) -> TerminationReason | None:
    """Which timer has fired for this session, if any (maximum duration first)."""
    if SessionStatus(document["status"]) not in LIVE_STATUSES:
        return None
    for field, reason in (
        ("max_deadline", TerminationReason.MAX_DURATION),
        ("disconnect_deadline", TerminationReason.DISCONNECT_TIMEOUT),
        ("idle_deadline", TerminationReason.IDLE_TIMEOUT),
    ):
        deadline = document.get(field)
        if deadline is not None and deadline <= now:
            return reason
    return None


class SessionMaintenance:
    def __init__(self, sessions: SessionController):
        self.sessions = sessions

    async def reap_once(self) -> int:
        """Terminate every due session; returns how many were terminated."""
        reaped = 0
        for document in await self.sessions.store.sessions.due(utcnow()):
            fired: list[TerminationReason] = []

            def decide(current: Document, fired: list[TerminationReason] = fired) -> Decision:
                reason = due_reason(current, utcnow())  # the freshest copy: activity may have moved it
                if reason is None:
                    return None
                fired.append(reason)
                return SessionStatus.TERMINATED, {
                    "terminated_at": utcnow(),
                    "termination_reason": reason.value,
                }

            try:
                result = await self.sessions._apply(
                    document["session_id"], None, decide, reason=None, actor="reaper"
                )
            except (Conflict, NotFound) as exc:
                logger.info("Reaper skipped %s: %s", document["session_id"], exc)
                continue
            if fired and SessionStatus(result["status"]) is SessionStatus.TERMINATED:
                reaped += 1
                self.sessions.metrics.inc("reaper_actions", fired[-1].value)
                logger.info("Reaper terminated %s (%s)", document["session_id"], fired[-1].value)
        return reaped

    async def reconcile_once(self) -> dict[str, int]:
        """Rebuild leases from MongoDB; returns counts of renewed and dropped leases."""
        store, coordination = self.sessions.store, self.sessions.coordination
        live = await store.sessions.live(
            {"session_id": True, "user_id": True, "server_id": True, "_id": False}
        )
        leases = [Lease(d["server_id"], d["user_id"], d["session_id"]) for d in live if d.get("server_id")]
        await coordination.renew(leases)
        dropped = 0
        for key in await coordination.scan_lease_keys():
            members = await coordination.members(key)
            final = sorted(await store.sessions.final_among(members))
            await coordination.drop_members(key, final)
            dropped += len(final)
        self.sessions.metrics.inc("reconciler_runs")
        return {"renewed": len(leases), "dropped": dropped}
