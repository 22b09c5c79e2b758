"""What every repository shares: collection names, ids, clock, the projection without ``_id``."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

SESSIONS = "rdp_sessions"
SERVERS = "rdp_servers"
CONNECTIONS = "rdp_connections"
EVENTS = "rdp_session_events"
SERVER_EVENTS = "rdp_server_events"
OUTBOX = "integration_outbox"
IDEMPOTENCY = "rdp_idempotency_keys"

NO_ID = {"_id": False}


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())
