"""
SessionCreation: new sessions, Idempotency-Key replays, reconnect offers and dedicated servers.

A create claims its ``Idempotency-Key`` first (``IdempotencyRepository``), so the key returns the
first answer's session whatever path that took, on any replica. A user with a suspended session
of the same shape gets it back. Otherwise a slot is placed and reserved, and the session is
committed with the record of its first transition (settled by ``TransitionEffects``). A session
on a dedicated server that must be provisioned is ``creating`` (202) until its server is up, then
``ready``, or ``error`` with why, releasing what it held.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from pymongo.errors import DuplicateKeyError, PyMongoError, ServerSelectionTimeoutError
from redis.exceptions import RedisError

from common.errors import Conflict, LucidError, NoCapacity, NotFound, ValidationFailed

from .config import RdpControllerSettings
from .metrics import Metrics
from .models import CreateSessionRequest, SessionConfig, SessionStatus
from .server_registry import ServerRegistry
from .session_controller import SessionController
from .session_effects import TransitionEffects, transition_record
from .session_states import Decision, Document, compute_deadlines
from .storage.mongo import MongoStore, new_id, utcnow
from .storage.redis import Lease

logger = logging.getLogger(__name__)

S = SessionStatus
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


@dataclass(frozen=True, slots=True)
class Draft:
    """A session a create is about to commit: whose, with what, and under which Idempotency-Key."""

    session_id: str
    user_id: str
    config: Document
    key: str | None
    fingerprint: str
    actor: str

    def document(self, status: SessionStatus, server_id: str | None, reason: str) -> Document:
        """Its document, deadlines included, with the record of its first transition."""
        now = utcnow()
        document: Document = {
            "session_id": self.session_id,
            "user_id": self.user_id,
            "server_id": server_id,
            "connection_id": new_id(),
            "status": status.value,
            "session_config": self.config,
            "created_at": now,
            "updated_at": now,
            "max_deadline": now + timedelta(seconds=self.config["session_timeout"]),
            "termination_reason": None,
            "version": 1,
            "created_by": self.actor,
            "idempotency_key": self.key,
            "request_fingerprint": self.fingerprint,
        }
        document.update(compute_deadlines(document))
        document["pending_transitions"] = [transition_record(document, None, status, reason, self.actor)]
        return document


class SessionCreation:
    def __init__(
        self,
        sessions: SessionController,
        store: MongoStore,
        servers: ServerRegistry,
        effects: TransitionEffects,
        settings: RdpControllerSettings,
        metrics: Metrics,
        dedicated: DedicatedServers | None = None,
    ):
        self.sessions = sessions
        self.store = store
        self.servers = servers
        self.effects = effects
        self.settings = settings
        self.metrics = metrics
        self.dedicated = dedicated
        self._provisioning: set[asyncio.Task[None]] = set()

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
            await self._after_failed_create(user_id, idempotency_key)
            raise
        await claims.complete(user_id, idempotency_key, document["session_id"], reconnected=not created)
        return document, created

    async def _after_failed_create(self, user_id: str, key: str) -> None:
        """The first request with the key failed: a session it wrote anyway (its effects are settled
        later) keeps the key, so a replay returns it; otherwise the key is free for a retry."""
        try:
            written = await self.store.sessions.by_idempotency_key(user_id, key)
            if written is not None:
                await self.store.idempotency.complete(user_id, key, written["session_id"], reconnected=False)
            else:
                await self.store.idempotency.release(user_id, key)
        except PyMongoError as exc:  # a claim left pending is taken over once it is stale
            logger.warning("Idempotency-Key claim of %s not settled: %s", user_id, exc)

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
        session = await self.sessions.get(claim["session_id"])
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
        draft = Draft(new_id(), user_id, config, key, fingerprint, actor)
        session_id, started = draft.session_id, time.perf_counter()
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
                    return await self._create_provisioned(draft, request.session_config.labels)
            server = await self.servers.place(
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
        document = draft.document(S.READY, server["server_id"], "slot_reserved")
        try:
            await self.store.sessions.insert(document)
        except DuplicateKeyError:
            await self.servers.release(lease)
            raise
        except ServerSelectionTimeoutError:
            await self.servers.release(lease)  # no server was reached: nothing was written
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

    async def _create_provisioned(self, draft: Draft, labels: dict[str, str]) -> tuple[Document, bool]:
        """A session that is ``creating`` while its dedicated server is provisioned in the background."""
        document = draft.document(S.CREATING, None, "provisioning")
        await self.store.sessions.insert(document)
        document.pop("_id", None)
        self.metrics.inc("sessions_created")
        await self.effects.settle(document)
        task = asyncio.create_task(self._provision(draft, labels))
        self._provisioning.add(task)
        task.add_done_callback(self._provisioning.discard)
        return document, True

    async def _provision(self, draft: Draft, labels: dict[str, str]) -> None:
        """creating -> ready on the provisioned server, or -> error (with why) releasing what it held."""
        assert self.dedicated is not None
        session_id, user_id, config = draft.session_id, draft.user_id, draft.config
        server_id: str | None = None
        timeout = self.settings.RDP_CONTROLLER_PROVISION_TIMEOUT
        try:
            async with asyncio.timeout(timeout):
                server_id = await self.dedicated.acquire(
                    session_id=session_id, user_id=user_id, session_config=config
                )
                await self.servers.place(
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
            document = await self.sessions.move(
                session_id, None, decide, reason="provisioned", actor="provisioner"
            )
        except (LucidError, PyMongoError) as exc:
            logger.warning("Provisioned session %s not made ready now: %s", session_id, exc)
            return
        if document["status"] != S.READY.value:  # it failed meanwhile (timed out): free the slot
            await self.servers.release(Lease(server_id or "", user_id, session_id))

    async def _provisioning_failed(self, session_id: str, server_id: str | None, why: str) -> None:
        def decide(current: Document) -> Decision:
            if current["status"] != S.CREATING.value:
                return None
            # The server, if one was handed out, goes back through the release_dedicated_server delivery.
            return S.ERROR, {"server_id": server_id, "termination_reason": "error", "error_detail": why[:300]}

        logger.warning("Provisioning of session %s failed: %s", session_id, why)
        try:
            await self.sessions.move(
                session_id, None, decide, reason="provisioning_failed", actor="provisioner"
            )
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
                    return await self.sessions.reconnect(candidate["session_id"], owner=user_id, actor=actor)
                except (Conflict, NotFound):
                    continue  # it moved meanwhile (terminated by the reaper): try the next one
        return None
