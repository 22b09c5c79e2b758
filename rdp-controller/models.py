"""Pydantic models of the domain and the API. Request models refuse unknown fields."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

ID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
USER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$"
HOST_USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@\\-]{0,103}$"
LABEL_KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
RESOLUTION_RE = re.compile(r"^([1-9][0-9]{2,4})x([1-9][0-9]{2,4})$")  # ASCII digits, no leading zero
ID_RE = re.compile(ID_PATTERN)

MIN_WIDTH, MIN_HEIGHT, MAX_WIDTH, MAX_HEIGHT = 640, 480, 7680, 4320
MAX_LIST_LIMIT = 200

SessionId = Annotated[str, Field(pattern=ID_PATTERN, description="UUID, lowercase")]
UserId = Annotated[str, Field(pattern=USER_ID_PATTERN)]
Labels = Annotated[dict[str, Annotated[str, Field(max_length=128)]], Field(max_length=32)]


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

    display_resolution: str = Field(default="1920x1080", description="WIDTHxHEIGHT, 640x480 to 7680x4320")
    color_depth: int = Field(default=24, description="8, 15, 16, 24 or 32 bits per pixel")
    audio_enabled: bool = False
    clipboard_enabled: bool = True
    file_transfer_enabled: bool = False
    printer_enabled: bool = False
    smartcard_enabled: bool = False
    host_username: str | None = Field(
        default=None,
        pattern=HOST_USERNAME_PATTERN,
        description="Account name on the RDP host, prefilled in the .rdp file (the user_id is not one)",
    )
    idle_timeout: int | None = Field(default=None, ge=1, le=7 * 86400)
    session_timeout: int | None = Field(default=None, ge=1, le=30 * 86400)
    disconnect_timeout: int | None = Field(default=None, ge=1, le=7 * 86400)
    labels: Labels = Field(default_factory=dict, description="Placement: servers must carry these labels")
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
        if value not in (8, 15, 16, 24, 32):
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
    status: SessionStatus = Field(strict=False)
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


class Session(BaseModel):
    """A session as the API shows it."""

    session_id: str
    user_id: str
    server_id: str | None
    connection_id: str
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
    error_detail: str | None = Field(default=None, description="Why the session is in error")
    version: int
    reconnected: bool | None = None

    @classmethod
    def from_document(cls, document: dict[str, Any], **extra: Any) -> Session:
        fields = {name: document.get(name) for name in cls.model_fields if name in document}
        return cls.model_validate({**fields, **extra})


class SessionPage(BaseModel):
    items: list[Session]
    next_cursor: str | None


class ConnectionMode(StrEnum):
    RELAY = "relay"
    DIRECT = "direct"


class ConnectionDescriptor(BaseModel):
    """Where a client connects: the relay (``relay`` mode) or the host itself (``direct`` mode)."""

    mode: ConnectionMode
    session_id: str
    connection_id: str
    server_id: str
    address: str
    port: int
    token: str
    token_expires_at: datetime
    rdp_file: str


def is_uuid(value: str) -> bool:
    return bool(ID_RE.fullmatch(value))
