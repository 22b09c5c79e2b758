"""
The relay's handshake: from a client's first bytes to a connection to its session's host.

``RelayHandshake.admit`` reads the client hello (an optional pre-connection PDU, then the X.224
Connection Request) within ``RDP_CONTROLLER_RELAY_HANDSHAKE_TIMEOUT``, takes the one-time token
from its routing token or PCB blob, refuses an address with too many failed redemptions this
minute, redeems the token once, checks that the session may connect (ready, or active, idle,
suspended on the same host), connects to the host within ``RDP_CONTROLLER_RELAY_CONNECT_TIMEOUT``,
forwards the request without the token and marks the session active. Anything else ends in
``Refused`` with its counted ``Outcome``; ``refuse`` answers a request that was read with an
X.224 Connection Confirm carrying ``RDP_NEG_FAILURE``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any, TypeVar

from pymongo.errors import PyMongoError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from common.errors import Conflict, LucidError, NotFound, Unauthorized
from protocol.errors import ProtocolError
from protocol.first_pdu import ClientHello, read_client_hello
from protocol.negotiation import NegFailureCode, NegotiationFailure
from protocol.x224 import encode_connection_confirm
from security.connection_tokens import ConnectionTokenStore

from .config import RdpControllerSettings
from .connection_manager import ConnectionManager, RelayedConnection
from .metrics import Metrics
from .models import SessionStatus
from .session_controller import SessionController
from .session_wire import SessionWire

logger = logging.getLogger(__name__)
T = TypeVar("T")

COPY_CHUNK = 64 * 1024
FAILURE_WINDOW_SECONDS = 60
REFUSAL = encode_connection_confirm(NegotiationFailure(NegFailureCode.SSL_CERT_NOT_ON_SERVER))
CONNECTABLE = frozenset(
    {SessionStatus.READY, SessionStatus.ACTIVE, SessionStatus.IDLE, SessionStatus.SUSPENDED}
)


class Outcome(StrEnum):
    """How a handshake ended (the label of ``relay_handshakes``)."""

    RELAYED = "relayed"
    TIMEOUT = "timeout"
    MALFORMED = "malformed"
    NO_TOKEN = "no_token"
    TOKEN_INVALID = "token_invalid"
    RATE_LIMITED = "rate_limited"
    SESSION_REFUSED = "session_refused"
    HOST_UNREACHABLE = "host_unreachable"
    BACKEND_UNAVAILABLE = "backend_unavailable"
    OVERLOADED = "overloaded"


class Refused(Exception):
    """A handshake that ends here; ``answer`` says whether the client gets a Connection Confirm."""

    def __init__(self, outcome: Outcome, detail: str, *, answer: bool = True):
        super().__init__(detail)
        self.outcome = outcome
        self.answer = answer


async def quietly(call: Awaitable[T], what: str) -> T | None:
    """Await bookkeeping whose failure must not break a relayed connection: log it instead."""
    try:
        return await call
    except (PyMongoError, RedisError, LucidError, OSError) as exc:
        logger.warning("Relay: %s failed: %s: %s", what, type(exc).__name__, exc)
        return None


def aborter(*writers: asyncio.StreamWriter) -> Callable[[], None]:
    """Close every side at once, dropping what is buffered (a relayed connection ends whole)."""

    def abort() -> None:
        for writer in writers:
            writer.transport.abort()

    return abort


def format_address(peer: object) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = str(peer[0])
        return f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"
    return str(peer)


async def refuse(writer: asyncio.StreamWriter, *, answer: bool) -> None:
    """Close a refused client; one whose request was read first gets the RDP_NEG_FAILURE confirm."""
    try:
        if answer:
            writer.write(REFUSAL)
            async with asyncio.timeout(1.0):
                await writer.drain()
        writer.close()
    except (OSError, TimeoutError):
        writer.transport.abort()


class RelayHandshake:
    def __init__(
        self,
        settings: RdpControllerSettings,
        sessions: SessionController,
        wire: SessionWire,
        tokens: ConnectionTokenStore,
        connections: ConnectionManager,
        redis: Redis,
        metrics: Metrics,
        *,
        relay_id: str,
    ):
        self.settings = settings
        self.sessions = sessions
        self.wire = wire
        self.tokens = tokens
        self.connections = connections
        self.redis = redis
        self.metrics = metrics
        self.relay_id = relay_id
        self._failure_prefix = f"{settings.RDP_CONTROLLER_REDIS_PREFIX}:relayfail:"

    async def admit(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client_address: str
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, RelayedConnection]:
        """Read the hello, redeem its token, check the session, connect the host: or raise ``Refused``."""
        timeout = self.settings.RDP_CONTROLLER_RELAY_HANDSHAKE_TIMEOUT
        try:
            async with asyncio.timeout(timeout):
                hello = await read_client_hello(reader)
        except TimeoutError:
            raise Refused(Outcome.TIMEOUT, f"no whole request within {timeout:g} s", answer=False) from None
        except ProtocolError as exc:
            raise Refused(Outcome.MALFORMED, str(exc), answer=False) from None
        except OSError as exc:
            raise Refused(Outcome.MALFORMED, f"reset during the handshake: {exc}", answer=False) from None
        token = self._token_of(hello)
        source = client_address.rpartition(":")[0]
        payload = await self._redeem(token, source)
        session_id = payload["session_id"]
        try:
            session = await self.sessions.get(session_id)
        except NotFound:
            raise Refused(Outcome.SESSION_REFUSED, f"session {session_id} is gone") from None
        except PyMongoError as exc:
            raise Refused(Outcome.BACKEND_UNAVAILABLE, f"MongoDB: {type(exc).__name__}") from None
        status = SessionStatus(session["status"])
        if status not in CONNECTABLE or session.get("server_id") != payload["server_id"]:
            raise Refused(Outcome.SESSION_REFUSED, f"session {session_id} is {status.value}")
        host_reader, host_writer = await self._open_host(payload["address"], int(payload["port"]))
        try:
            host_writer.write(hello.forwarded_request())
            document = await self.wire.client_connected(
                session_id,
                server_id=payload["server_id"],
                client_address=client_address,
                relay_id=self.relay_id,
            )
        except (Conflict, NotFound) as exc:
            host_writer.transport.abort()
            raise Refused(Outcome.SESSION_REFUSED, str(exc)) from None
        except (PyMongoError, RedisError, LucidError, OSError) as exc:
            host_writer.transport.abort()
            raise Refused(Outcome.BACKEND_UNAVAILABLE, f"{type(exc).__name__}: {exc}") from None
        connection = RelayedConnection(
            session_id=session_id,
            connection_id=document["connection_id"],
            client_address=client_address,
            abort=aborter(writer, host_writer),
        )
        self.connections.add(connection)
        self.metrics.set_gauge("relay_connections", len(self.connections))
        # A newer connection takes the session over: the older one closes wherever it is.
        await quietly(
            self.connections.close(session_id, keep=connection.connection_id, why="replaced"), "close"
        )
        return host_reader, host_writer, connection

    def _token_of(self, hello: ClientHello) -> str:
        try:
            token = hello.token()
        except ProtocolError as exc:
            raise Refused(Outcome.MALFORMED, str(exc)) from None
        if not token:
            raise Refused(Outcome.NO_TOKEN, "no routing token or pre-connection blob")
        return token

    async def _redeem(self, token: str, source: str) -> dict[str, Any]:
        limit = self.settings.RDP_CONTROLLER_RELAY_FAILURES_PER_MINUTE
        key = self._failure_prefix + source
        try:
            if limit and int(await self.redis.get(key) or 0) >= limit:
                raise Refused(Outcome.RATE_LIMITED, f"more than {limit} failed tokens a minute from {source}")
            return await self.tokens.redeem(token)
        except Unauthorized:
            if limit:
                await quietly(self._count_failure(key), "failure count")
            raise Refused(Outcome.TOKEN_INVALID, "token invalid, expired or used") from None
        except (RedisError, LucidError) as exc:
            raise Refused(Outcome.BACKEND_UNAVAILABLE, f"token store: {exc}") from None

    async def _count_failure(self, key: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, FAILURE_WINDOW_SECONDS, nx=True)
            await pipe.execute()

    async def _open_host(self, address: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        timeout = self.settings.RDP_CONTROLLER_RELAY_CONNECT_TIMEOUT
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.open_connection(address, port, limit=COPY_CHUNK)
        except TimeoutError:
            raise Refused(
                Outcome.HOST_UNREACHABLE, f"{address}:{port} not reached in {timeout:g} s"
            ) from None
        except OSError as exc:
            raise Refused(Outcome.HOST_UNREACHABLE, f"{address}:{port}: {exc.strerror or exc}") from None
