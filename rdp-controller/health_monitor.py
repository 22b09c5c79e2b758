"""
HealthMonitor: probes the RDP hosts of the pool with the RDP protocol and moves their state.

Each round (a leader loop, so one replica probes at a time) probes every server that is not
``disabled`` with at most ``RDP_CONTROLLER_PROBE_CONCURRENCY`` probes in flight, each bounded
by ``RDP_CONTROLLER_PROBE_TIMEOUT``. ``POST /api/v1/servers/{id}/probe`` probes one server now.

A probe *passes* when the host answered the X.224 negotiation by selecting a protocol and the
TLS handshake (when the protocol needs one) worked: ``ProbeResult.ok``. An ``RDP_NEG_FAILURE``
answer (``HYBRID_REQUIRED_BY_SERVER``, ``SSL_CERT_NOT_ON_SERVER`` ...) is reachable but refusing:
clients that ask what the probe asks (SSL|HYBRID) would be refused too, so it counts as a
failed probe, like a timeout or a refused connection.

States (the health part; ``draining`` and ``disabled`` are the operator's and are never
overridden, but a draining server is still probed and its probe, counters and ``health_state``
recorded, so it comes back with its real health when the drain is lifted):

- ``available`` -> ``unhealthy`` after ``RDP_CONTROLLER_UNHEALTHY_THRESHOLD`` consecutive failed
  probes (one lost probe does not flap a host);
- ``unhealthy``/``degraded`` -> ``available`` after ``RDP_CONTROLLER_HEALTHY_THRESHOLD``
  consecutive passing probes;
- a certificate fingerprint different from the last one seen (no pin set) -> ``degraded`` and a
  ``certificate_changed`` event in ``rdp_server_events``. The changing probe starts a new streak
  of successes (``consecutive_successes`` = 1), so the server is ``available`` again once the new
  certificate has been served for the healthy threshold (at least one more probe), or at the
  next probe after an operator pins the new fingerprint;
- a pinned fingerprint (``pinned_cert_sha256``) that the host does not serve -> ``unhealthy`` at
  once (refused, no threshold: it is not a flap), reason ``certificate_mismatch``. It recovers at
  the first passing probe that serves the pinned certificate again (re-pin, or the host fixed),
  since the counters measure reachability, which held all along.

``state_reason`` (``probe_failed`` | ``certificate_mismatch`` | ``certificate_changed`` | null)
and ``state_detail`` (a sentence) say why a server is not available. Every write is a
compare-and-set on the state, the pin and ``health_version``, so an operator's drain or a
concurrent probe is never overwritten; the loser re-reads and decides again.

Sessions on an unhealthy server are not terminated: the session keeps running if the host comes
back, and placement only uses ``available`` servers. With ``unhealthy_grace_seconds``
(``RDP_CONTROLLER_UNHEALTHY_GRACE_SECONDS``) above 0, after each round the live sessions of a
server unhealthy (``unhealthy_since``) for longer than that are terminated with reason
``server_unhealthy``. 0 or None, the default, is off.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Final

from pymongo.errors import PyMongoError
from redis.exceptions import RedisError

from common.backends import MongoDocument
from common.errors import LucidError
from protocol.probe import ProbeResult, probe

from .config import RdpControllerSettings
from .metrics import Metrics
from .models import ServerState, TerminationReason
from .server_health import Assessment, Thresholds, assess
from .server_pool import ServerPool
from .server_registry import ServerRegistry
from .storage.mongo import MongoStore, utcnow

logger = logging.getLogger(__name__)

CAS_ATTEMPTS: Final = 6

Prober = Callable[..., Awaitable[ProbeResult]]


class HealthMonitor:
    """Probe the pool, keep each server's state, and report on the pool."""

    def __init__(
        self,
        servers: ServerRegistry,
        sessions_pool: ServerPool,
        store: MongoStore,
        settings: RdpControllerSettings,
        metrics: Metrics,
        *,
        prober: Prober = probe,
        unhealthy_grace_seconds: float | None = None,
    ):
        self.servers = servers
        self.pool = sessions_pool
        self.settings = settings
        self.metrics = metrics
        self.thresholds = Thresholds.from_settings(settings)
        self.prober = prober
        self.unhealthy_grace_seconds = unhealthy_grace_seconds or None  # 0 = off, like the setting
        self.store = store
        self.repository = store.server_health

    # Probing ------------------------------------------------------------------------------
    async def _probe(self, address: str, port: int) -> ProbeResult:
        return await self.prober(address, port, timeout=self.settings.RDP_CONTROLLER_PROBE_TIMEOUT)

    async def probe_server(self, server_id: str) -> dict[str, Any]:
        """Probe one server now (any state, disabled included), record it, return the ProbeResult."""
        server = await self.servers.get_document(server_id)
        result = await self._probe(server["address"], int(server["port"]))
        await self.record(server_id, result)
        return result.to_document()

    async def run_once(self) -> int:
        """Probe every server that is not disabled; returns how many probes were recorded."""
        targets = await self.repository.probe_targets()
        semaphore = asyncio.Semaphore(self.settings.RDP_CONTROLLER_PROBE_CONCURRENCY)

        errors: list[PyMongoError] = []

        async def one(server: MongoDocument) -> bool:
            async with semaphore:
                result = await self._probe(server["address"], int(server["port"]))
            try:
                return await self.record(server["server_id"], result)
            except PyMongoError as exc:  # the other servers are still recorded; the round reports it
                logger.warning("Probe of server %s not recorded: %s", server["server_id"], exc)
                errors.append(exc)
                return False

        outcomes = await asyncio.gather(*(one(server) for server in targets))
        if errors:
            raise errors[0]
        if self.unhealthy_grace_seconds is not None:
            await self.terminate_overdue(self.unhealthy_grace_seconds)
        return sum(outcomes)

    async def record(self, server_id: str, result: ProbeResult) -> bool:
        """Apply one probe result to the server (compare-and-set, retried); False if it is gone or stale."""
        self.metrics.inc("server_probes", _outcome(result))
        for _attempt in range(CAS_ATTEMPTS):
            server = await self.repository.get(server_id)
            if server is None:
                return False  # removed meanwhile
            checked = (server.get("last_probe") or {}).get("checked_at")
            if isinstance(checked, datetime) and checked > result.checked_at:
                return False  # a newer probe is recorded already: do not go back in time
            assessment = assess(server, result, self.thresholds, utcnow())
            updated = await self.repository.apply(server, assessment.changes)
            if updated is None:
                continue
            await self._report(server, assessment)
            return True
        logger.warning("Server %s changed too fast to record its probe", server_id)
        return False

    async def _report(self, server: Mapping[str, Any], assessment: Assessment) -> None:
        server_id = str(server["server_id"])
        if assessment.certificate_change is not None:
            old, new = assessment.certificate_change
            logger.warning(
                "Server %s (%s) changed its certificate: %s -> %s", server_id, server.get("name"), old, new
            )
            await self.repository.record(server_id, "certificate_changed", old, new)
        if assessment.state is not assessment.previous_state:
            changes = assessment.changes
            logger.warning(
                "Server %s (%s) is now %s (was %s): %s",
                server_id,
                server.get("name"),
                assessment.state.value,
                assessment.previous_state.value,
                changes["state_detail"] or "probe passed",
            )
            self.metrics.inc("server_state_changes", assessment.state.value)
            await self.repository.record(
                server_id,
                "state_changed",
                assessment.previous_state.value,
                assessment.state.value,
                reason=changes["state_reason"],
            )

    async def terminate_overdue(self, grace_seconds: float) -> int:
        """Terminate (``server_unhealthy``) the live sessions of servers unhealthy for longer than that."""
        terminated = 0
        for server_id in await self.repository.unhealthy_before(utcnow() - timedelta(seconds=grace_seconds)):
            try:
                done = await self.pool.terminate_sessions(
                    server_id, TerminationReason.SERVER_UNHEALTHY, actor="health_monitor"
                )
            except (PyMongoError, RedisError, LucidError) as exc:
                logger.warning("Sessions of unhealthy server %s not terminated now: %s", server_id, exc)
                continue
            terminated += len(done)
        return terminated

    # Reports ------------------------------------------------------------------------------
    async def pool_health(self, monitor_status: str | None) -> dict[str, Any]:
        """The PoolHealth view: servers by state and the reachability of their last probes."""
        servers = await self.store.servers.all()
        by_state = {state.value: 0 for state in ServerState}
        reachable = unreachable = 0
        for server in servers:
            by_state[server["state"]] = by_state.get(server["state"], 0) + 1
            last = server.get("last_probe")
            if last is not None:
                if last.get("reachable"):
                    reachable += 1
                else:
                    unreachable += 1
        if by_state[ServerState.AVAILABLE.value] == 0:
            status = "unhealthy"  # nothing can be placed
        elif by_state[ServerState.UNHEALTHY.value] or by_state[ServerState.DEGRADED.value]:
            status = "degraded"
        else:
            status = "healthy"
        return {
            "status": status,
            "servers": len(servers),
            "by_state": by_state,
            "reachable": reachable,
            "unreachable": unreachable,
            "monitor": monitor_status or "not_running",
        }

    async def connection_metrics(self) -> dict[str, Any]:
        """The ConnectionMetrics view: open connections, capacity, leases, last probe latency per server."""
        servers = await self.servers.list()
        capacity = sum(int(server["capacity"]) for server in servers)
        leases = sum(int(server["live_sessions"]) for server in servers)
        return {
            "open_connections": await self.store.connections.count_open(),
            "servers": len(servers),
            "capacity": capacity,
            "leases": leases,
            "utilisation": round(leases / capacity, 4) if capacity else 0.0,
            "probe_latency_ms": {
                server["server_id"]: (server.get("last_probe") or {}).get("latency_ms") for server in servers
            },
        }


def _outcome(result: ProbeResult) -> str:
    if result.ok:
        return "ok"
    return "refused" if result.failure_code is not None else "failed"
