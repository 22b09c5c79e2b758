"""
``/health`` answered from what a background loop last saw, never from a call per request.

The ``health`` loop of each process pings MongoDB and Redis and asks every configured peer for
its health, all at once and each bounded in time, every ``RDP_CONTROLLER_HEALTH_INTERVAL``
seconds. ``/health`` reads the last results and says how old each one is (``age_seconds``), so
a scrape storm or a load balancer polling every replica costs MongoDB, Redis and the peers
nothing. A request that comes before the first round has finished waits for that round (one
round for every waiting request). A result older than ``STALE_ROUNDS`` rounds means the loop is
stuck: it counts as down (``error`` says so) rather than as the last good answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo import AsyncMongoClient
from redis.asyncio import Redis

from common.backends import BackendStatus, MongoDocument, ping_mongo, ping_redis

from . import __version__
from .config import RdpControllerSettings
from .integration.integration_manager import HEALTH_TIMEOUT_SECONDS, IntegrationManager

# A result this many rounds old (a round: the interval plus the longest check) is not trusted.
STALE_ROUNDS = 3
SERVICE_NAME = "rdp-controller"


@dataclass(frozen=True)
class Checked:
    """One round of checks and when it ended (``time.monotonic()``)."""

    mongodb: BackendStatus
    redis: BackendStatus
    integrations: dict[str, dict[str, Any]]
    at: float


class HealthChecks:
    def __init__(
        self,
        mongo: AsyncMongoClient[MongoDocument],
        redis: Redis,
        integrations: IntegrationManager,
        *,
        interval: float,
        backend_timeout: float,
        after_round: Callable[[], None] | None = None,
    ):
        self.mongo = mongo
        self.redis = redis
        self.integrations = integrations
        self.interval = interval
        longest_check = max(backend_timeout, HEALTH_TIMEOUT_SECONDS + 1.0)
        self.first_wait = longest_check + 1.0
        self.stale_after = STALE_ROUNDS * (interval + longest_check)
        self._latest: Checked | None = None
        self._have_result = asyncio.Event()
        self._rounds = 0
        self.after_round = after_round  # the breaker states into the metrics (several workers)

    @property
    def rounds(self) -> int:
        """Rounds of checks done so far (a test counts the backend calls through this)."""
        return self._rounds

    async def check_once(self) -> None:
        """One round: MongoDB, Redis and every peer, concurrently (the ``health`` loop's body)."""
        mongodb, redis, integrations = await asyncio.gather(
            ping_mongo(self.mongo), ping_redis(self.redis), self.integrations.health_check_all()
        )
        self._latest = Checked(mongodb, redis, integrations, time.monotonic())
        self._rounds += 1
        self._have_result.set()
        if self.after_round is not None:
            self.after_round()

    async def latest(self) -> Checked:
        """The last round's results; before the first one, waits for it (or runs one if no loop does)."""
        if self._latest is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._have_result.wait(), self.first_wait)
            if self._latest is None:
                await self.check_once()
        assert self._latest is not None
        return self._latest

    def backend(self, status: BackendStatus, age: float) -> dict[str, Any]:
        """A backend's health-schema object with the age of its result; a stale result is down."""
        body = status.to_dict()
        if age > self.stale_after:
            body = {"status": "down", "error": f"no health check result for {age:.0f} s (health loop stuck)"}
        body["age_seconds"] = round(age, 3)
        return body

    def integrations_with_age(self, checked: Checked, age: float) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for name, result in checked.integrations.items():
            if result.get("status") == "not_configured":
                found[name] = result
            elif age > self.stale_after:
                found[name] = {
                    "status": "unhealthy",
                    "error": f"no health check result for {age:.0f} s",
                    "age_seconds": round(age, 3),
                }
            else:
                found[name] = {**result, "age_seconds": round(age, 3)}
        return found


class HealthReport:
    """The ``/health`` body (``health-schema.json``): the last checks, and this process's own state."""

    def __init__(
        self,
        checks: HealthChecks,
        settings: RdpControllerSettings,
        *,
        mongo_ready: asyncio.Event,
        loops: Callable[[], dict[str, str]],
        relay: Callable[[], dict[str, object]],
        schemas: Callable[[], dict[str, object]],
    ):
        self.checks = checks
        self.settings = settings
        self.mongo_ready = mongo_ready
        self.loops = loops
        self.relay = relay
        self.schemas = schemas

    async def build(self) -> tuple[dict[str, Any], int]:
        """The body and its status: 503 without MongoDB, else 200 (healthy or degraded)."""
        checks = self.checks
        checked = await checks.latest()
        age = time.monotonic() - checked.at
        mongodb, redis = checks.backend(checked.mongodb, age), checks.backend(checked.redis, age)
        integrations = checks.integrations_with_age(checked, age)
        ready = self.mongo_ready.is_set()
        if mongodb["status"] == "up":
            mongodb["indexes"] = "ready" if ready else "pending"
        troubled_peers = any(
            peer["status"] in ("unhealthy", "circuit_open") for peer in integrations.values()
        )
        if mongodb["status"] != "up":
            status = "unhealthy"
        elif redis["status"] != "up" or not ready or troubled_peers:
            status = "degraded"
        else:
            status = "healthy"
        body: dict[str, Any] = {
            "status": status,
            "service": SERVICE_NAME,
            "version": __version__,
            "timestamp": datetime.now(UTC).isoformat(),
            "environment": self.settings.LUCID_ENV,
            "auth_enabled": self.settings.RDP_CONTROLLER_AUTH_ENABLED,
            "components": {
                "mongodb": mongodb,
                "redis": redis,
                "background": self.loops(),
                "relay": self.relay(),
                "schemas": self.schemas(),
            },
            "integrations": integrations,
        }
        return body, 503 if status == "unhealthy" else 200
