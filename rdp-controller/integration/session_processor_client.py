"""
session-processor client: finalizes a session once it has ended (the processor seals its chunks
and answers the Merkle root).

Contract (as session-processor serves it): ``POST /api/v1/sessions/{session_id}/finalize`` ->
``{session_id, merkle_root, finalized, timestamp}``, 404 when it knows no such session;
``GET /health``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Self
from urllib.parse import quote

from .deliverable import DeliverableCall, Payload
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

    @classmethod
    def deliverable_calls(cls, client: Callable[[], Self]) -> dict[str, DeliverableCall]:
        """Finalize, noted with the Merkle root; a 404: the processor knows no such session."""

        async def finalize(payload: Payload, key: str) -> str | None:
            answer = await client().finalize_session(payload["session_id"], idempotency_key=key)
            root = answer.get("merkle_root")
            return f"merkle_root={root}" if isinstance(root, str) else None

        return {"finalize_session": DeliverableCall(finalize, not_found_is_done=True)}
