"""
Warm pool of dedicated RDP servers, provisioned ahead through rdp-server-manager.

``WarmPool`` is the ``DedicatedServers`` of ``SessionController``: a create that asks for
``session_config.dedicated_server: true`` gets a server of its own.

* Stock: with ``RDP_CONTROLLER_WARM_POOL_SIZE`` = N > 0 the leader loop (``refill_once``) keeps N
  servers provisioned: ``POST /servers`` on the server manager, then registered in the server
  pool (``ServerRegistry.register``, capacity 1, labels ``dedicated=true``, ``warm_pool=true``),
  where the health monitor probes them like any other server. Stock is counted in slots 0..N-1
  held by a unique index, so replicas refilling at the same time never provision more than N.
* Acquire: one ``find_one_and_update`` claims the oldest ready server (ready -> claimed), so two
  replicas never hand out the same one; a refill is kicked at once. With no stock the server is
  provisioned on demand, bounded by ``SERVICE_TIMEOUT_SECONDS``; when that fails the create gets
  ``NoCapacity`` (503) saying why.
* Release: when the session ends (outbox operation ``release_dedicated_server``), the server is
  removed from the pool and then deleted on the server manager (404 = gone already). The refill
  loop also releases stock left idle for ``RDP_CONTROLLER_WARM_POOL_IDLE_SECONDS`` (replaced by a
  fresh one), claimed servers whose session never started or has ended (after a grace period),
  and retries releases that failed.

Each server is an entry of ``WarmPoolRepository`` (``storage/warm_pool.py``: the documents and
their states). A stock server is provisioned with ``user_id="rdp-controller"`` and
``session_id=<entry_id>`` (the server manager's contract requires both; the real session is not
known yet).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Final

from pymongo.errors import PyMongoError

from common.backends import MongoDocument
from common.errors import LucidError, NoCapacity, NotFound

from ..config import RdpControllerSettings
from ..metrics import Metrics
from ..models import FINAL_STATUSES, ServerState
from ..server_models import ServerCreate
from ..server_registry import ServerRegistry
from ..storage.documents import new_id, utcnow
from ..storage.sessions import SessionRepository
from ..storage.warm_pool import EntryState, WarmPoolRepository
from .errors import ServiceError, ServiceNotFoundError
from .integration_manager import IntegrationManager
from .rdp_server_manager_client import RdpServerManagerClient

logger = logging.getLogger(__name__)

DEDICATED_LABELS: Final = {"dedicated": "true", "warm_pool": "true"}
STOCK_USER: Final = "rdp-controller"
RELEASE_RETRY: Final = timedelta(seconds=60)


class WarmPool:
    """Dedicated servers: a stock kept warm, claimed atomically, provisioned on demand when empty."""

    def __init__(
        self,
        entries: WarmPoolRepository,
        manager: IntegrationManager,
        servers: ServerRegistry,
        sessions: SessionRepository,
        settings: RdpControllerSettings,
        metrics: Metrics,
        *,
        clock: Callable[[], datetime] = utcnow,
    ):
        self.entries = entries
        self.manager = manager
        self.servers = servers
        self.sessions = sessions
        self.settings = settings
        self.metrics = metrics
        self.size = settings.RDP_CONTROLLER_WARM_POOL_SIZE
        self.idle = timedelta(seconds=settings.RDP_CONTROLLER_WARM_POOL_IDLE_SECONDS)
        # A call with every retry and backoff, plus margin: past this a provisioning is abandoned.
        self.provision_timeout = timedelta(
            seconds=settings.SERVICE_TIMEOUT_SECONDS * settings.SERVICE_RETRY_COUNT * 2 + 60
        )
        self.orphan_grace = timedelta(seconds=max(60.0, 2 * settings.SERVICE_TIMEOUT_SECONDS))
        self._clock = clock
        self._indexes_ready = False
        self._tasks: set[asyncio.Future[Any]] = set()
        self._refill_task: asyncio.Task[int] | None = None
        self._closed = False

    async def ensure_indexes(self) -> None:
        """Create the entries' indexes; idempotent. Called before the first refill as well."""
        await self.entries.ensure_indexes()
        self._indexes_ready = True

    def _client(self) -> RdpServerManagerClient:
        client = self.manager.rdp_server_manager
        if client is None:
            raise NoCapacity(
                "dedicated servers need rdp-server-manager: RDP_SERVER_MANAGER_URL is unset or invalid",
                code="DEDICATED_UNAVAILABLE",
            )
        return client

    # Acquire ------------------------------------------------------------------------------
    async def acquire(self, *, session_id: str, user_id: str, session_config: dict[str, Any]) -> str:
        """The pool ``server_id`` of a dedicated server reserved for this session (provisioned if need be)."""
        from_stock = await self.from_stock(session_id=session_id, user_id=user_id)
        return from_stock or await self._on_demand(session_id, user_id, session_config)

    async def from_stock(self, *, session_id: str, user_id: str) -> str | None:
        """A warm server reserved for this session at once, or None: one must be provisioned.

        Raises ``DEDICATED_UNAVAILABLE`` when the stock is empty and nothing can provision one.
        """
        for _ in range(self.size + 1):
            entry = await self.entries.claim_ready(session_id=session_id, user_id=user_id, now=self._clock())
            if entry is None:
                break
            if await self._usable(entry):
                self.metrics.inc("warm_pool_acquired", "stock")
                self.kick_refill()
                return str(entry["server_id"])
            self._spawn(self.release_entry(entry, reason="unusable"))
        self.kick_refill()
        self._client()  # raises DEDICATED_UNAVAILABLE when rdp-server-manager cannot be called
        return None

    async def _usable(self, entry: MongoDocument) -> bool:
        try:
            server = await self.servers.get_document(entry["server_id"])
        except NotFound:
            return False
        if server["state"] != ServerState.AVAILABLE.value:
            logger.warning("Warm server %s is %s: releasing it", entry["server_id"], server["state"])
            return False
        return True

    async def _on_demand(self, session_id: str, user_id: str, session_config: dict[str, Any]) -> str:
        client = self._client()
        entry_id = new_id()
        await self.entries.add_on_demand(entry_id, session_id=session_id, user_id=user_id, now=self._clock())
        display = {
            "resolution": session_config.get("display_resolution"),
            "color_depth": session_config.get("color_depth"),
        }
        work = asyncio.ensure_future(
            self._provision(client, entry_id, user_id=user_id, session_id=session_id, display_config=display)
        )
        limit = self.settings.SERVICE_TIMEOUT_SECONDS
        done, _ = await asyncio.wait({work}, timeout=limit)
        if not done:
            # Not cancelled: when it completes, the server is claimed for a session that does not
            # exist, and the refill loop releases it after the orphan grace period.
            self._track(work)
            self.metrics.inc("warm_pool_on_demand_failures")
            raise NoCapacity(
                f"no warm dedicated server was free and provisioning one took longer than {limit:g}s",
                code="DEDICATED_NO_CAPACITY",
                details={"warm_pool_size": self.size},
            )
        try:
            entry = work.result()
        except (ServiceError, LucidError, PyMongoError) as exc:
            self.metrics.inc("warm_pool_on_demand_failures")
            raise NoCapacity(
                f"no warm dedicated server was free and provisioning one failed: {exc}",
                code="DEDICATED_NO_CAPACITY",
                details={"warm_pool_size": self.size},
            ) from exc
        self.metrics.inc("warm_pool_acquired", "on_demand")
        return str(entry["server_id"])

    # Provisioning -------------------------------------------------------------------------
    async def _provision(
        self,
        client: RdpServerManagerClient,
        entry_id: str,
        *,
        user_id: str,
        session_id: str,
        display_config: dict[str, Any] | None,
    ) -> MongoDocument:
        """Create on the server manager and register in the pool; the entry ends ready/claimed or failed."""
        kind = "stock" if display_config is None else "on_demand"
        try:
            created = await client.create_server(
                user_id=user_id,
                session_id=session_id,
                display_config=display_config,
                idempotency_key=f"warm-pool:{entry_id}:provision",
            )
        except ServiceError as exc:
            await self._mark_failed(entry_id, exc)
            raise
        manager_id = str(created["server_id"])
        await self.entries.update(entry_id, {"manager_server_id": manager_id}, now=self._clock())
        try:
            address, port = client.endpoint(created)
            server = await self.servers.register(
                ServerCreate(
                    name=f"dedicated-{entry_id[:8]}",
                    address=address,
                    port=port,
                    capacity=1,
                    labels=dict(DEDICATED_LABELS),
                ),
                source="warm_pool",
            )
        except (ValueError, LucidError) as exc:  # pydantic's ValidationError is a ValueError
            await self._mark_failed(entry_id, exc)
            try:
                await client.delete_server(manager_id, idempotency_key=f"warm-pool:{entry_id}:release")
            except ServiceError as cleanup:
                logger.warning(
                    "rdp-server-manager server %s (entry %s) is left behind: %s",
                    manager_id,
                    entry_id,
                    cleanup,
                )
            raise ServiceError(
                f"rdp-server-manager server {manager_id} could not join the pool: {exc}"
            ) from exc
        now = self._clock()
        state = EntryState.READY if kind == "stock" else EntryState.CLAIMED
        fields: dict[str, Any] = {
            "state": state.value,
            "server_id": server["server_id"],
            "address": address,
            "port": port,
            "ready_at": now,
        }
        if state is EntryState.CLAIMED:
            fields["claimed_at"] = now
        entry = await self.entries.update(entry_id, fields, now=self._clock())
        self.metrics.inc("warm_pool_provisioned", kind)
        logger.info("Dedicated server %s (%s:%s) provisioned (%s)", server["server_id"], address, port, kind)
        return entry or {"entry_id": entry_id, **fields}

    async def _mark_failed(self, entry_id: str, exc: BaseException) -> None:
        await self.entries.mark_failed(entry_id, f"{type(exc).__name__}: {exc}"[:500], now=self._clock())

    # Refill (leader loop) -----------------------------------------------------------------
    def kick_refill(self) -> None:
        """Refill in the background now (after a claim); concurrent refills are safe (slots)."""
        if self._closed or self.size == 0:
            return
        if self._refill_task is not None and not self._refill_task.done():
            return
        self._refill_task = asyncio.create_task(self._kicked_refill(), name="warm-pool-refill")
        self._track(self._refill_task)

    async def _kicked_refill(self) -> int:
        try:
            return await self.refill_once()
        except (PyMongoError, LucidError) as exc:
            logger.warning("Warm pool refill after a claim failed (the loop will retry): %s", exc)
            return 0

    async def refill_once(self) -> int:
        """Sweep (idle, orphaned, stuck entries), then provision the missing stock; returns how many."""
        if not self._indexes_ready:
            await self.ensure_indexes()
        await self.sweep()
        if self.size == 0 or self.manager.rdp_server_manager is None:
            return 0
        client = self._client()
        now = self._clock()
        reserved: list[str] = []
        for slot in range(self.size):
            entry_id = new_id()
            # False: the slot holds stock (ready or being provisioned).
            if await self.entries.reserve_slot(entry_id, slot, now=now):
                reserved.append(entry_id)
        if not reserved:
            return 0
        results = await asyncio.gather(
            *(
                self._provision(
                    client, entry_id, user_id=STOCK_USER, session_id=entry_id, display_config=None
                )
                for entry_id in reserved
            ),
            return_exceptions=True,
        )
        provisioned = 0
        for entry_id, result in zip(reserved, results, strict=True):
            if isinstance(result, ServiceError | LucidError | PyMongoError):
                self.metrics.inc("warm_pool_refill_failures")
                logger.warning("Warm pool: provisioning %s failed: %s", entry_id, result)
            elif isinstance(result, BaseException):
                raise result
            else:
                provisioned += 1
        return provisioned

    async def sweep(self) -> None:
        now = self._clock()
        idle_stock = await self.entries.idle_stock(ready_before=now - self.idle, size=self.size)
        stale: list[tuple[MongoDocument, str]] = [(entry, "idle") for entry in idle_stock]
        for entry in await self.entries.claimed_before(now - self.orphan_grace):
            session = await self.sessions.get(entry.get("session_id") or "")
            if session is None or session["status"] in {s.value for s in FINAL_STATUSES}:
                stale.append((entry, "orphaned"))
        releasing = await self.entries.releasing_since(now - RELEASE_RETRY)
        stale += [(entry, entry.get("release_reason") or "retry") for entry in releasing]
        await self.entries.abandon_provisioning(created_before=now - self.provision_timeout)
        for entry, reason in stale:
            try:
                await self.release_entry(entry, reason=reason)
            except ServiceError as exc:
                logger.warning("Warm pool: releasing %s failed (retried later): %s", entry["entry_id"], exc)

    # Release ------------------------------------------------------------------------------
    async def release_entry(self, entry: MongoDocument, *, reason: str) -> None:
        """Remove the server from the pool, then delete it on the server manager; idempotent."""
        entry_id = entry["entry_id"]
        await self.entries.mark_releasing(entry_id, reason, now=self._clock())
        if entry.get("server_id"):
            with contextlib.suppress(NotFound):  # removed already
                await self.servers.remove(entry["server_id"], force=True)
        if entry.get("manager_server_id"):
            with contextlib.suppress(ServiceNotFoundError):  # deleted already
                await self._client().delete_server(
                    entry["manager_server_id"], idempotency_key=f"warm-pool:{entry_id}:release"
                )
        now = self._clock()
        await self.entries.update(entry_id, {"state": EntryState.RELEASED.value, "released_at": now}, now=now)
        self.metrics.inc("warm_pool_released", reason)
        logger.info("Dedicated server %s released (%s)", entry.get("server_id"), reason)

    async def release_for_session(self, payload: dict[str, Any], delivery_id: str) -> str | None:
        """Outbox handler of ``release_dedicated_server``: the session on this server has ended."""
        entry = await self.entries.unreleased_of_server(payload["server_id"])
        if entry is None:
            return "not a warm-pool server, or released already"
        await self.release_entry(entry, reason="session_ended")
        return None

    # Observability and shutdown -----------------------------------------------------------
    async def snapshot(self) -> dict[str, int]:
        """Target size and entries by state (``stock`` = ready servers)."""
        counts = await self.entries.counts()
        return {
            "size": self.size,
            "stock": counts[EntryState.READY.value],
            "provisioning": counts[EntryState.PROVISIONING.value],
            "claimed": counts[EntryState.CLAIMED.value],
            "releasing": counts[EntryState.RELEASING.value],
            "failed": counts[EntryState.FAILED.value],
        }

    def _spawn(self, work: Any) -> None:
        self._track(asyncio.ensure_future(work))

    def _track(self, task: asyncio.Future[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if isinstance(exc, ServiceError | LucidError | PyMongoError):
            logger.warning("Warm pool background work failed: %s", exc)
        elif exc is not None:
            logger.error(
                "Warm pool background work failed unexpectedly", exc_info=(type(exc), exc, exc.__traceback__)
            )

    async def close(self) -> None:
        self._closed = True
        pending = [task for task in (*self._tasks, self._refill_task) if task is not None and not task.done()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self._tasks.clear()
