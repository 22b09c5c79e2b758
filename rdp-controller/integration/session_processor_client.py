"""
session-processor client: finalizes a session once it has ended (the processor seals its chunks
and answers the Merkle root).

Contract (as session-processor serves it): ``POST /api/v1/sessions/{session_id}/finalize`` ->
``{session_id, merkle_root, finalized, timestamp}``, 404 when it knows no such session;
``GET /health``.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from .service_base import ServiceClientBase

logger = logging.getLogger(__name__)


class SessionProcessorClient(ServiceClientBase):
    """Client for session-processor."""

    async def finalize_session(
        self, session_id: str, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Answers ``{session_id, merkle_root, finalized, timestamp}``.

        ``ServiceNotFoundError`` when the processor knows no such session."""
        path = f"/api/v1/sessions/{quote(session_id, safe='')}/finalize"
        return await self._make_request("POST", path, idempotency_key=idempotency_key)
