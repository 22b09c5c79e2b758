"""Pydantic models of the domain and of the sessions API. Request models refuse unknown fields.

These models are the one source of the shapes: ``api_document.py`` generates ``openapi.yaml`` and
the JSON schemas from them (``make openapi``; a test fails when the committed files differ). A rule
that a validator enforces but pydantic cannot derive (a resolution range, a colour depth list,
label keys) is stated for the schema in ``json_schema_extra`` beside the validator, and
``tests/unit/rdp_controller/test_openapi_rules.py`` checks that both sides accept the same inputs.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic.json_schema import SkipJsonSchema

ID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
USER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$"
HOST_USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@\\-]{0,103}$"
LABEL_KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
RESOLUTION_RE = re.compile(r"^([1-9][0-9]{2,4})x([1-9][0-9]{2,4})$")  # ASCII digits, no leading zero
ID_RE = re.compile(ID_PATTERN)
# A page cursor as the service issues it: microseconds since the epoch of the last session's
# created_at, then its id (storage/sessions.py encodes and decodes it).
CURSOR_PATTERN = rf"^[0-9]{{1,17}}\.{ID_PATTERN[1:-1]}$"

MIN_WIDTH, MIN_HEIGHT, MAX_WIDTH, MAX_HEIGHT = 640, 480, 7680, 4320
MAX_LIST_LIMIT = 200

# The resolution rule of ``SessionConfig._resolution`` as one pattern: no leading zeros, width
# 640 to 7680, height 480 to 4320.
RESOLUTION_PATTERN = (
    r"^(6[4-9][0-9]|[7-9][0-9]{2}|[1-6][0-9]{3}|7[0-5][0-9]{2}|76[0-7][0-9]|7680)"
    r"x(4[89][0-9]|[5-9][0-9]{2}|[1-3][0-9]{3}|4[0-2][0-9]{2}|43[01][0-9]|4320)$"
)
COLOR_DEPTHS = (8, 15, 16, 24, 32)

SessionId = Annotated[str, Field(pattern=ID_PATTERN, description="UUID, lowercase")]
#: An id in an answer: documented with its pattern, not checked again on the way out.
Uuid = Annotated[str, Field(json_schema_extra={"pattern": ID_PATTERN})]
UserId = Annotated[str, Field(pattern=USER_ID_PATTERN)]
LABELS_RULE = f"Keys match {LABEL_KEY_PATTERN}; values are strings of up to 128 characters"
Labels = Annotated[
    dict[str, Annotated[str, Field(max_length=128)]],
    Field(
        max_length=32,
        description=LABELS_RULE,
        json_schema_extra={
            "propertyNames": {"pattern": LABEL_KEY_PATTERN},
            "patternProperties": {LABEL_KEY_PATTERN: {"type": "string", "maxLength": 128}},
            "additionalProperties": False,
        },
    ),
]
#: A field an answer may leave out, never null in it: ``reconnected: bool | Omitted = None``.
Omitted = SkipJsonSchema[None]


class SessionStatus(StrEnum):
    CREATING = "creating"
    READY = "ready"
    ACTIVE = "active"
    IDLE = "idle"
    SUSPENDED = "suspended"
    TERMINATED = "terminated"
    ERROR = "error"


LIVE_STATUSES = (
    SessionStatus.CREATING,
    SessionStatus.READY,
    SessionStatus.ACTIVE,
    SessionStatus.IDLE,
    SessionStatus.SUSPENDED,
)
FINAL_STATUSES = (SessionStatus.TERMINATED, SessionStatus.ERROR)


class ServerState(StrEnum):
    """A server's state: its health as probed (available, degraded, unhealthy) or an operator's
    say (draining, disabled)."""

    AVAILABLE = "available"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    DRAINING = "draining"
    DISABLED = "disabled"


class TerminationReason(StrEnum):
    USER_REQUEST = "user_request"
    ADMIN = "admin"
    IDLE_TIMEOUT = "idle_timeout"
    DISCONNECT_TIMEOUT = "disconnect_timeout"
    MAX_DURATION = "max_duration"
    SERVER_UNHEALTHY = "server_unhealthy"
    SERVER_REMOVED = "server_removed"
    READY_TIMEOUT = "ready_timeout"
    ERROR = "error"


class StrictModel(BaseModel):
    """Base of request models: unknown fields are refused, and so are values of another JSON type.

    ``strict`` stops pydantic's coercions (``"yes"`` or ``1`` for a boolean, ``"24"`` or ``24.0``
    for an integer): the API takes the types its schema documents. Enum fields opt out with
    ``Field(strict=False)``, since strict validation would want enum instances, not their values.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False, strict=True)


