"""Models of the connections API: client connections, token redemption, the pool's health and figures.

``RedeemRequest`` validates a request; the others describe answers (see models.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from .models import Answer, Omitted, StrictModel, Uuid


class RedeemRequest(StrictModel):
    token: str = Field(min_length=1, max_length=256)


class RedeemedToken(BaseModel):
    """What the token was issued for."""

    session_id: Uuid
    connection_id: Uuid | Omitted = None
    server_id: Uuid | Omitted = None
    user_id: str | Omitted = None
    address: str | Omitted = None
    port: int | Omitted = None


class Connection(BaseModel):
    """One client connection of a session (relay mode: one relayed TCP connection)."""

    connection_id: Uuid
    session_id: Uuid
    server_id: Uuid
    user_id: str | Omitted = None
    client_address: str | None = None
    opened_at: datetime
    closed_at: datetime | None
    last_activity_at: datetime | None = None
    bytes_in: int | None = None
    bytes_out: int | None = None


class ConnectionList(Answer):
    items: list[Connection]


class PoolHealth(Answer):
    status: Literal["healthy", "degraded", "unhealthy"]
    servers: int = Field(ge=0)
    by_state: dict[str, int]
    reachable: int = Field(ge=0)
    unreachable: int = Field(ge=0)
    monitor: str | Omitted = Field(
        default=None, description="State of the health monitor loop on this replica"
    )


class ConnectionMetrics(Answer):
    open_connections: int = Field(ge=0)
    servers: int = Field(ge=0)
    capacity: int = Field(ge=0)
    leases: int = Field(ge=0)
    utilisation: float = Field(ge=0)
    probe_latency_ms: dict[str, float | None] | Omitted = None
