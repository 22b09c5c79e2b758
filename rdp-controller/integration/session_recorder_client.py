"""
session-recorder client: starts and stops the recording of an RDP session.

Contract (as session-recorder serves it): ``POST /recordings/start``
``{session_id, owner_address, metadata}``; ``POST /recordings/{session_id}/stop``;
``GET /recordings/{session_id}``; ``GET /health``.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

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
