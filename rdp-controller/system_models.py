"""Models of the system answers: ``/health`` (health-schema.json) and ``/api/v1/metrics``
(metrics-schema.json). They describe what the routes answer (see models.py); the schema files and
``openapi.yaml`` are generated from them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .models import Answer, Omitted

Count = Annotated[int, Field(ge=0)]
Seconds = Annotated[float, Field(ge=0)]
AGE = "Seconds since the background check this result comes from"


class BackendHealth(Answer):
    status: Literal["up", "down"]
    latency_ms: Seconds | Omitted = None
    error: str | Omitted = None
    indexes: Literal["ready", "pending"] | Omitted = None
    age_seconds: Seconds | Omitted = Field(default=None, description=AGE)


class IntegrationHealth(BaseModel):
    status: Literal["not_configured", "healthy", "unhealthy", "circuit_open"]
    url: str | Omitted = None
    latency_ms: Seconds | Omitted = None
    error: str | Omitted = None
    age_seconds: Seconds | Omitted = Field(default=None, description=AGE)


class RelayHealth(Answer):
    status: Literal["off", "listening", "failed"]
    address: str | Omitted = None
    public_address: str | Omitted = None
    connections: Count | Omitted = None
    handshakes: Count | Omitted = None
    error: str | Omitted = None


class SchemasHealth(Answer):
    """The response schemas: `degraded` when one did not load, whose checks are then off. It does
    not change the service's status: answers are served either way (graceful degradation)."""

    status: Literal["loaded", "degraded"]
    errors: dict[str, str] = Field(description="Schema name: why it did not load")


class HealthComponents(Answer):
    mongodb: BackendHealth
    redis: BackendHealth
    background: dict[str, str] | Omitted = Field(default=None, description="This process's loops")
    relay: RelayHealth | Omitted = None
    schemas: SchemasHealth | Omitted = None


class Health(Answer):
    """Service health (health-schema.json): 200 healthy or degraded, 503 unhealthy (no MongoDB)."""

    status: Literal["healthy", "degraded", "unhealthy"]
    service: Literal["rdp-controller"]
    version: str = Field(json_schema_extra={"pattern": r"^[0-9]+\.[0-9]+\.[0-9]+"})
    timestamp: datetime
    environment: Literal["production", "development", "test"]
    auth_enabled: bool
    components: HealthComponents
    integrations: dict[str, IntegrationHealth]


class SessionsByStatus(BaseModel):
    creating: Count
    ready: Count
    active: Count
    idle: Count
    suspended: Count
    terminated: Count
    error: Count


class SessionFigures(Answer):
    by_status: SessionsByStatus
    live: Count
    final: Count


class ServerFigures(Answer):
    total: Count
    by_state: dict[str, Count]
    capacity: Count
    leases: Count


class ConnectionFigures(BaseModel):
    open: Count


class Durations(Answer):
    """A histogram summed up: how many, their sum, and two quantiles (null before the first)."""

    count: Count
    sum: float = Field(ge=0)
    p50: float | None
    p99: float | None


class RelayBytes(Answer):
    client_to_host: Count
    host_to_client: Count


class RelayFigures(Answer):
    enabled: bool
    connections: Count
    handshakes: dict[str, Count] = Field(description="Handshakes by outcome")
    bytes: RelayBytes
    connection_seconds: Durations


class Counters(BaseModel):
    """Counters of this service (all workers); the integration layer adds its own."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, Count | dict[str, Count]]

    sessions_created: Count
    session_create_failures: Count
    sessions_terminated: dict[str, Count] = Field(description="By termination reason")
    reaper_actions: dict[str, Count] = Field(description="By termination reason")
    reconciler_runs: Count
    schema_validation_failures: Count


class Metrics(Answer):
    """Service figures as JSON (metrics-schema.json); ``/metrics`` has them for Prometheus."""

    service: Literal["rdp-controller"]
    version: str
    timestamp: datetime
    sessions: SessionFigures
    servers: ServerFigures
    connections: ConnectionFigures
    relay: RelayFigures
    counters: Counters
    placement_latency_seconds: Durations
    integrations: dict[str, Any] | Omitted = Field(default=None, description="Peer calls and their circuits")
    warm_pool: dict[str, Any] | Omitted = Field(default=None, description="The warm pool, when configured")
