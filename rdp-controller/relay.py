"""
The RDP relay: the controller on the connection path.

A TCP listener (``RDP_CONTROLLER_RELAY_PORT``) owned by the lifespan. For each client it
(``relay_handshake.py``) reads
the first PDU(s) within ``RDP_CONTROLLER_RELAY_HANDSHAKE_TIMEOUT`` and a size bound (an
optional Pre-Connection PDU, then the X.224 Connection Request), takes the one-time token from
the routing token (``.rdp`` ``loadbalanceinfo``) or the PCB blob, redeems it once, checks that
the session may connect, connects to the session's host, forwards the request without the
token, and from then on copies bytes both ways unchanged until either side closes. TLS and
NLA stay end to end between client and host: the relay never decrypts anything.

A request that was read but is refused is answered with an X.224 Connection Confirm carrying
``RDP_NEG_FAILURE`` (code ``SSL_CERT_NOT_ON_SERVER``), so a client shows an error rather than
hang; bytes that are not an RDP request are not answered. Every handshake ends in one counted
outcome (``relay_handshakes`` in the metrics). Failed redemptions are limited per source
address (``RDP_CONTROLLER_RELAY_FAILURES_PER_MINUTE``).

The session follows the wire: ``active`` when the relay has connected the client to its host,
``suspended`` when either side closes, client input (not screen updates) moves
``last_activity_at`` at most every ``RDP_CONTROLLER_ACTIVITY_FLUSH_SECONDS`` and
``active``/``idle`` with it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Any

from .config import RdpControllerSettings
from .connection_manager import ConnectionManager, RelayedConnection
from .metrics import Metrics
from .models import SessionStatus
from .relay_handshake import (
    CONNECTABLE,
    COPY_CHUNK,
    Outcome,
    Refused,
    RelayHandshake,
    format_address,
    quietly,
    refuse,
)
from .session_controller import SessionController
from .session_states import Document
from .session_wire import SessionWire

logger = logging.getLogger(__name__)

LISTEN_BACKLOG = 1024
FLUSH_CONCURRENCY = 16
STOP_TIMEOUT_SECONDS = 5.0


class RdpRelay:
    """The relay listener of one replica (``relay_id``)."""

    def __init__(
        self,
        settings: RdpControllerSettings,
        sessions: SessionController,
        wire: SessionWire,
        connections: ConnectionManager,
        metrics: Metrics,
        handshake: RelayHandshake,
    ):
        self.settings = settings
        self.sessions = sessions
        self.wire = wire
        self.connections = connections
        self.metrics = metrics
        self.handshake = handshake
        self.relay_id = handshake.relay_id
        self.status = "off"
        self.error: str | None = None
        self.handshaking = 0
        self._server: asyncio.Server | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        self._clients: set[asyncio.Task[Any]] = set()

    # Listener -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Listen; a port that cannot be bound stops the start-up with the reason."""
        bind, port = self.settings.RDP_CONTROLLER_RELAY_BIND, self.settings.RDP_CONTROLLER_RELAY_PORT
        # Several worker processes (RDP_CONTROLLER_WORKERS): each listens on the same port with
        # SO_REUSEPORT and the kernel spreads new connections over them; a termination reaches the
        # worker holding the connection through the Redis close channel every worker listens on.
        # One worker binds alone, so a second service on the same port fails loudly.
        shared = self.settings.RDP_CONTROLLER_WORKERS > 1
        try:
            self._server = await asyncio.start_server(
                self._handle, bind, port, backlog=LISTEN_BACKLOG, reuse_address=True, reuse_port=shared
            )
        except OSError as exc:
            self.status, self.error = "failed", f"cannot listen on {bind}:{port}: {exc.strerror}"
            raise RuntimeError(
                f"RDP relay {self.error} (RDP_CONTROLLER_RELAY_PORT / RDP_CONTROLLER_RELAY_BIND; 0 = off)"
            ) from exc
        self.status = "listening"
        self.metrics.set_gauge("relay_connections", 0)
        logger.info("RDP relay listening on %s:%s as %s", bind, self.port, self.relay_id)

    @property
    def port(self) -> int:
        """The port actually bound (differs from the setting's only in tests that bind port 0)."""
        if self._server is None or not self._server.sockets:
            return self.settings.RDP_CONTROLLER_RELAY_PORT
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for connection in self.connections.all():
                connection.closed_by = "shutdown"
                connection.abort()
            # Each client's task records its end (the session is suspended) before the clients close.
            if self._clients:
                _, pending = await asyncio.wait(self._clients, timeout=STOP_TIMEOUT_SECONDS)
                for task in pending:
                    task.cancel()  # a client still in its handshake
            self._server = None
        for task in list(self._flushes):
            task.cancel()
        await self.connections.stop_listening()
        self.status = "off"

    def health(self) -> dict[str, object]:
        body: dict[str, object] = {"status": self.status}
        if self.status != "off":
            public_host, public_port = self.settings.relay_public_address
            body.update(
                {
                    "address": f"{self.settings.RDP_CONTROLLER_RELAY_BIND}:{self.port}",
                    "public_address": f"{public_host}:{public_port}",
                    "connections": len(self.connections),
                    "handshakes": self.handshaking,
                }
            )
        if self.error:
            body["error"] = self.error
        return body

    def figures(self) -> dict[str, Any]:
        """The relay's part of ``/api/v1/metrics``: open connections, handshakes, bytes, durations."""
        open_connections = self.connections.all()
        durations = self.metrics.relay_durations.read()
        return {
            "enabled": self.status != "off",
            # Every worker's (RDP_CONTROLLER_WORKERS); bytes of open connections: this worker's.
            "connections": int(self.metrics.gauge("relay_connections").get((), len(open_connections))),
            "handshakes": {o.value: self.metrics.value("relay_handshakes", o.value) for o in Outcome},
            "bytes": {
                "client_to_host": self.metrics.value("relay_bytes", "client_to_host")
                + sum(c.bytes_in for c in open_connections),
                "host_to_client": self.metrics.value("relay_bytes", "host_to_client")
                + sum(c.bytes_out for c in open_connections),
            },
            "connection_seconds": {
                "count": durations.count,
                "sum": round(durations.total, 3),
                "p50": durations.bounded_quantile(0.5),
                "p99": durations.bounded_quantile(0.99),
            },
        }

    # One client ---------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._clients.add(task)
            task.add_done_callback(self._clients.discard)
        client_address = format_address(writer.get_extra_info("peername"))
        if self.handshaking + len(self.connections) >= self.settings.RDP_CONTROLLER_RELAY_MAX_CONNECTIONS:
            self._count(Outcome.OVERLOADED)
            writer.transport.abort()
            return
        self.handshaking += 1
        try:
            host = await self.handshake.admit(reader, writer, client_address)
        except Refused as refusal:
            self._count(refusal.outcome)
            logger.info("Relay refused %s: %s (%s)", client_address, refusal, refusal.outcome.value)
            await refuse(writer, answer=refusal.answer)
            return
        finally:
            self.handshaking -= 1
        self._count(Outcome.RELAYED)
        await self._relay(reader, writer, *host)

    # Copying ------------------------------------------------------------------------------
    async def _relay(
        self,
        client_reader: asyncio.StreamReader,
        client_writer: asyncio.StreamWriter,
        host_reader: asyncio.StreamReader,
        host_writer: asyncio.StreamWriter,
        connection: RelayedConnection,
    ) -> None:
        try:
            await asyncio.gather(
                self._copy(client_reader, host_writer, connection, upstream=True),
                self._copy(host_reader, client_writer, connection, upstream=False),
            )
        finally:
            self.connections.remove(connection)
            self.metrics.set_gauge("relay_connections", len(self.connections))
            seconds = time.monotonic() - connection.opened_at
            self.metrics.relay_durations.observe(seconds)
            self.metrics.inc("relay_bytes", "client_to_host", connection.bytes_in)
            self.metrics.inc("relay_bytes", "host_to_client", connection.bytes_out)
            logger.info(
                "Relay closed %s of %s after %.1f s (%s; %d bytes in, %d out)",
                connection.client_address,
                connection.session_id,
                seconds,
                connection.closed_by or "peer closed",
                connection.bytes_in,
                connection.bytes_out,
            )
            await quietly(
                self.wire.client_disconnected(
                    connection.session_id,
                    connection.connection_id,
                    bytes_in=connection.bytes_in,
                    bytes_out=connection.bytes_out,
                    relay_id=self.relay_id,
                ),
                "client_disconnected",
            )

    async def _copy(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        connection: RelayedConnection,
        *,
        upstream: bool,
    ) -> None:
        """Copy one direction until EOF, then close its destination (backpressure: ``drain``).

        At EOF the destination gets what is still buffered for it and is then closed, which ends
        the other direction too (its reader sees the closed socket), so both sides close. A reset,
        a termination or a shutdown aborts both sides at once.
        """
        try:
            while data := await reader.read(COPY_CHUNK):
                writer.write(data)
                if not upstream:
                    connection.bytes_out += len(data)
                elif connection.client_sent(len(data)):
                    self._flush_soon(connection)
                await writer.drain()
        except OSError:
            connection.abort()  # reset by either peer: the connection ends as if closed
        except BaseException:
            connection.abort()
            raise
        else:
            writer.close()

    # Activity -----------------------------------------------------------------------------
    def _flush_soon(self, connection: RelayedConnection) -> None:
        task = asyncio.create_task(self._flush(connection))
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def flush_activity(self) -> None:
        """One round of the activity loop: client input moves the session; a quiet one goes idle."""
        semaphore = asyncio.Semaphore(FLUSH_CONCURRENCY)

        async def bounded(connection: RelayedConnection) -> None:
            async with semaphore:
                await self._flush(connection)

        await asyncio.gather(*(bounded(c) for c in self.connections.all()))

    async def _flush(self, connection: RelayedConnection) -> None:
        session_id, connection_id = connection.session_id, connection.connection_id
        figures = {"bytes_in": connection.bytes_in, "bytes_out": connection.bytes_out}
        move: Awaitable[Document]
        if connection.input_pending and connection.last_input_at is not None:
            connection.input_pending = False
            at = connection.last_input_at
            move = self.wire.client_input(session_id, connection_id, at=at, relay_id=self.relay_id, **figures)
        elif not connection.idle:
            connection.idle = True
            move = self.wire.client_quiet(session_id, connection_id, relay_id=self.relay_id, **figures)
        else:
            return
        document = await quietly(move, "activity flush")
        if document is not None and SessionStatus(document["status"]) not in CONNECTABLE:
            self.connections.close_local(connection.session_id, why=f"session {document['status']}")

    async def sweep_final(self) -> int:
        """Close relayed connections whose session ended (the backstop of the close channel)."""
        final = await self.sessions.final_among(self.connections.session_ids())
        return sum(self.connections.close_local(session_id, why="session ended") for session_id in final)

    def _count(self, outcome: Outcome) -> None:
        self.metrics.inc("relay_handshakes", outcome.value)
