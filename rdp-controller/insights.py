"""Read-only views: per-session metrics and health, the service metrics snapshot, Prometheus text."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from . import __version__
from .integration import Integrations
from .integration.errors import ServiceError
from .integration.rdp_monitor_client import RdpMonitorClient
from .metrics import Metrics
from .models import FINAL_STATUSES, LIVE_STATUSES, ServerState, SessionStatus, TerminationReason
from .relay import RdpRelay
from .schema_validator import SchemaValidator
from .server_registry import ServerRegistry
from .session_controller import SessionController
from .session_states import Document
from .storage.mongo import MongoStore, utcnow

logger = logging.getLogger(__name__)

PROMETHEUS_PREFIX = "rdp_controller"


def _seconds_until(deadline: datetime | None, now: datetime) -> float | None:
    return None if deadline is None else round((deadline - now).total_seconds(), 3)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


class Insights:
    def __init__(
        self,
        store: MongoStore,
        sessions: SessionController,
        servers: ServerRegistry,
        metrics: Metrics,
        schemas: SchemaValidator,
        *,
        peer_timeout: float,
        relay: RdpRelay,
        integration: Integrations | None = None,
    ):
        self.store = store
        self.sessions = sessions
        self.servers = servers
        self.metrics = metrics
        self.schemas = schemas
        self.peer_timeout = peer_timeout
        self.relay = relay
        self.integration = integration
        # rdp-monitor's figures join a session's metrics when RDP_MONITOR_URL is set.
        self.monitor: RdpMonitorClient | None = integration.manager.rdp_monitor if integration else None

    async def session_metrics(self, session_id: str, *, owner: str | None) -> Document:
        session = await self.sessions.get(session_id, owner=owner)
        now = utcnow()
        connections = await self.store.connections.page({"session_id": session_id}, 1000)
        end = session.get("terminated_at") or now
        started = session.get("started_at")
        return {
            "session_id": session_id,
            "status": session["status"],
            "duration_seconds": round((end - session["created_at"]).total_seconds(), 3),
            "connected_seconds": round((end - started).total_seconds(), 3) if started else 0.0,
            "connections": len(connections),
            "bytes_in": sum(c.get("bytes_in") or 0 for c in connections),
            "bytes_out": sum(c.get("bytes_out") or 0 for c in connections),
            "last_activity_at": _iso(session.get("last_activity_at")),
            "monitor": await self._monitor_figures(session_id),
        }

    async def _monitor_figures(self, session_id: str) -> Document:
        if self.monitor is None:
            return {"status": "not_configured"}
        try:
            figures = await asyncio.wait_for(self.monitor.get_session_metrics(session_id), self.peer_timeout)
        except TimeoutError:
            return {"status": "unavailable", "error": "rdp-monitor did not answer in time"}
        except ServiceError as exc:
            logger.warning("rdp-monitor figures for %s unavailable: %s", session_id, exc)
            return {"status": "unavailable", "error": type(exc).__name__}
        return {"status": "ok", "figures": figures}

    async def session_health(self, session_id: str, *, owner: str | None) -> Document:
        session = await self.sessions.get(session_id, owner=owner)
        now = utcnow()
        server = await self.store.servers.get(session["server_id"]) if session.get("server_id") else None
        probe = (server or {}).get("last_probe") or {}
        status = SessionStatus(session["status"])
        server_state = server["state"] if server else None
        healthy = status in LIVE_STATUSES and server_state in (ServerState.AVAILABLE, ServerState.DRAINING)
        return {
            "session_id": session_id,
            "status": status.value,
            "healthy": bool(healthy),
            "server": {
                "server_id": session.get("server_id"),
                "state": server_state,
                "reachable": probe.get("reachable"),
                "checked_at": _iso(probe.get("checked_at")),
            },
            "deadlines": {
                "idle_in_seconds": _seconds_until(session.get("idle_deadline"), now),
                "disconnect_in_seconds": _seconds_until(session.get("disconnect_deadline"), now),
                "max_in_seconds": _seconds_until(session.get("max_deadline"), now),
            },
        }

    async def snapshot(self) -> Document:
        by_status = await self.store.sessions.counts_by_status()
        servers = await self.servers.list()
        by_state = {state.value: 0 for state in ServerState}
        for server in servers:
            by_state[server["state"]] = by_state.get(server["state"], 0) + 1
        latency = self.metrics.placement_latency.read()
        terminated = self.metrics.by_label("sessions_terminated")
        reaped = self.metrics.by_label("reaper_actions")
        counters: Document = {
            "sessions_created": self.metrics.value("sessions_created"),
            "session_create_failures": self.metrics.value("session_create_failures"),
            "sessions_terminated": {r.value: terminated.get(r.value, 0) for r in TerminationReason},
            "reaper_actions": {r.value: reaped.get(r.value, 0) for r in TerminationReason},
            "reconciler_runs": self.metrics.value("reconciler_runs"),
            "schema_validation_failures": self.metrics.value("schema_validation_failures"),
            "server_probes": self.metrics.by_label("server_probes"),
            "server_state_changes": self.metrics.by_label("server_state_changes"),
        }
        body: Document = {
            "service": "rdp-controller",
            "version": __version__,
            "timestamp": datetime.now(UTC).isoformat(),
            "sessions": {
                "by_status": by_status,
                "live": sum(by_status[s.value] for s in LIVE_STATUSES),
                "final": sum(by_status[s.value] for s in FINAL_STATUSES),
            },
            "servers": {
                "total": len(servers),
                "by_state": by_state,
                "capacity": sum(s["capacity"] for s in servers),
                "leases": sum(s["live_sessions"] for s in servers),
            },
            "connections": {"open": await self.store.connections.count_open()},
            "relay": self.relay.figures(),
            "counters": counters,
            "placement_latency_seconds": {
                "count": latency.count,
                "sum": round(latency.total, 6),
                "p50": latency.quantile(0.5),
                "p99": latency.quantile(0.99),
            },
        }
        if self.integration is not None:
            counters.update(self.integration.counters())
            body.update(await self.integration.metrics_snapshot())
        return body


def prometheus_text(snapshot: Document, metrics: Metrics) -> bytes:
    """Prometheus text: the snapshot's gauges, then every counter and histogram (prometheus_client)."""
    registry = CollectorRegistry()
    registry.register(SnapshotGauges(snapshot))
    return generate_latest(registry) + metrics.exposition()


class SnapshotGauges(Collector):
    """The gauges of one ``Insights.snapshot``: sessions (all replicas), servers, leases, connections.

    ``rdp_controller_relay_connections`` is a gauge of ``Metrics`` (summed over the workers).
    """

    def __init__(self, snapshot: Document):
        self.snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        p, snapshot = PROMETHEUS_PREFIX, self.snapshot
        sessions = GaugeMetricFamily(f"{p}_sessions", "Sessions by status (all replicas).", labels=["status"])
        for status, count in snapshot["sessions"]["by_status"].items():
            sessions.add_metric([status], count)
        yield sessions
        servers = GaugeMetricFamily(f"{p}_servers", "Servers by state.", labels=["state"])
        for state, count in snapshot["servers"]["by_state"].items():
            servers.add_metric([state], count)
        yield servers
        yield GaugeMetricFamily(
            f"{p}_server_capacity", "Slots of every server.", snapshot["servers"]["capacity"]
        )
        yield GaugeMetricFamily(f"{p}_slot_leases", "Slot leases held.", snapshot["servers"]["leases"])
        yield GaugeMetricFamily(
            f"{p}_open_connections",
            "Client connections open (all replicas).",
            snapshot["connections"]["open"],
        )
