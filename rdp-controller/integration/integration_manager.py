"""
Integration manager: the RDP controller's clients for its peer services.

Each client is created lazily, on first use, from its ``*_URL`` setting; a peer whose URL is
unset has no client (the property answers None) and shows ``{"status": "not_configured"}`` in
``/health``: every peer is optional. A URL that cannot be used (not http(s)) is logged once and
reported as ``unhealthy`` with the reason; the service keeps running.

Service-call authentication: every request carries ``Authorization: Bearer <JWT>``, a
short-lived HS256 token minted with ``JWT_SECRET_KEY`` (subject ``rdp-controller``, roles
``["service"]``) whose audience is the PEER's name (``session-recorder``, ...). The audience is
the peer's own name so that a token captured at one peer cannot be replayed at another; each peer
verifies ``aud`` against its own name, the way this service verifies ``rdp-controller``. Tokens
are cached per peer and re-minted a minute before they expire. With an empty secret no token is
sent (development without auth).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Final, TypeVar

import httpx

from security.jwt_auth import MIN_SECRET_LENGTH, mint_token

from ..config import RdpControllerSettings
from .circuit_breaker import Clock
from .deliverable import DeliverableCalls
from .errors import PeerNotConfigured
from .rdp_monitor_client import RdpMonitorClient
from .rdp_server_manager_client import RdpServerManagerClient
from .service_base import ServiceClientBase, Sleep, redact_url
from .session_processor_client import SessionProcessorClient
from .session_recorder_client import SessionRecorderClient

logger = logging.getLogger(__name__)

SERVICE_SUBJECT: Final = "rdp-controller"
SERVICE_ROLES: Final = ("service",)
TOKEN_TTL_SECONDS: Final = 300
TOKEN_REFRESH_MARGIN: Final = 60
HEALTH_TIMEOUT_SECONDS: Final = 5.0
"""Per-peer bound of ``health_check_all`` (or the service timeout when that is shorter)."""

# The peers' keys: in /health, in the outbox's deliveries and in the metrics' labels.
SERVER_MANAGER: Final = "rdp_server_manager"
RECORDER: Final = "session_recorder"
PROCESSOR: Final = "session_processor"
MONITOR: Final = "rdp_monitor"

# Peer key -> (settings variable, peer service name = token audience, client class).
PEERS: Final[dict[str, tuple[str, str, type[ServiceClientBase]]]] = {
    SERVER_MANAGER: ("RDP_SERVER_MANAGER_URL", "rdp-server-manager", RdpServerManagerClient),
    RECORDER: ("SESSION_RECORDER_URL", "session-recorder", SessionRecorderClient),
    PROCESSOR: ("SESSION_PROCESSOR_URL", "session-processor", SessionProcessorClient),
    MONITOR: ("RDP_MONITOR_URL", "rdp-monitor", RdpMonitorClient),
}

ClientT = TypeVar("ClientT", bound=ServiceClientBase)


class ServiceTokens:
    """Short-lived service JWTs, one cached token per audience."""

    def __init__(self, secret: str, *, ttl_seconds: int = TOKEN_TTL_SECONDS, clock: Clock = time.time):
        self.secret = secret
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._cache: dict[str, tuple[str, float]] = {}

    def factory(self, audience: str) -> Callable[[], str]:
        def token() -> str:
            cached = self._cache.get(audience)
            now = self._clock()
            if cached is not None and cached[1] - TOKEN_REFRESH_MARGIN > now:
                return cached[0]
            minted = mint_token(
                secret=self.secret,
                subject=SERVICE_SUBJECT,
                roles=SERVICE_ROLES,
                audience=audience,
                ttl_seconds=self.ttl_seconds,
            )
            self._cache[audience] = (minted, now + self.ttl_seconds)
            return minted

        return token


class IntegrationManager:
    """Lazily created peer clients, their aggregated health, and their shutdown."""

    def __init__(
        self,
        settings: RdpControllerSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
    ):
        self.settings = settings
        self._transport = transport
        self._sleep = sleep
        self._clock = clock
        self._clients: dict[str, ServiceClientBase] = {}
        self._errors: dict[str, str] = {}
        self._tokens = self._service_tokens(settings.JWT_SECRET_KEY)
        unset = [PEERS[peer][0] for peer in PEERS if not self.is_configured(peer)]
        if unset:
            logger.info("Not set, so those peers are not called: %s", ", ".join(unset))

    @staticmethod
    def _service_tokens(secret: str) -> ServiceTokens | None:
        if not secret:
            logger.info("JWT_SECRET_KEY is empty: calls to peer services carry no bearer token")
            return None
        if len(secret) < MIN_SECRET_LENGTH:
            logger.warning(
                "JWT_SECRET_KEY is shorter than %d characters: no service tokens are minted for peer calls",
                MIN_SECRET_LENGTH,
            )
            return None
        return ServiceTokens(secret)

    # Lazy clients -------------------------------------------------------------------------
    @property
    def rdp_server_manager(self) -> RdpServerManagerClient | None:
        return self._typed("rdp_server_manager", RdpServerManagerClient)

    @property
    def session_recorder(self) -> SessionRecorderClient | None:
        return self._typed("session_recorder", SessionRecorderClient)

    @property
    def session_processor(self) -> SessionProcessorClient | None:
        return self._typed("session_processor", SessionProcessorClient)

    @property
    def rdp_monitor(self) -> RdpMonitorClient | None:
        return self._typed("rdp_monitor", RdpMonitorClient)

    def is_configured(self, peer: str) -> bool:
        """True when the peer's URL is set (whether or not its client could be built)."""
        return bool(self._url(peer))

    def client(self, peer: str) -> ServiceClientBase | None:
        """The peer's client, created on first use; None when its URL is unset or unusable."""
        if peer in self._clients:
            return self._clients[peer]
        url = self._url(peer)
        if not url or peer in self._errors:
            return None
        variable, service_name, client_class = PEERS[peer]
        settings = self.settings
        try:
            client = client_class(
                url,
                timeout=settings.SERVICE_TIMEOUT_SECONDS,
                retry_count=settings.SERVICE_RETRY_COUNT,
                retry_delay=settings.SERVICE_RETRY_DELAY_SECONDS,
                bearer_token_factory=self._tokens.factory(service_name) if self._tokens else None,
                failure_threshold=settings.SERVICE_CIRCUIT_FAILURE_THRESHOLD,
                reset_seconds=settings.SERVICE_CIRCUIT_RESET_SECONDS,
                transport=self._transport,
                peer_name=service_name,
                sleep=self._sleep,
                clock=self._clock,
            )
        except ValueError as exc:
            self._errors[peer] = f"{variable}: {exc}"
            logger.warning("%s client unavailable: %s", service_name, self._errors[peer])
            return None
        self._clients[peer] = client
        logger.info("Initialized %s client for %s", service_name, client.url)
        return client

    def deliverable_calls(self) -> DeliverableCalls:
        """Every peer client's outbox calls, by ``(peer, operation)``; each is sent through the peer's
        client, created on first use (``PeerNotConfigured`` when it has none)."""
        return {
            (peer, operation): call
            for peer, (_, _, client_class) in PEERS.items()
            for operation, call in client_class.deliverable_calls(self._required(peer)).items()
        }

    def _required(self, peer: str) -> Callable[[], ServiceClientBase]:
        def client() -> ServiceClientBase:
            found = self.client(peer)
            if found is None:
                raise PeerNotConfigured(f"{peer} is not configured on this replica")
            return found

        return client

    def _typed(self, peer: str, client_class: type[ClientT]) -> ClientT | None:
        client = self.client(peer)
        return client if isinstance(client, client_class) else None

    def _url(self, peer: str) -> str:
        value: str = getattr(self.settings, PEERS[peer][0])
        return value.strip()

    def circuit_states(self) -> dict[str, str]:
        """Each created client's circuit breaker state (``closed``, ``open``, ``half_open``)."""
        return {peer: client.breaker.state.value for peer, client in self._clients.items()}

    # Health and shutdown ------------------------------------------------------------------
    async def health_check_all(self) -> dict[str, dict[str, Any]]:
        """Every peer's health-schema ``integration`` object, checked concurrently, each bounded in time."""
        within = min(HEALTH_TIMEOUT_SECONDS, self.settings.SERVICE_TIMEOUT_SECONDS)
        names = list(PEERS)
        results = await asyncio.gather(*(self._health(peer, within) for peer in names))
        return dict(zip(names, results, strict=True))

    async def _health(self, peer: str, within: float) -> dict[str, Any]:
        url = self._url(peer)
        if not url:
            return {"status": "not_configured"}
        client = self.client(peer)
        if client is None:
            return {
                "status": "unhealthy",
                "url": redact_url(url),
                "error": self._errors.get(peer, "unavailable"),
            }
        try:
            # health_check bounds its own request; this also bounds a stuck connection pool.
            return await asyncio.wait_for(client.health_check(within=within), within + 1.0)
        except TimeoutError:
            return {"status": "unhealthy", "url": client.url, "error": f"no answer within {within:g}s"}

    async def close_all(self) -> None:
        """Close every client that was created; safe to call more than once."""
        clients, self._clients = self._clients, {}
        for peer, client in clients.items():
            try:
                await client.close()
            except (httpx.HTTPError, OSError, RuntimeError) as exc:
                logger.warning("Error closing the %s client: %s", peer, exc)
