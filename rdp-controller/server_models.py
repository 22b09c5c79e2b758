"""Models of the servers API: the RDP hosts of the pool, as registered, updated and shown.

``ServerCreate`` and ``ServerUpdate`` validate requests; the others describe answers (the routes
answer the stored documents; these models give ``openapi.yaml`` their shape, see models.py).
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from .models import Answer, Labels, Omitted, ServerState, StrictModel, Uuid, check_labels

NUMERIC_LABEL_RE = re.compile(r"^[0-9]+$")
BROADCAST = ipaddress.IPv4Address("255.255.255.255")
HOSTNAME_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOSTNAME_PATTERN = rf"^({HOSTNAME_LABEL})(\.{HOSTNAME_LABEL})*$"
HOSTNAME_RE = re.compile(rf"(?=.{{1,253}}$){HOSTNAME_PATTERN}")


#: ``check_address`` for the OpenAPI document.
ADDRESS_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"format": "ipv4", "not": {"pattern": r"^(0\.0\.0\.0|255\.255\.255\.255|2(2[4-9]|3[0-9])\..*)$"}},
        {"format": "ipv6", "not": {"pattern": r"^([0:]+|[fF]{2}[0-9a-fA-F]{2}:.*|.*%.*)$"}},
        {
            "pattern": HOSTNAME_PATTERN,
            "not": {"pattern": r"(^|\.)[0-9]+$"},
        },
    ]
}


def check_address(value: str) -> str:
    """An IP address (normalised) or a host name (lower case) an RDP client can connect to.

    Refused: what is neither; names whose last label is all digits (``999.1.1.1``, ``10.0.0.01``:
    malformed IPv4 addresses, not names); the unspecified, multicast and broadcast addresses; IPv6
    addresses with a zone (``fe80::1%eth0``). ``ADDRESS_SCHEMA`` says the same for the OpenAPI document.
    """
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        if HOSTNAME_RE.fullmatch(value) and not NUMERIC_LABEL_RE.fullmatch(value.rsplit(".", 1)[-1]):
            return value.lower()
        raise ValueError("must be an IP address or a host name") from None
    if address.is_unspecified or address.is_multicast or address == BROADCAST:
        raise ValueError(f"{address} is not the address of a host")
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        raise ValueError("a scoped IPv6 address (%zone) names an interface of one machine, not a host")
    return str(address)


class ServerCreate(StrictModel):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    address: str = Field(
        min_length=1,
        max_length=253,
        description="An IPv4 or IPv6 address that is not unspecified, multicast or broadcast, or an ASCII "
        "host name (labels of 1 to 63 letters, digits and inner hyphens; the last one not all digits). "
        "Stored normalised: the address in its short form, the name in lower case.",
        json_schema_extra=ADDRESS_SCHEMA,
    )
    port: int = Field(default=3389, ge=1, le=65535)
    capacity: int = Field(default=10, ge=1, le=10_000)
    weight: float = Field(default=1.0, gt=0, le=1000)
    labels: Labels = Field(default_factory=dict)
    pinned_cert_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        return check_address(value)

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        return check_labels(value)


class ServerUpdate(StrictModel):
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [  # a drain deadline (not null) comes with draining true
                {"not": {"required": ["drain_deadline_seconds"]}},
                {"properties": {"drain_deadline_seconds": {"not": {"type": "integer"}}}},
                {"required": ["draining"], "properties": {"draining": {"enum": [True]}}},
            ]
        }
    )

    capacity: int | None = Field(
        default=None, ge=1, le=10_000, description="Not below the live session count"
    )
    weight: float | None = Field(default=None, gt=0, le=1000)
    labels: Labels | None = None
    draining: bool | None = Field(default=None, description="Take no new sessions; keep existing ones")
    drain_deadline_seconds: int | None = Field(
        default=None, ge=0, le=7 * 86400, description="With draining: terminate remaining sessions after this"
    )
    disabled: bool | None = None
    pinned_cert_sha256: str | None = Field(
        default=None, pattern=r"^([0-9a-f]{64})?$", description="Empty string unpins"
    )

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return None if value is None else check_labels(value)

    @field_validator("drain_deadline_seconds")
    @classmethod
    def _deadline_with_drain(cls, value: int | None, info: ValidationInfo) -> int | None:
        # ``draining`` is declared first, so it is in ``info.data`` when it was valid.
        if value is not None and "draining" in info.data and info.data["draining"] is not True:
            raise ValueError("only with draining=true")
        return value


class ProbeResult(BaseModel):
    """The last RDP probe of a server: X.224 negotiation, then TLS."""

    reachable: bool
    latency_ms: float | None = None
    selected_protocol: str | None = None
    tls_version: str | None = None
    cert_sha256: str | None = None
    cert_subject: str | None = None
    cert_not_after: str | None = None
    failure_code: int | None = None
    failure_name: str | None = None
    error: str | None = None
    checked_at: datetime


class Server(BaseModel):
    server_id: Uuid
    name: str
    address: str
    port: int
    capacity: int
    weight: float
    labels: Labels
    state: ServerState
    draining: bool | Omitted = None
    drain_deadline: datetime | None = None
    source: Literal["api", "config", "warm_pool"] | Omitted = None
    pinned_cert_sha256: str | None = None
    last_probe: ProbeResult | None = None
    consecutive_successes: int | Omitted = None
    consecutive_failures: int | Omitted = None
    health_state: ServerState | None = Field(
        default=None, description="What the probes measured, also while draining or disabled"
    )
    state_reason: Literal["probe_failed", "certificate_mismatch", "certificate_changed"] | None = None
    state_detail: str | None = Field(default=None, description="A sentence on the last state change")
    last_cert_sha256: str | None = None
    unhealthy_since: datetime | None = None
    health_version: int | Omitted = None
    live_sessions: int = Field(ge=0)
    created_at: datetime | Omitted = None
    updated_at: datetime | Omitted = None


class ServerList(Answer):
    items: list[Server]


class ServerRemoved(Answer):
    server_id: Uuid
    removed: bool
    terminated_sessions: list[Uuid]
