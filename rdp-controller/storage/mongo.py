"""
MongoDB: the source of truth (database ``lucid_rdp``, ``MONGODB_DATABASE``). ``MongoStore`` holds
the database and one repository per collection (``storage/sessions.py``, ``storage/servers.py``,
``storage/outbox.py``, ``storage/warm_pool.py``), and creates every index at start-up,
idempotently; the warm pool's only once a warm pool uses them (``WarmPool.ensure_indexes``).
"""

from __future__ import annotations

from datetime import timedelta

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from common.backends import MongoDocument

from .documents import (
    CONNECTIONS,
    EVENTS,
    IDEMPOTENCY,
    NO_ID,
    OUTBOX,
    SERVER_EVENTS,
    SERVERS,
    SESSIONS,
    WARM_POOL,
    new_id,
    utcnow,
)
from .outbox import OutboxRepository
from .servers import ServerHealthRepository, ServerRepository
from .sessions import (
    ConnectionRepository,
    EventRepository,
    IdempotencyRepository,
    SessionRepository,
    decode_cursor,
    encode_cursor,
)
from .warm_pool import WarmPoolRepository

__all__ = [
    "CONNECTIONS",
    "EVENTS",
    "IDEMPOTENCY",
    "NO_ID",
    "OUTBOX",
    "SERVERS",
    "SERVER_EVENTS",
    "SESSIONS",
    "WARM_POOL",
    "MongoStore",
    "decode_cursor",
    "encode_cursor",
    "new_id",
    "utcnow",
]

# A pending Idempotency-Key claim older than this belongs to a request that died: it is taken over.
IDEMPOTENCY_STALE_SECONDS = 60.0


class MongoStore:
    """The database and its repositories."""

    def __init__(self, database: AsyncDatabase[MongoDocument], *, event_retention_days: int):
        self.database = database
        self.event_retention = timedelta(days=event_retention_days)
        self.sessions = SessionRepository(database[SESSIONS])
        self.events = EventRepository(database[EVENTS])
        self.connections = ConnectionRepository(database[CONNECTIONS])
        self.servers = ServerRepository(database[SERVERS])
        self.server_health = ServerHealthRepository(
            database[SERVERS], database[SERVER_EVENTS], changed=self.servers.changed
        )
        self.outbox = OutboxRepository(database[OUTBOX])
        self.warm_pool = WarmPoolRepository(database[WARM_POOL])
        self.idempotency = IdempotencyRepository(
            database[IDEMPOTENCY], stale_seconds=IDEMPOTENCY_STALE_SECONDS
        )

    async def ensure_indexes(self) -> None:
        """Create every index; safe to run at every start and from every replica."""
        await self.database[SESSIONS].create_indexes(
            [
                IndexModel([("session_id", ASCENDING)], unique=True, name="session_id_unique"),
                IndexModel([("user_id", ASCENDING), ("status", ASCENDING)], name="user_status"),
                IndexModel([("server_id", ASCENDING), ("status", ASCENDING)], name="server_status"),
                IndexModel([("status", ASCENDING), ("next_deadline", ASCENDING)], name="status_deadline"),
                IndexModel([("pending_transitions.at", ASCENDING)], name="pending_transitions"),
                IndexModel([("created_at", DESCENDING), ("session_id", DESCENDING)], name="created_order"),
                IndexModel(
                    [("user_id", ASCENDING), ("idempotency_key", ASCENDING)],
                    unique=True,
                    partialFilterExpression={"idempotency_key": {"$type": "string"}},
                    name="idempotency_unique",
                ),
            ]
        )
        await self.database[EVENTS].create_indexes(
            [
                IndexModel([("session_id", ASCENDING), ("at", ASCENDING)], name="session_at"),
                IndexModel([("event_id", ASCENDING)], unique=True, name="event_id_unique"),
                IndexModel(
                    [("at", ASCENDING)],
                    expireAfterSeconds=int(self.event_retention.total_seconds()),
                    name="retention_ttl",
                ),
            ]
        )
        await self.database[SERVER_EVENTS].create_indexes(
            [
                IndexModel([("server_id", ASCENDING), ("at", ASCENDING)], name="server_at"),
                IndexModel(
                    [("at", ASCENDING)],
                    expireAfterSeconds=int(self.event_retention.total_seconds()),
                    name="retention_ttl",
                ),
            ]
        )
        await self.database[CONNECTIONS].create_indexes(
            [
                IndexModel([("connection_id", ASCENDING)], unique=True, name="connection_id_unique"),
                IndexModel([("session_id", ASCENDING), ("closed_at", ASCENDING)], name="session_open"),
                IndexModel([("opened_at", DESCENDING)], name="opened_order"),
            ]
        )
        await self.database[SERVERS].create_indexes(
            [
                IndexModel([("server_id", ASCENDING)], unique=True, name="server_id_unique"),
                IndexModel([("address", ASCENDING), ("port", ASCENDING)], unique=True, name="address_unique"),
            ]
        )
        await self.database[IDEMPOTENCY].create_indexes(
            [IndexModel([("user_id", ASCENDING), ("key", ASCENDING)], unique=True, name="user_key_unique")]
        )
        await self.outbox.ensure_indexes()
