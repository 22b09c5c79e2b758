"""
Integration with the peer Lucid services: rdp-server-manager, session-recorder,
session-processor and rdp-monitor.

* ``IntegrationManager`` (``integration_manager.py``): lazy clients from the ``*_URL`` settings,
  ``health_check_all``, ``close_all``.
* ``ServiceClientBase`` (``service_base.py``): one pooled ``httpx.AsyncClient`` per peer, retries
  with full-jitter backoff, typed errors, circuit breaker; one ``<peer>_client.py`` per peer, with
  the calls the outbox may deliver to it (``DeliverableCall``, ``deliverable.py``).
* ``Outbox`` (``outbox.py``): durable, at-least-once deliveries with idempotency keys; it knows no
  peer, only the calls it is built with.
* ``IntegrationHooks`` (``lifecycle.py``): session transitions -> outbox deliveries.
* ``WarmPool`` (``warm_pool.py``): dedicated servers, provisioned ahead or on demand.

Their MongoDB documents are ``storage/outbox.py``'s and ``storage/warm_pool.py``'s repositories.

``build_integrations`` assembles them for ``Runtime``; nothing here connects at import time.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from ..background import Background
from ..config import RdpControllerSettings
from ..metrics import Metrics
from ..server_registry import ServerRegistry
from ..storage.mongo import MongoStore
from .circuit_breaker import CircuitState
from .deliverable import DeliverableCall
from .errors import CircuitOpenError, ServiceError, ServiceNotFoundError, ServiceTimeoutError
from .integration_manager import SERVER_MANAGER, IntegrationManager
from .lifecycle import RELEASE_DEDICATED, IntegrationHooks
from .outbox import Outbox
from .service_base import ServiceClientBase
from .warm_pool import WarmPool

logger = logging.getLogger(__name__)

__all__ = [
    "CircuitOpenError",
    "IntegrationHooks",
    "IntegrationManager",
    "Integrations",
    "Outbox",
    "ServiceClientBase",
    "ServiceError",
    "ServiceNotFoundError",
    "ServiceTimeoutError",
    "WarmPool",
    "build_integrations",
]

OUTBOX_LOOP = "integration_outbox"
# Breaker states by how bad they are (the ``peer_circuit_state`` gauge: the worst over the workers).
CIRCUIT_LEVELS = (CircuitState.CLOSED, CircuitState.HALF_OPEN, CircuitState.OPEN)
# Counters (``Metrics``) of this layer: labelled by peer, by source (stock|on_demand) or by reason.
LABELLED_COUNTERS = (
    "outbox_enqueued",
    "outbox_delivered",
    "outbox_retried",
    "outbox_failed",
    "outbox_enqueue_failures",
    "warm_pool_acquired",
    "warm_pool_provisioned",
    "warm_pool_released",
)
PLAIN_COUNTERS = ("warm_pool_refill_failures", "warm_pool_on_demand_failures")
WARM_POOL_LOOP = "warm_pool_refill"


@dataclass
class Integrations:
    """The integration layer of one running service, owned by ``Runtime``."""

    settings: RdpControllerSettings
    manager: IntegrationManager
    outbox: Outbox
    hooks: IntegrationHooks
    warm_pool: WarmPool | None
    background: Background
    mongo_ready: asyncio.Event
    metrics: Metrics

    async def ensure_indexes(self) -> None:
        """The warm pool's indexes, when there is one; idempotent (``MongoStore`` makes the outbox's)."""
        if self.warm_pool is not None:
            await self.warm_pool.ensure_indexes()

    async def start(self) -> None:
        """Spawn the outbox loop and, with a warm pool of size > 0, its refill loop (leader loops)."""
        settings = self.settings
        self.background.spawn(
            OUTBOX_LOOP,
            self.outbox.dispatch_once,
            interval=settings.RDP_CONTROLLER_OUTBOX_INTERVAL,
            leader=True,
            wait_for=self.mongo_ready,
        )
        if self.warm_pool is not None and self.warm_pool.size > 0:
            self.background.spawn(
                WARM_POOL_LOOP,
                self.warm_pool.refill_once,
                interval=settings.RDP_CONTROLLER_OUTBOX_INTERVAL,
                leader=True,
                wait_for=self.mongo_ready,
            )

    async def metrics_snapshot(self) -> dict[str, Any]:
        """The ``integrations`` and ``warm_pool`` parts of ``/api/v1/metrics``.

        Outbox deliveries by status and warm-pool stock come from MongoDB (all replicas); circuit
        states are this replica's (the worst of its worker processes'). ``warm_pool`` is absent
        without rdp-server-manager.
        """
        snapshot: dict[str, Any] = {
            "integrations": {
                "outbox": await self.outbox.counts(),
                "circuits": self.circuits(),
            }
        }
        if self.warm_pool is not None:
            snapshot["warm_pool"] = await self.warm_pool.snapshot()
        return snapshot

    def record_circuits(self) -> None:
        """This process's breaker states into the ``peer_circuit_state`` gauge (each ``health`` round)."""
        for peer, state in self.manager.circuit_states().items():
            self.metrics.set_gauge("peer_circuit_state", CIRCUIT_LEVELS.index(CircuitState(state)), peer)

    def circuits(self) -> dict[str, str]:
        """Each created peer client's breaker state, the worst over the worker processes."""
        self.record_circuits()
        top = len(CIRCUIT_LEVELS) - 1
        levels = self.metrics.gauge("peer_circuit_state")
        return {peer: CIRCUIT_LEVELS[min(int(level), top)].value for (peer,), level in sorted(levels.items())}

    def counters(self) -> dict[str, int | dict[str, int]]:
        """This replica's integration counters, for the ``counters`` part of the metrics snapshot."""
        metrics = self.metrics
        labelled: dict[str, int | dict[str, int]] = {
            name: metrics.by_label(name) for name in LABELLED_COUNTERS
        }
        return {**labelled, **{name: metrics.value(name) for name in PLAIN_COUNTERS}}

    async def close(self) -> None:
        """Stop kicked work and close every client (the loops stop with ``Background.stop``)."""
        if self.warm_pool is not None:
            await self.warm_pool.close()
        await self.outbox.close()
        await self.manager.close_all()


def build_integrations(
    settings: RdpControllerSettings,
    store: MongoStore,
    connections: ServerRegistry,
    background: Background,
    mongo_ready: asyncio.Event,
    metrics: Metrics,
) -> Integrations:
    """Assemble the integration layer; connects to nothing (clients are created on first use)."""
    manager = IntegrationManager(settings)
    operations = manager.deliverable_calls()
    warm_pool: WarmPool | None = None
    if manager.is_configured(SERVER_MANAGER):
        warm_pool = WarmPool(store.warm_pool, manager, connections, store.sessions, settings, metrics)
        operations[(SERVER_MANAGER, RELEASE_DEDICATED)] = DeliverableCall(warm_pool.release_for_session)
    # A claim outlives one call with all its retries and backoff, so a slow peer is not sent twice.
    claim_seconds = settings.SERVICE_TIMEOUT_SECONDS * settings.SERVICE_RETRY_COUNT * 2 + 30
    outbox = Outbox(
        store.outbox,
        operations,
        configured=manager.is_configured,
        metrics=metrics,
        base_delay=settings.RDP_CONTROLLER_OUTBOX_INTERVAL,
        claim_seconds=claim_seconds,
    )
    hooks = IntegrationHooks(outbox, metrics=metrics)
    return Integrations(settings, manager, outbox, hooks, warm_pool, background, mongo_ready, metrics)
