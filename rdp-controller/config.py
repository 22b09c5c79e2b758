"""
RDP Controller configuration management.

Priority, highest first: environment variables, then the YAML/JSON file named by
``RDP_CONTROLLER_CONFIG_FILE`` (flat keys, the same names as the variables), then the
defaults below. ``RdpControllerSettings`` is one typed object built once and passed down;
tests build their own.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from security.urls import is_loopback_url, loopback_error

logger = logging.getLogger(__name__)

DEFAULT_CONFIG_FILE = Path(__file__).with_name("config.yaml")
MIN_JWT_SECRET_LENGTH = 32

# Integration variables and the service name each one should use in production.
INTEGRATION_URLS: dict[str, str] = {
    "RDP_SERVER_MANAGER_URL": "http://rdp-server-manager:8081",
    "RDP_XRDP_URL": "http://rdp-xrdp:3389",
    "SESSION_RECORDER_URL": "http://session-recorder:8093",
    "SESSION_PROCESSOR_URL": "http://session-processor:8087",
    "RDP_MONITOR_URL": "http://rdp-monitor:8091",
}


class StaticServer(BaseModel):
    """An RDP host listed in configuration rather than registered through the API."""

    model_config = ConfigDict(extra="forbid")

    name: str
    address: str
    port: int = Field(default=3389, ge=1, le=65535)
    capacity: int = Field(default=10, ge=1, le=10_000)
    weight: float = Field(default=1.0, gt=0, le=1000)
    labels: dict[str, str] = Field(default_factory=dict)


class RdpControllerSettings(BaseSettings):
    """Every setting the RDP controller reads. Names follow the container template."""

    model_config = SettingsConfigDict(env_file_encoding="utf-8", case_sensitive=False, extra="ignore")

    # Service
    RDP_CONTROLLER_HOST: str = Field(
        default="0.0.0.0", description="Host name peers use for this service (the process binds 0.0.0.0)"
    )
    RDP_CONTROLLER_PORT: int = Field(default=8092, ge=1, le=65535, description="Service port")
    RDP_CONTROLLER_URL: str = Field(default="", description="URL other services use to reach this one")
    RDP_CONTROLLER_WORKERS: int = Field(
        default=1, ge=1, le=64, description="Worker processes of the service (HTTP and the RDP relay)"
    )

    # Databases (required)
    MONGODB_URL: str = Field(default="", description="MongoDB connection URL")
    MONGODB_DATABASE: str = Field(default="lucid_rdp", description="MongoDB database name")
    REDIS_URL: str = Field(default="", description="Redis connection URL")
    RDP_CONTROLLER_REDIS_PREFIX: str = Field(
        default="rdp", pattern=r"^[A-Za-z0-9_.-]{1,40}$", description="Prefix of every Redis key"
    )
    BACKEND_TIMEOUT_SECONDS: float = Field(default=2.0, gt=0, le=60, description="MongoDB/Redis call timeout")

    # Environment
    LUCID_ENV: Literal["production", "development", "test"] = Field(default="production")
    # Template labels: every Lucid container carries them; this service reads none of them
    # (docs/configuration.md, "Template labels").
    LUCID_PLATFORM: str = Field(default="arm64")
    PROJECT_ROOT: str = Field(default="/mnt/myssd/Lucid/Lucid")
    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(default="INFO")

    # Storage paths (volume mounts)
    LUCID_STORAGE_PATH: str = Field(default="/app/data")
    LUCID_LOGS_PATH: str = Field(default="/app/logs")
    RDP_CONTROLLER_SCHEMA_DIR: str = Field(default="", description="Schema folder; empty = beside the code")
    RDP_CONTROLLER_VALIDATE_RESPONSES: bool = Field(
        default=False,
        description="Check every response against its JSON schema (logged and counted); the tests turn it on",
    )

    # Integration clients
    SERVICE_TIMEOUT_SECONDS: float = Field(default=30.0, gt=0, le=600)
    SERVICE_RETRY_COUNT: int = Field(default=3, ge=1, le=10)
    SERVICE_RETRY_DELAY_SECONDS: float = Field(default=1.0, ge=0, le=60)
    SERVICE_CIRCUIT_FAILURE_THRESHOLD: int = Field(default=5, ge=1, le=1000)
    SERVICE_CIRCUIT_RESET_SECONDS: float = Field(default=30.0, gt=0, le=3600)
    RDP_SERVER_MANAGER_URL: str = Field(default="")
    RDP_XRDP_URL: str = Field(default="")
    SESSION_RECORDER_URL: str = Field(default="")
    SESSION_PROCESSOR_URL: str = Field(default="")
    RDP_MONITOR_URL: str = Field(default="")
    RDP_CONTROLLER_OUTBOX_INTERVAL: float = Field(default=5.0, gt=0, le=3600)
    RDP_CONTROLLER_WARM_POOL_SIZE: int = Field(default=0, ge=0, le=100)
    RDP_CONTROLLER_PROVISION_TIMEOUT: float = Field(
        default=300.0, gt=0, le=3600, description="Seconds a session may stay creating (then error)"
    )
    RDP_CONTROLLER_WARM_POOL_IDLE_SECONDS: int = Field(default=3600, ge=60, le=7 * 86400)

    # Security
    JWT_SECRET_KEY: str = Field(default="", description="HS256 key for bearer tokens (32+ characters)")
    JWT_AUDIENCE: str = Field(default="rdp-controller")
    JWT_LEEWAY_SECONDS: int = Field(default=30, ge=0, le=300)
    RDP_CONTROLLER_AUTH_ENABLED: bool = Field(default=True, description="Development only may disable")
    RDP_CONTROLLER_RATE_LIMIT_PER_MINUTE: int = Field(default=600, ge=0, le=1_000_000, description="0 = off")
    RDP_CONTROLLER_MAX_BODY_BYTES: int = Field(default=65536, ge=1024, le=10 * 1024 * 1024)
    RDP_CONTROLLER_CONNECTION_TOKEN_TTL: int = Field(default=120, ge=10, le=3600)

    # RDP relay (the controller on the connection path; 0 = off, "direct" mode)
    RDP_CONTROLLER_RELAY_PORT: int = Field(
        default=3389, ge=0, le=65535, description="RDP relay listener port; 0 switches the relay off"
    )
    RDP_CONTROLLER_RELAY_BIND: str = Field(
        default="0.0.0.0", pattern=r"^[0-9A-Fa-f.:]{2,45}$", description="Address the relay listens on"
    )
    RDP_CONTROLLER_RELAY_PUBLIC_ADDRESS: str = Field(
        default="",
        pattern=r"^$|^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]{1,253}):[0-9]{1,5}$",
        description="host:port clients are told to use; empty = 127.0.0.1:<port> (not in production)",
    )
    RDP_CONTROLLER_RELAY_HANDSHAKE_TIMEOUT: float = Field(default=10.0, gt=0, le=120)
    RDP_CONTROLLER_RELAY_CONNECT_TIMEOUT: float = Field(default=5.0, gt=0, le=120)
    RDP_CONTROLLER_RELAY_MAX_CONNECTIONS: int = Field(default=2000, ge=1, le=100_000)
    RDP_CONTROLLER_RELAY_FAILURES_PER_MINUTE: int = Field(default=20, ge=0, le=100_000, description="0 = off")
    RDP_CONTROLLER_ACTIVITY_FLUSH_SECONDS: float = Field(default=30.0, gt=0, le=3600)

    # Sessions
    RDP_CONTROLLER_MAX_SESSIONS_PER_USER: int = Field(default=3, ge=1, le=1000)
    RDP_CONTROLLER_IDLE_TIMEOUT: int = Field(default=1800, ge=1, le=7 * 86400)
    RDP_CONTROLLER_DISCONNECT_TIMEOUT: int = Field(default=900, ge=1, le=7 * 86400)
    RDP_CONTROLLER_SESSION_TIMEOUT: int = Field(default=28800, ge=1, le=30 * 86400)
    RDP_CONTROLLER_READY_TIMEOUT: int = Field(
        default=300,
        ge=0,
        le=7 * 86400,
        description="Terminate (ready_timeout) a ready session no client connected within this; 0 = never",
    )
    RDP_CONTROLLER_REAPER_INTERVAL: float = Field(default=5.0, gt=0, le=3600)
    RDP_CONTROLLER_POOL_VIEW_TTL: float = Field(
        default=5.0,
        ge=0,
        le=300,
        description="Seconds a replica may reuse the server list placement read (checked against a Redis "
        "version on every create); 0 = read MongoDB on every create",
    )
    RDP_CONTROLLER_HEALTH_INTERVAL: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="Seconds between the checks /health reports (MongoDB, Redis, peers)",
    )
    RDP_CONTROLLER_RECONCILE_INTERVAL: float = Field(default=30.0, gt=0, le=86400)
    RDP_CONTROLLER_LEASE_TTL: int = Field(default=300, ge=5, le=86400)
    RDP_CONTROLLER_EVENT_RETENTION_DAYS: int = Field(default=30, ge=1, le=3650)

    # Server pool
    RDP_CONTROLLER_SERVERS: list[StaticServer] = Field(default_factory=list)
    RDP_CONTROLLER_PROBE_INTERVAL: float = Field(default=30.0, gt=0, le=3600)
    RDP_CONTROLLER_PROBE_TIMEOUT: float = Field(default=5.0, gt=0, le=120)
    RDP_CONTROLLER_PROBE_CONCURRENCY: int = Field(default=50, ge=1, le=5000)
    RDP_CONTROLLER_UNHEALTHY_THRESHOLD: int = Field(default=3, ge=1, le=100)
    RDP_CONTROLLER_HEALTHY_THRESHOLD: int = Field(default=2, ge=1, le=100)
    RDP_CONTROLLER_UNHEALTHY_GRACE_SECONDS: int = Field(
        default=0,
        ge=0,
        le=7 * 86400,
        description="Terminate (server_unhealthy) the sessions of a host unhealthy for longer; 0 = off",
    )

    @property
    def is_production(self) -> bool:
        return self.LUCID_ENV == "production"

    @property
    def relay_enabled(self) -> bool:
        return self.RDP_CONTROLLER_RELAY_PORT != 0

    @property
    def relay_public_address(self) -> tuple[str, int]:
        """Where clients are told to connect: ``RDP_CONTROLLER_RELAY_PUBLIC_ADDRESS`` as (host, port)."""
        value = self.RDP_CONTROLLER_RELAY_PUBLIC_ADDRESS or f"127.0.0.1:{self.RDP_CONTROLLER_RELAY_PORT}"
        host, _, port = value.rpartition(":")
        return host.strip("[]"), int(port)

    def problems(self) -> list[str]:
        """What stops this configuration from running; each message names the variable and the fix."""
        found: list[str] = []
        # Live sessions' leases are renewed by the reconciler, a leader loop whose lock outlives a
        # crashed leader by max(3 periods, 10 s): a lease must outlast that plus one period.
        interval = self.RDP_CONTROLLER_RECONCILE_INTERVAL
        if max(3 * interval, 10.0) + interval >= self.RDP_CONTROLLER_LEASE_TTL:
            found.append(
                f"RDP_CONTROLLER_LEASE_TTL ({self.RDP_CONTROLLER_LEASE_TTL}) must exceed "
                f"max(3 x RDP_CONTROLLER_RECONCILE_INTERVAL, 10) + RDP_CONTROLLER_RECONCILE_INTERVAL "
                f"({max(3 * interval, 10.0) + interval:g}), or a live session could lose its slot"
            )
        for name, example in (("MONGODB_URL", "lucid-mongodb"), ("REDIS_URL", "lucid-redis")):
            value = getattr(self, name)
            if not value:
                found.append(f"{name} is required: set it in the environment or the config file")
            elif self.is_production and is_loopback_url(value):
                found.append(loopback_error(name, example))
        public = self.RDP_CONTROLLER_RELAY_PUBLIC_ADDRESS
        if public and not 1 <= int(public.rpartition(":")[2]) <= 65535:
            found.append(f"RDP_CONTROLLER_RELAY_PUBLIC_ADDRESS ({public}): the port must be 1..65535")
        if not self.is_production:
            return found
        if self.relay_enabled and not public:
            found.append(
                "RDP_CONTROLLER_RELAY_PUBLIC_ADDRESS is required in production while the relay is on: "
                "the host:port RDP clients reach the relay at (RDP_CONTROLLER_RELAY_PORT=0: direct mode)"
            )
        for name, example in INTEGRATION_URLS.items():
            value = getattr(self, name)
            if value and is_loopback_url(value):
                found.append(loopback_error(name, example.split("//", 1)[1].split(":", 1)[0]))
        if not self.RDP_CONTROLLER_AUTH_ENABLED:
            found.append("RDP_CONTROLLER_AUTH_ENABLED=false is refused in production")
        if len(self.JWT_SECRET_KEY) < MIN_JWT_SECRET_LENGTH:
            found.append(
                f"JWT_SECRET_KEY must be set to at least {MIN_JWT_SECRET_LENGTH} characters in production "
                "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(48))')"
            )
        return found


class ConfigError(ValueError):
    """Configuration that cannot run; the message lists every problem."""


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a flat YAML or JSON mapping of setting names to values."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text) if text.strip() else {}
        elif path.suffix.lower() in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        else:
            raise ConfigError(f"config file {path} must end in .yaml, .yml or .json")
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid {path.suffix[1:].upper()}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping of setting names, not {type(data).__name__}"
        )
    known = {name.upper() for name in RdpControllerSettings.model_fields}
    unknown = sorted(str(key) for key in data if str(key).upper() not in known)
    if unknown:
        raise ConfigError(f"config file {path} has unknown settings: {', '.join(unknown)}")
    return {str(key).upper(): value for key, value in data.items()}


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"]) or "(settings)"
        parts.append(f"{field}: {error['msg']}")
    return "; ".join(parts)


class RdpControllerConfig:
    """Loads the settings from file and environment and refuses a configuration that cannot run."""

    def __init__(self, config_file: str | os.PathLike[str] | None = None, *, validate: bool = True):
        named = config_file or os.getenv("RDP_CONTROLLER_CONFIG_FILE")
        self.config_file = Path(named) if named else DEFAULT_CONFIG_FILE
        self.settings = self._load_config(explicit=bool(named))
        if validate:
            self._validate_config()

    def _load_config(self, *, explicit: bool) -> RdpControllerSettings:
        file_data: dict[str, Any] = {}
        if self.config_file.exists():
            file_data = read_config_file(self.config_file)
            logger.info("Loaded configuration from %s", self.config_file)
        elif explicit:
            raise ConfigError(f"config file {self.config_file} (RDP_CONTROLLER_CONFIG_FILE) does not exist")
        try:
            from_env = RdpControllerSettings()
            env_values = from_env.model_dump(include=from_env.model_fields_set)
            # Environment over file over defaults: validate the merge without re-reading the environment.
            return RdpControllerSettings.model_validate({**file_data, **env_values})
        except ValidationError as exc:
            raise ConfigError(f"invalid configuration: {_describe(exc)}") from exc

    def _validate_config(self) -> None:
        problems = self.settings.problems()
        if problems:
            raise ConfigError("configuration refused:\n  - " + "\n  - ".join(problems))


def load_config(config_file: str | os.PathLike[str] | None = None) -> RdpControllerConfig:
    """Load and check the configuration; raises ``ConfigError`` with every problem found."""
    return RdpControllerConfig(config_file=config_file)
