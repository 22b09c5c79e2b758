"""
session-recorder client: starts and stops the recording of an RDP session.

Contract (as session-recorder serves it): ``POST /recordings/start``
``{session_id, owner_address, metadata}``; ``POST /recordings/{session_id}/stop``;
``GET /recordings/{session_id}``; ``GET /health``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Self
from urllib.parse import quote

from .deliverable import DeliverableCall, Payload
from .service_base import ServiceClientBase

logger = logging.getLogger(__name__)


class SessionRecorderClient(ServiceClientBase):
    """Client for session-recorder."""

    async def start_recording(
        self,
        session_id: str,
        *,
        owner_address: str,
        metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        body = {"session_id": session_id, "owner_address": owner_address, "metadata": metadata or {}}
        return await self._make_request(
            "POST", "/recordings/start", json_data=body, idempotency_key=idempotency_key
        )

    async def stop_recording(self, session_id: str, *, idempotency_key: str | None = None) -> dict[str, Any]:
        """Stop the recording; ``ServiceNotFoundError`` when it has none for this session."""
        path = f"/recordings/{quote(session_id, safe='')}/stop"
        return await self._make_request("POST", path, idempotency_key=idempotency_key)

    async def get_recording(self, session_id: str) -> dict[str, Any]:
        return await self._make_request("GET", f"/recordings/{quote(session_id, safe='')}")

    @classmethod
    def deliverable_calls(cls, client: Callable[[], Self]) -> dict[str, DeliverableCall]:
        """Start and stop, as ``lifecycle.py`` queues them; a 404 to stop: nothing was recorded."""

        async def start(payload: Payload, key: str) -> None:
            await client().start_recording(
                payload["session_id"],
                owner_address=payload["owner_address"],
                metadata=payload.get("metadata") or {},
                idempotency_key=key,
            )

        async def stop(payload: Payload, key: str) -> None:
            await client().stop_recording(payload["session_id"], idempotency_key=key)

        return {
            "start_recording": DeliverableCall(start),
            "stop_recording": DeliverableCall(stop, not_found_is_done=True),
        }
