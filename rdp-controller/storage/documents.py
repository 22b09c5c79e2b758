"""What every repository shares: collection names, ids, clock, the projection without ``_id``,
counts by a field."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from common.backends import MongoDocument

SESSIONS = "rdp_sessions"
SERVERS = "rdp_servers"
CONNECTIONS = "rdp_connections"
EVENTS = "rdp_session_events"
SERVER_EVENTS = "rdp_server_events"
OUTBOX = "integration_outbox"
WARM_POOL = "warm_pool"
IDEMPOTENCY = "rdp_idempotency_keys"

NO_ID = {"_id": False}


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


async def count_by(
    collection: AsyncCollection[MongoDocument], field: str, values: Iterable[str]
) -> dict[str, int]:
    """How many documents hold each value of ``field``: every one of ``values``, 0 when none does."""
    counts = {str(value): 0 for value in values}
    pipeline: list[dict[str, Any]] = [{"$group": {"_id": f"${field}", "count": {"$sum": 1}}}]
    async for row in await collection.aggregate(pipeline):
        counts[str(row["_id"])] = int(row["count"])
    return counts
