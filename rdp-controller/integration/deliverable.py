"""
What the outbox can deliver: one call to a peer, made from a stored payload.

Each peer's client declares its own calls (``ServiceClientBase.deliverable_calls``: how a payload
becomes the call, and whether a 404 means the peer has nothing left to do);
``IntegrationManager.deliverable_calls`` gathers them by ``(peer, operation)`` for the outbox,
which knows no peer itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

Payload = dict[str, Any]
"""A delivery's stored arguments: JSON values only."""

Send = Callable[[Payload, str], Awaitable[str | None]]
"""Makes the call: ``(payload, delivery_id)`` -> an optional note. The delivery id is sent as the
``Idempotency-Key``. Raises ``ServiceError`` (``PeerNotConfigured`` when the peer has no client)."""


@dataclass(frozen=True)
class DeliverableCall:
    send: Send
    not_found_is_done: bool = False
    """A 404 means the peer has nothing to act on (stop, finalize, delete): delivered, with a note."""


DeliverableCalls = dict[tuple[str, str], DeliverableCall]
"""Calls by ``(peer, operation)``."""