def check_labels(value: dict[str, str]) -> dict[str, str]:
    for key in value:
        if not re.fullmatch(LABEL_KEY_PATTERN, key):
            raise ValueError(f"label key {key[:64]!r} must match {LABEL_KEY_PATTERN}")
    return value


class SessionConfig(StrictModel):
    """What a session asks for. Timeouts are seconds; omitted ones take the service defaults."""

    display_resolution: str = Field(
        default="1920x1080",
        description="WIDTHxHEIGHT, no leading zeros: width 640 to 7680, height 480 to 4320",
        json_schema_extra={"pattern": RESOLUTION_PATTERN},
    )
    color_depth: int = Field(
        default=24, description="Bits per pixel", json_schema_extra={"enum": list(COLOR_DEPTHS)}
    )
    audio_enabled: bool = False
    clipboard_enabled: bool = True
    file_transfer_enabled: bool = False
    printer_enabled: bool = Field(
        default=False, description="Redirect the client's printers (redirectprinters)"
    )
    smartcard_enabled: bool = Field(
        default=False, description="Redirect the client's smart cards (redirectsmartcards)"
    )
    host_username: str | None = Field(
        default=None,
        pattern=HOST_USERNAME_PATTERN,
        description="Account name on the RDP host, prefilled as the .rdp username "
        "(the controller's user_id is not a host account)",
    )
    idle_timeout: int | None = Field(default=None, ge=1, le=7 * 86400)
    session_timeout: int | None = Field(default=None, ge=1, le=30 * 86400)
    disconnect_timeout: int | None = Field(default=None, ge=1, le=7 * 86400)
    labels: Labels = Field(
        default_factory=dict, description=f"Placement: servers must carry these labels. {LABELS_RULE}"
    )
    dedicated_server: bool = Field(default=False, description="Provision a dedicated server for this session")

    @field_validator("display_resolution")
    @classmethod
    def _resolution(cls, value: str) -> str:
        match = RESOLUTION_RE.fullmatch(value)
        if not match:
            raise ValueError("must look like 1920x1080")
        width, height = int(match.group(1)), int(match.group(2))
        if not (MIN_WIDTH <= width <= MAX_WIDTH and MIN_HEIGHT <= height <= MAX_HEIGHT):
            raise ValueError(f"must be between {MIN_WIDTH}x{MIN_HEIGHT} and {MAX_WIDTH}x{MAX_HEIGHT}")
        return value

    @field_validator("color_depth")
    @classmethod
    def _depth(cls, value: int) -> int:
        if value not in COLOR_DEPTHS:
            raise ValueError("must be one of 8, 15, 16, 24, 32")
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        return check_labels(value)


class CreateSessionRequest(StrictModel):
    user_id: UserId | None = Field(default=None, description="Required unless the token is a user's own")
    server_id: SessionId | None = Field(default=None, description="Pin the session to this server")
    session_config: SessionConfig = Field(default_factory=SessionConfig)
    new_session: bool = Field(default=False, description="Never offer reconnect to a suspended session")


