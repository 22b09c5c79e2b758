"""
Lifecycle hooks: what the peer services are told when a session changes state.

``IntegrationHooks.on_transition`` never waits for a peer: it stores deliveries in the outbox
(one fast MongoDB insert each) and kicks a background dispatch. A peer that is slow, down or
unset cannot slow down or fail a session transition.

Deliveries (ids ``f"{session_id}:{peer}:{operation}"``, so a transition seen twice queues once):

* ready -> active (the first connect): session-recorder start, rdp-monitor start;
* -> terminated, for a session that was connected: session-recorder stop, rdp-monitor stop,
  session-processor finalize (a session that never connected has nothing to record, monitor or
  finalize);
* -> terminated or error, for a session on a dedicated server: ``release_dedicated_server``
  (the warm pool removes the server from the pool, then ``DELETE /servers/{id}`` on
  rdp-server-manager).

A session's deliveries to one peer share an order key, so the outbox sends them in order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo.errors import PyMongoError

from ..metrics import Metrics
from ..models import FINAL_STATUSES, SessionStatus
from .integration_manager import MONITOR, PROCESSOR, RECORDER, SERVER_MANAGER
from .outbox import Outbox

logger = logging.getLogger(__name__)

RELEASE_DEDICATED = "release_dedicated_server"


@dataclass(frozen=True)
class Delivery:
    peer: str
    operation: str
    payload: dict[str, Any]
    session_id: str

    @property
    def delivery_id(self) -> str:
        return f"{self.session_id}:{self.peer}:{self.operation}"

    @property
    def order_key(self) -> str:
        return f"{self.session_id}:{self.peer}"


def _json(value: Any) -> Any:
    """Session fields as JSON values (datetimes become ISO 8601 strings)."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(key): _json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json(item) for item in value]
    return value


def plan_deliveries(
    session: dict[str, Any], from_status: SessionStatus | None, to_status: SessionStatus
) -> list[Delivery]:
    """The deliveries one committed transition calls for (pure: no I/O)."""
    session_id: str = session["session_id"]
    config: dict[str, Any] = _json(session.get("session_config") or {})
    planned: list[Delivery] = []
    if to_status is SessionStatus.ACTIVE and from_status is SessionStatus.READY:
        metadata = _json(
            {
                "user_id": session["user_id"],
                "server_id": session.get("server_id"),
                "connection_id": session.get("connection_id"),
                "started_at": session.get("started_at"),
                "session_config": config,
                "source": "rdp-controller",
            }
        )
        planned.append(
            Delivery(
                RECORDER,
                "start_recording",
                {"session_id": session_id, "owner_address": session["user_id"], "metadata": metadata},
                session_id,
            )
        )
        planned.append(
            Delivery(
                MONITOR, "start_monitoring", {"session_id": session_id, "session_config": config}, session_id
            )
        )
    if to_status is SessionStatus.TERMINATED and session.get("started_at") is not None:
        planned.append(Delivery(RECORDER, "stop_recording", {"session_id": session_id}, session_id))
        planned.append(Delivery(MONITOR, "stop_monitoring", {"session_id": session_id}, session_id))
        planned.append(Delivery(PROCESSOR, "finalize_session", {"session_id": session_id}, session_id))
    if to_status in FINAL_STATUSES and config.get("dedicated_server") and session.get("server_id"):
        payload = {"server_id": session["server_id"], "session_id": session_id}
        planned.append(Delivery(SERVER_MANAGER, RELEASE_DEDICATED, payload, session_id))
    return planned


class IntegrationHooks:
    """``LifecycleHooks`` for ``SessionController``: queue the peers' deliveries, never wait for a peer."""

    def __init__(self, outbox: Outbox, *, metrics: Metrics):
        self.outbox = outbox
        self.metrics = metrics

    async def on_transition(
        self,
        session: dict[str, Any],
        from_status: SessionStatus | None,
        to_status: SessionStatus,
        reason: str | None,
    ) -> None:
        kicked: set[str] = set()
        for delivery in plan_deliveries(session, from_status, to_status):
            if (delivery.peer, delivery.operation) not in self.outbox.operations:
                logger.warning(
                    "Session %s: no handler for %s/%s on this replica (is the warm pool configured?)",
                    delivery.session_id,
                    delivery.peer,
                    delivery.operation,
                )
                continue
            try:
                stored = await self.outbox.enqueue(
                    delivery.peer,
                    delivery.operation,
                    delivery.payload,
                    delivery_id=delivery.delivery_id,
                    order_key=delivery.order_key,
                )
            except PyMongoError as exc:
                # The transition is committed; failing it now would lie to the caller. Say what is lost.
                self.metrics.inc("outbox_enqueue_failures", delivery.peer)
                logger.error(
                    "Session %s (%s -> %s, %s): delivery %s not queued, MongoDB refused it: %s",
                    delivery.session_id,
                    from_status.value if from_status else None,
                    to_status.value,
                    reason,
                    delivery.delivery_id,
                    exc,
                )
                continue
            if stored:
                kicked.add(delivery.peer)
        for peer in sorted(kicked):
            self.outbox.kick(peer)
