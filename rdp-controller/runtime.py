"""
Runtime: every resource of one running service, built and closed by the lifespan in ``main.py``.

The template's "global instances" live here, on ``app.state.runtime``; handlers reach them
through the small ``Depends`` functions in ``routes/deps.py``. Nothing connects at import time.
A backend that is down at start-up does not stop the service: clients connect lazily, and the
bootstrap loop creates the indexes and syncs the static servers once MongoDB answers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

from pymongo import AsyncMongoClient
from redis.asyncio import Redis

from common.backends import MongoDocument, create_mongo_client, create_redis_client
from security.connection_tokens import ConnectionTokenStore
from security.jwt_auth import VerifiedTokens
from security.ratelimit import RateLimiter

from .background import RECOVERABLE, Background
from .config import RdpControllerSettings
from .connection_manager import ConnectionManager
from .descriptors import DescriptorIssuer
from .health import HealthChecks, HealthReport
from .health_monitor import HealthMonitor
from .insights import Insights
from .integration import build_integrations
from .metrics import Metrics
from .relay import RdpRelay
from .relay_handshake import RelayHandshake
from .schema_validator import SchemaValidator
from .server_pool import ServerPool
from .server_registry import ServerRegistry
from .session_controller import SessionController
from .session_creation import SessionCreation
from .session_effects import TransitionEffects
from .session_maintenance import SessionMaintenance
from .session_wire import SessionWire
from .storage.mongo import MongoStore
from .storage.redis import RedisCoordination

logger = logging.getLogger(__name__)

BOOTSTRAP_RETRY_SECONDS = 2.0
# Transitions still pending after this many backend timeouts were interrupted: a background pass settles them.
SETTLE_GRACE_BACKEND_TIMEOUTS = 3


class Runtime:
    def __init__(self, settings: RdpControllerSettings):
        self.settings = settings
        timeout = settings.BACKEND_TIMEOUT_SECONDS
        self.mongo: AsyncMongoClient[MongoDocument] = create_mongo_client(
            settings.MONGODB_URL, timeout_seconds=timeout, app_name="rdp-controller"
        )
        self.redis: Redis = create_redis_client(settings.REDIS_URL, timeout_seconds=timeout)
        self.store = MongoStore(
            self.mongo[settings.MONGODB_DATABASE],
            event_retention_days=settings.RDP_CONTROLLER_EVENT_RETENTION_DAYS,
        )
        self.coordination = RedisCoordination(
            self.redis,
            settings.RDP_CONTROLLER_REDIS_PREFIX,
            lease_ttl_seconds=settings.RDP_CONTROLLER_LEASE_TTL,
        )
        schema_dir = Path(settings.RDP_CONTROLLER_SCHEMA_DIR) if settings.RDP_CONTROLLER_SCHEMA_DIR else None
        self.schemas = SchemaValidator(schema_dir, check_responses=settings.RDP_CONTROLLER_VALIDATE_RESPONSES)
        self.metrics = Metrics()
        self.schemas.on_failure = lambda: self.metrics.inc("schema_validation_failures")
        prefix = settings.RDP_CONTROLLER_REDIS_PREFIX
        self.verified_tokens = VerifiedTokens(
            secret=settings.JWT_SECRET_KEY, audience=settings.JWT_AUDIENCE, leeway=settings.JWT_LEEWAY_SECONDS
        )
        self.rate_limiter = RateLimiter(
            self.redis, settings.RDP_CONTROLLER_RATE_LIMIT_PER_MINUTE, key_prefix=f"{prefix}:rate:"
        )
        self.connection_tokens = ConnectionTokenStore(self.redis, key_prefix=f"{prefix}:conntoken:")
        self.servers = ServerRegistry(self.store, self.coordination, settings, self.metrics)
        self.descriptors = DescriptorIssuer(
            self.connection_tokens,
            self.servers,
            token_ttl=settings.RDP_CONTROLLER_CONNECTION_TOKEN_TTL,
            relay_address=settings.relay_public_address if settings.relay_enabled else None,
        )
        self.connection_manager = ConnectionManager(self.redis, channel=f"{prefix}:relay:close")
        self.background = Background(self.coordination)
        self.mongo_ready = asyncio.Event()
        self.integration = build_integrations(
            settings, self.store, self.servers, self.background, self.mongo_ready, self.metrics
        )
        self.health = HealthChecks(
            self.mongo,
            self.redis,
            self.integration.manager,
            interval=settings.RDP_CONTROLLER_HEALTH_INTERVAL,
            backend_timeout=settings.BACKEND_TIMEOUT_SECONDS,
            after_round=self.integration.record_circuits,
        )
        self.effects = TransitionEffects(
            self.store,
            self.coordination,
            self.servers,
            self.descriptors,
            self.metrics,
            grace_seconds=SETTLE_GRACE_BACKEND_TIMEOUTS * settings.BACKEND_TIMEOUT_SECONDS,
            hooks=self.integration.hooks,
            closer=self.connection_manager if settings.relay_enabled else None,
        )
        self.sessions = SessionController(
            self.store,
            self.coordination,
            self.servers,
            self.descriptors,
            settings,
            self.metrics,
            self.effects,
        )
        self.creation = SessionCreation(
            self.sessions,
            self.store,
            self.servers,
            self.effects,
            settings,
            self.metrics,
            dedicated=self.integration.warm_pool,
        )
        wire = SessionWire(self.sessions, self.store)
        handshake = RelayHandshake(
            settings,
            self.sessions,
            wire,
            self.connection_tokens,
            self.connection_manager,
            self.redis,
            self.metrics,
            relay_id=f"{socket.gethostname()}:{os.getpid()}",
        )
        self.relay = RdpRelay(settings, self.sessions, wire, self.connection_manager, self.metrics, handshake)
        self.health_report = HealthReport(
            self.health,
            settings,
            mongo_ready=self.mongo_ready,
            loops=self.background.summary,
            relay=self.relay.health,
            schemas=self.schemas.health,
        )
        self.pool = ServerPool(self.servers, self.sessions, self.store)
        self.health_monitor = HealthMonitor(
            self.servers,
            self.pool,
            self.store,
            settings,
            self.metrics,
            unhealthy_grace_seconds=settings.RDP_CONTROLLER_UNHEALTHY_GRACE_SECONDS or None,
        )
        self.insights = Insights(
            self.store,
            self.sessions,
            self.servers,
            self.metrics,
            self.schemas,
            peer_timeout=settings.BACKEND_TIMEOUT_SECONDS,
            relay=self.relay,
            integration=self.integration,
        )
        self.maintenance = SessionMaintenance(
            self.sessions, self.store, self.coordination, settings, self.metrics
        )

    async def start(self) -> None:
        settings = self.settings
        self.background.spawn("bootstrap", self._bootstrap, interval=BOOTSTRAP_RETRY_SECONDS, leader=False)
        # Every process checks its backends and peers on a period; /health reports the last round.
        self.background.spawn(
            "health", self.health.check_once, interval=settings.RDP_CONTROLLER_HEALTH_INTERVAL, leader=False
        )
        # Leader loops: one replica at a time runs each, once MongoDB is set up.
        leader_loops: list[tuple[str, Callable[[], Awaitable[object]], float]] = [
            ("reaper", self.maintenance.reap_once, settings.RDP_CONTROLLER_REAPER_INTERVAL),
            ("settle", self.effects.settle_interrupted, settings.RDP_CONTROLLER_REAPER_INTERVAL),
            ("provisioning", self.creation.expire_provisioning, settings.RDP_CONTROLLER_REAPER_INTERVAL),
            ("reconciler", self.maintenance.reconcile_once, settings.RDP_CONTROLLER_RECONCILE_INTERVAL),
            ("drain", self.pool.enforce_drain_deadlines, settings.RDP_CONTROLLER_REAPER_INTERVAL),
            ("health_monitor", self.health_monitor.run_once, settings.RDP_CONTROLLER_PROBE_INTERVAL),
        ]
        for name, body, interval in leader_loops:
            self.background.spawn(name, body, interval=interval, leader=True, wait_for=self.mongo_ready)
        if settings.relay_enabled:
            await self.relay.start()
            relay_loops: list[tuple[str, Callable[[], Awaitable[object]], float]] = [
                ("relay_close_listener", self.connection_manager.listen_once, 0.0),
                ("relay_activity", self.relay.flush_activity, settings.RDP_CONTROLLER_ACTIVITY_FLUSH_SECONDS),
                ("relay_sweep", self.relay.sweep_final, settings.RDP_CONTROLLER_REAPER_INTERVAL),
            ]
            for name, body, interval in relay_loops:
                needs_mongo = self.mongo_ready if name != "relay_close_listener" else None
                self.background.spawn(name, body, interval=interval, leader=False, wait_for=needs_mongo)
        await self.integration.start()

    async def _bootstrap(self) -> None:
        """Index creation and static servers, retried until MongoDB answers, then idle."""
        if self.mongo_ready.is_set():
            return
        await self.store.ensure_indexes()
        await self.integration.ensure_indexes()
        await self.servers.sync_static_servers()
        self.mongo_ready.set()
        logger.info("MongoDB ready: indexes created, static servers synced")
        try:
            await self.maintenance.reconcile_once()
        except RECOVERABLE as exc:
            logger.warning("First reconcile deferred to the reconciler loop: %s", exc)

    async def stop(self) -> None:
        await self.relay.stop()
        await self.creation.stop()
        await self.background.stop()
        await self.integration.close()
        await self.redis.aclose()
        await self.mongo.close()