class StatusUpdateRequest(StrictModel):
    """`status`: the targets a caller may ask for (`creating`, `ready` and `error` are set by the
    controller only: asking for them is a 409 `INVALID_TRANSITION`). `reason` only with `terminated`
    (default `admin`)."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [  # a reason (not null) comes with status terminated
                {"properties": {"status": {"enum": ["terminated"]}}},
                {"not": {"required": ["reason"]}},
                {"properties": {"reason": {"not": {"type": "string"}}}},
            ]
        }
    )

    status: SessionStatus = Field(
        strict=False, json_schema_extra={"enum": ["active", "idle", "suspended", "terminated"]}
    )
    reason: TerminationReason | None = Field(default=None, strict=False)

    @field_validator("reason")
    @classmethod
    def _reason_with_terminated(
        cls, value: TerminationReason | None, info: ValidationInfo
    ) -> TerminationReason | None:
        if (
            value is not None
            and "status" in info.data
            and info.data["status"] is not SessionStatus.TERMINATED
        ):
            raise ValueError("only with status terminated")
        return value


class ActivityRequest(StrictModel):
    bytes_in: int | None = Field(default=None, ge=0, le=2**53)
    bytes_out: int | None = Field(default=None, ge=0, le=2**53)


class Answer(BaseModel):
    """Base of the models of answers: their schemas say no other field appears."""

    model_config = ConfigDict(extra="forbid")


class Session(Answer):
    """A session as the API shows it."""

    session_id: Uuid
    user_id: str = Field(json_schema_extra={"minLength": 1, "maxLength": 128})
    server_id: Uuid | None
    connection_id: Uuid
    status: SessionStatus
    session_config: SessionConfig
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    last_activity_at: datetime | None = None
    suspended_at: datetime | None = None
    terminated_at: datetime | None = None
    idle_deadline: datetime | None = None
    disconnect_deadline: datetime | None = None
    max_deadline: datetime | None = None
    termination_reason: TerminationReason | None = None
    error_detail: str | None = Field(
        default=None,
        json_schema_extra={"maxLength": 300},
        description="Why the session is in error (its dedicated server could not be provisioned)",
    )
    version: int = Field(ge=1)
    reconnected: bool | Omitted = Field(
        default=None, description="Present on create when a suspended session was reconnected"
    )

    @classmethod
    def from_document(cls, document: dict[str, Any], **extra: Any) -> Session:
        fields = {name: document.get(name) for name in cls.model_fields if name in document}
        return cls.model_validate({**fields, **extra})


class SessionPage(Answer):
    items: list[Session]
    next_cursor: str | None = Field(description="Pass as cursor for the next page")


class ConnectionMode(StrEnum):
    RELAY = "relay"
    DIRECT = "direct"


class ConnectionDescriptor(Answer):
    """Where the client connects. `relay` mode: the relay's public address
    (RDP_CONTROLLER_RELAY_PUBLIC_ADDRESS); the token travels in the X.224 routing token
    (`loadbalanceinfo`) and the relay redeems it once. `direct` mode (RDP_CONTROLLER_RELAY_PORT=0):
    the host itself; the controller cannot see the connection."""

    mode: ConnectionMode
    session_id: Uuid
    connection_id: Uuid
    server_id: Uuid
    address: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    token: str = Field(
        description="One-time token (rct_...), redeemable once before it expires",
        json_schema_extra={"pattern": "^rct_[A-Za-z0-9_-]{43}$"},
    )
    token_expires_at: datetime
    rdp_file: str = Field(
        description="Contents of a .rdp file (CRLF line endings)",
        json_schema_extra={"pattern": "full address:s:"},
    )


class SessionEvent(Answer):
    event_id: Uuid
    session_id: Uuid
    from_status: SessionStatus | None
    to_status: SessionStatus
    reason: str | None
    actor: str
    at: datetime


class SessionEventList(Answer):
    items: list[SessionEvent]


class MonitorFigures(BaseModel):
    status: Literal["not_configured", "ok", "unavailable"]
    figures: dict[str, Any] | Omitted = None
    error: str | Omitted = None


class SessionMetrics(Answer):
    session_id: Uuid
    status: SessionStatus
    duration_seconds: float = Field(ge=0)
    connected_seconds: float = Field(ge=0)
    connections: int = Field(ge=0)
    bytes_in: int = Field(ge=0)
    bytes_out: int = Field(ge=0)
    last_activity_at: datetime | None
    monitor: MonitorFigures = Field(description="rdp-monitor's figures when it is configured")


class SessionServerHealth(BaseModel):
    server_id: str | None
    state: str | None
    reachable: bool | None
    checked_at: datetime | None


class SessionDeadlines(BaseModel):
    idle_in_seconds: float | None
    disconnect_in_seconds: float | None
    max_in_seconds: float | None


class SessionHealth(Answer):
    session_id: Uuid
    status: SessionStatus
    healthy: bool
    server: SessionServerHealth
    deadlines: SessionDeadlines


def is_uuid(value: str) -> bool:
    return bool(ID_RE.fullmatch(value))
