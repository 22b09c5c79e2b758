"""
The session timers and the Redis rebuild, run by background leader loops.

Reaper: terminates sessions whose idle, disconnect or maximum-duration deadline has passed
(deadlines live on the session documents, so a restart or a crashed replica loses none), and
``ready`` sessions no client connected within ``RDP_CONTROLLER_READY_TIMEOUT``.

Reconciler: rebuilds the Redis lease sets (per server and per user) from MongoDB: renews the
leases of every live session, drops those of final sessions at once and those of sessions that
do not exist (a replica died between its reservation and its insert) after a short grace, then
marks the sets trusted (see ``storage/redis.py``). When it finds them untrusted after Redis lost
its data, it first waits for creates that reserved before the loss to write their sessions, so
the rebuilt sets miss none of them; creates are refused (503) until the sets are marked again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import datetime, timedelta

from common.errors import Conflict, NotFound

from .background import RECOVERABLE
from .config import RdpControllerSettings
from .metrics import Metrics
from .models import LIVE_STATUSES, SessionStatus, TerminationReason
from .session_controller import SessionController
from .session_states import Decision, Document, ready_deadline
from .storage.mongo import MongoStore, new_id, utcnow
from .storage.redis import Lease, RedisCoordination

logger = logging.getLogger(__name__)

# The lease epoch of each Redis key prefix, kept in MongoDB: a missing epoch in Redis while
# MongoDB has one means Redis lost its data (restart, FLUSHALL), not a first start.
LEASE_EPOCHS = "rdp_lease_epochs"
# A create writes its session within one operation timeout of its reservation; twice that is the
# grace after which a lease without a session is an orphan, and the wait before a rebuild.
SETTLE_BACKEND_TIMEOUTS = 2.0
# The trust marker lapses this long before the leases the pass renewed.
TRUST_MARGIN_MS = 500
READY_SCAN_LIMIT = 500
REBUILD_LOCK = "lease-rebuild"


def due_reason(document: Document, now: datetime, ready_timeout: float = 0) -> TerminationReason | None:
    """Which timer has fired for this session, if any (maximum duration first)."""
    if SessionStatus(document["status"]) not in LIVE_STATUSES:
        return None
    deadline = ready_deadline(document, ready_timeout)
    if deadline is not None and deadline <= now and not _past(document, "max_deadline", now):
        return TerminationReason.READY_TIMEOUT
    for field, reason in (
        ("max_deadline", TerminationReason.MAX_DURATION),
        ("disconnect_deadline", TerminationReason.DISCONNECT_TIMEOUT),
        ("idle_deadline", TerminationReason.IDLE_TIMEOUT),
    ):
        if _past(document, field, now):
            return reason
    return None


def _past(document: Document, field: str, now: datetime) -> bool:
    deadline = document.get(field)
    return deadline is not None and deadline <= now


class SessionMaintenance:
    def __init__(
        self,
        sessions: SessionController,
        store: MongoStore,
        coordination: RedisCoordination,
        settings: RdpControllerSettings,
        metrics: Metrics,
    ):
        self.sessions = sessions
        self.store = store
        self.coordination = coordination
        self.settings = settings
        self.metrics = metrics
        # Leases seen without a session by the last pass; dropped when the next pass sees them so too.
        self._orphan_suspects: set[str] = set()

    @property
    def ready_timeout(self) -> float:
        return float(self.settings.RDP_CONTROLLER_READY_TIMEOUT)

    @property
    def settle_seconds(self) -> float:
        return SETTLE_BACKEND_TIMEOUTS * self.settings.BACKEND_TIMEOUT_SECONDS

    async def _due(self) -> list[Document]:
        now = utcnow()
        due = await self.store.sessions.due(now)
        if self.ready_timeout <= 0:
            return due
        # Ready sessions never connected: by creation time (a superset; due_reason decides).
        cutoff = now - timedelta(seconds=self.ready_timeout)
        ready = await self.store.sessions.ready_since(cutoff, READY_SCAN_LIMIT)
        seen = {document["session_id"] for document in due}
        return due + [document for document in ready if document["session_id"] not in seen]

    async def reap_once(self) -> int:
        """Terminate every due session; returns how many were terminated."""
        reaped = 0
        ready_timeout = self.ready_timeout
        for document in await self._due():
            fired: list[TerminationReason] = []

            def decide(current: Document, fired: list[TerminationReason] = fired) -> Decision:
                # The freshest copy: activity may have moved it, a client may have connected.
                reason = due_reason(current, utcnow(), ready_timeout)
                if reason is None:
                    return None
                fired.append(reason)
                return SessionStatus.TERMINATED, {
                    "terminated_at": utcnow(),
                    "termination_reason": reason.value,
                }

            try:
                result = await self.sessions.move(
                    document["session_id"], None, decide, reason=None, actor="reaper"
                )
            except (Conflict, NotFound) as exc:
                logger.info("Reaper skipped %s: %s", document["session_id"], exc)
                continue
            if fired and SessionStatus(result["status"]) is SessionStatus.TERMINATED:
                reaped += 1
                self.metrics.inc("reaper_actions", fired[-1].value)
                logger.info("Reaper terminated %s (%s)", document["session_id"], fired[-1].value)
        return reaped

    async def reconcile_once(self) -> dict[str, int]:
        """Rebuild the lease sets from MongoDB and mark them trusted; counts of what it did.

        ``dropped`` counts removed lease entries (a session has one per server and one per user),
        ``orphans`` those of them whose session does not exist.
        """
        try:
            return await self._reconcile()
        except BaseException:
            # Nothing is dropped as an orphan before a whole pass after this one has seen it so: a
            # create whose insert hung with MongoDB may still commit it.
            self._orphan_suspects.clear()
            raise

    async def _reconcile(self) -> dict[str, int]:
        coordination = self.coordination
        token = coordination.new_lock_token()
        # One pass at a time across replicas (the start-up pass and the leader loop's may overlap):
        # a pass that began while another was rebuilding would take the other's fresh epoch for a
        # loss and wait for nothing. Correctness does not rest on it: each pass checks its own key.
        lock_seconds = self.settle_seconds + 4 * self.settings.BACKEND_TIMEOUT_SECONDS + 1
        if not await coordination.hold_lock(REBUILD_LOCK, token, lock_seconds):
            return {"renewed": 0, "dropped": 0, "orphans": 0, "trusted": 0, "skipped": 1}
        try:
            return await self._rebuild(token)
        finally:
            with contextlib.suppress(*RECOVERABLE):
                await coordination.release_lock(REBUILD_LOCK, token)

    async def _rebuild(self, token: str) -> dict[str, int]:
        store, coordination, metrics = self.store, self.coordination, self.metrics
        start = await coordination.begin_rebuild(token)
        epoch = start.epoch
        if not start.trusted:
            epochs = store.database[LEASE_EPOCHS]
            record = await epochs.find_one({"_id": coordination.prefix})
            known = None if record is None else record.get("epoch")
            if known is not None and known != start.epoch:
                # Redis lost its data. A create that reserved before that writes its session within
                # its operation timeout: wait for it, so the sets rebuilt below count it.
                logger.warning(
                    "Redis lost the slot leases: creates are refused until they are rebuilt from MongoDB "
                    "(in %.1f s)",
                    self.settle_seconds,
                )
                await asyncio.sleep(self.settle_seconds)
            if known is None or known != start.epoch:
                epoch = new_id()
                await epochs.update_one(
                    {"_id": coordination.prefix}, {"$set": {"epoch": epoch, "at": utcnow()}}, upsert=True
                )
        live = await store.sessions.live(
            {"session_id": True, "user_id": True, "server_id": True, "_id": False}
        )
        leases = [Lease(d["server_id"], d["user_id"], d["session_id"]) for d in live if d.get("server_id")]
        sets = {key: await coordination.scored_members(key) for key in await coordination.scan_lease_keys()}
        expiry_ms = coordination.new_expiry_ms()
        # Renew the entries that are there. Re-create missing ones only for sessions still live now:
        # one the snapshot saw live may have ended and released its slot since, and a new session may
        # hold that slot already (re-creating the old entry would count one slot twice).
        present: list[tuple[str, str]] = []
        absent: list[tuple[str, str]] = []
        for lease in leases:
            for key in coordination.lease_keys(lease):
                (present if lease.session_id in sets.get(key, {}) else absent).append((key, lease.session_id))
        if absent:
            ended = await store.sessions.final_among(sorted({member for _key, member in absent}))
            absent = [(key, member) for key, member in absent if member not in ended]
        await coordination.set_expiry(present, expiry_ms, only_existing=True)
        await coordination.set_expiry(absent, expiry_ms, only_existing=False)
        live_ids = {lease.session_id for lease in leases}
        grace_ms = self.settle_seconds * 1000
        now_ms = time.time() * 1000
        dropped = orphans = 0
        suspects: set[str] = set()
        for key, scored in sets.items():
            unknown = [member for member in scored if member not in live_ids]
            final = await store.sessions.final_among(unknown)
            missing = [member for member in unknown if member not in final]
            suspects.update(missing)
            # A lease's score is its expiry: reserved at expiry - TTL unless a pass renewed it since.
            orphaned = [
                member
                for member in missing
                if member in self._orphan_suspects
                and now_ms - (scored[member] - coordination.lease_ttl_ms) >= grace_ms
            ]
            await coordination.drop_members(key, sorted(final) + orphaned)
            dropped += len(final) + len(orphaned)
            orphans += len(orphaned)
        self._orphan_suspects = suspects
        marked = await coordination.mark_trusted(
            token, epoch=epoch or new_id(), valid_until_ms=expiry_ms - TRUST_MARGIN_MS
        )
        if not start.trusted and marked:
            metrics.inc("lease_rebuilds")
            logger.warning(
                "Slot leases rebuilt from MongoDB (%d live sessions): creates accepted", len(leases)
            )
        if orphans:
            logger.info("Dropped %d lease entries of sessions that were never written", orphans)
        metrics.inc("reconciler_runs")
        return {
            "renewed": len(leases),
            "dropped": dropped,
            "orphans": orphans,
            "trusted": int(marked),
            "skipped": 0,
        }
