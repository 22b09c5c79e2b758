"""
rdp-monitor client: starts and stops monitoring of an RDP session and reads its metrics.

Contract (as rdp-monitor serves it): ``POST /api/v1/monitoring/start`` ``{session_id, session_config}``;
``POST /api/v1/monitoring/sessions/{session_id}/stop``;
``GET /api/v1/monitoring/sessions/{session_id}/metrics``; ``GET /health``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Self
from urllib.parse import quote

from .deliverable import DeliverableCall, Payload
from .service_base import ServiceClientBase

logger = logging.getLogger(__name__)


def _session_path(session_id: str, action: str) -> str:
    return f"/api/v1/monitoring/sessions/{quote(session_id, safe='')}/{action}"


class RdpMonitorClient(ServiceClientBase):
    """Client for rdp-monitor."""

    async def start_monitoring(
        self, session_id: str, *, session_config: dict[str, Any], idempotency_key: str | None = None
    ) -> dict[str, Any]:
        body = {"session_id": session_id, "session_config": session_config}
        return await self._make_request(
            "POST", "/api/v1/monitoring/start", json_data=body, idempotency_key=idempotency_key
        )

    async def stop_monitoring(self, session_id: str, *, idempotency_key: str | None = None) -> dict[str, Any]:
        """Stop monitoring; ``ServiceNotFoundError`` when it monitors no such session."""
        return await self._make_request(
            "POST", _session_path(session_id, "stop"), idempotency_key=idempotency_key
        )

    async def get_session_metrics(self, session_id: str) -> dict[str, Any]:
        return await self._make_request("GET", _session_path(session_id, "metrics"))

    @classmethod
    def deliverable_calls(cls, client: Callable[[], Self]) -> dict[str, DeliverableCall]:
        """Start and stop, as ``lifecycle.py`` queues them; a 404 to stop: nothing was monitored."""

        async def start(payload: Payload, key: str) -> None:
            config = payload.get("session_config") or {}
            await client().start_monitoring(payload["session_id"], session_config=config, idempotency_key=key)

        async def stop(payload: Payload, key: str) -> None:
            await client().stop_monitoring(payload["session_id"], idempotency_key=key)

        return {
            "start_monitoring": DeliverableCall(start),
            "stop_monitoring": DeliverableCall(stop, not_found_is_done=True),
        }
