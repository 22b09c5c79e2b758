"""Probe an RDP host with the protocol itself: negotiate, then read the TLS certificate.

:func:`probe` opens a TCP connection, sends an X.224 Connection Request with an
``RDP_NEG_REQ``, reads exactly one TPKT (at most :data:`MAX_CONFIRM_LENGTH` bytes) and parses
the Connection Confirm. When the server selects a TLS-based protocol (SSL, HYBRID,
HYBRID_EX, RDSTLS, RDSAAD: all of them start with a TLS handshake) the same connection is
upgraded to TLS, without verification, to read the server certificate: its SHA-256
fingerprint is what the controller pins and compares. Then the connection is closed; no
credentials are ever sent. The whole probe, DNS and TLS included, is bounded by ``timeout``.

A probe never raises for a network or protocol problem, it returns a :class:`ProbeResult`:

- ``reachable`` is True once a well-formed Connection Confirm arrived (an RDP server
  answered), including a negotiation failure;
- ``error`` says what went wrong, if anything (connect refused, timeout, closed, protocol
  error, TLS failure). ``reachable`` can be True with ``error`` set when the negotiation
  worked and the TLS handshake did not;
- ``failure_code`` / ``failure_name`` carry an ``RDP_NEG_FAILURE``; that is an answer, not an
  error, so ``error`` stays None.

Run ``python -m protocol.probe HOST PORT`` to probe a host by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import ipaddress
import json
import logging
import math
import ssl
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final

from protocol.errors import ProtocolError
from protocol.negotiation import (
    DEFAULT_REQUESTED_PROTOCOLS,
    NegotiationFailure,
    NegotiationRequest,
    NegotiationResponse,
    SecurityProtocol,
    parse_protocols,
)
from protocol.tpkt import TPKT_HEADER_LENGTH, decode_tpkt_header
from protocol.x224 import ConnectionRequest, decode_connection_confirm, encode_connection_request
from protocol.x509 import parse_certificate

logger = logging.getLogger(__name__)

#: A confirm is 11 or 19 bytes; anything above this is not an RDP server talking.
MAX_CONFIRM_LENGTH: Final = 4096
_CONNECTING: Final = "connecting"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeResult:
    """The outcome of one probe. ``host``/``port`` say what was probed; the rest is the document."""

    host: str
    port: int
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

    @property
    def ok(self) -> bool:
        """An RDP server answered, accepted a requested protocol, and any TLS handshake worked."""
        return self.reachable and self.error is None and self.failure_code is None

    def to_document(self) -> dict[str, Any]:
        """The last-probe sub-document of a server in MongoDB (host and port live on the server)."""
        return {
            "reachable": self.reachable,
            "latency_ms": self.latency_ms,
            "selected_protocol": self.selected_protocol,
            "tls_version": self.tls_version,
            "cert_sha256": self.cert_sha256,
            "cert_subject": self.cert_subject,
            "cert_not_after": self.cert_not_after,
            "failure_code": self.failure_code,
            "failure_name": self.failure_name,
            "error": self.error,
            "checked_at": self.checked_at,
        }


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """A client context that accepts any certificate: the probe reads it, it does not trust it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _server_hostname(host: str) -> str | None:
    """SNI name for ``host``; None for an IP literal (SNI carries names only)."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host
    return None


def _connect_host(host: str) -> str:
    """``[::1]`` (URL style) -> ``::1``; getaddrinfo does not take brackets."""
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _check_timeout(timeout: float) -> None:
    if not (math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")


async def _close(writer: asyncio.StreamWriter, raw_transport: asyncio.BaseTransport) -> None:
    """Close the connection now, TLS or not, without waiting for the peer.

    ``abort()`` skips the TLS close_notify exchange (which could wait for an unresponsive
    peer); the socket is closed by a callback the loop runs before this task resumes.
    """
    writer.transport.abort()
    if isinstance(raw_transport, asyncio.Transport):
        raw_transport.abort()  # after a failed start_tls the writer still holds it; idempotent
    await asyncio.sleep(0)


async def _probe(host: str, port: int, request: bytes, limit_s: float, checked_at: datetime) -> ProbeResult:
    result = ProbeResult(host=host, port=port, reachable=False, checked_at=checked_at)
    stage = _CONNECTING
    received = 0
    started = time.perf_counter()
    writer: asyncio.StreamWriter | None = None
    raw_transport: asyncio.BaseTransport | None = None
    try:
        async with asyncio.timeout(limit_s):
            reader, writer = await asyncio.open_connection(_connect_host(host), port)
            raw_transport = writer.transport
            stage = "waiting for the X.224 Connection Confirm"
            writer.write(request)
            await writer.drain()
            header = await reader.readexactly(TPKT_HEADER_LENGTH)
            received = len(header)
            length = decode_tpkt_header(header, max_length=MAX_CONFIRM_LENGTH)
            body = await reader.readexactly(length - TPKT_HEADER_LENGTH)
            confirm = decode_connection_confirm(header + body, max_length=MAX_CONFIRM_LENGTH)
            result = replace(
                result, reachable=True, latency_ms=round((time.perf_counter() - started) * 1000.0, 3)
            )
            if isinstance(confirm, NegotiationFailure):
                code = confirm.failure_code
                result = replace(result, failure_code=int(code), failure_name=code.name)
            elif isinstance(confirm, NegotiationResponse):
                result = replace(result, selected_protocol=confirm.protocol_name)
                if confirm.selected_protocol != SecurityProtocol.PROTOCOL_RDP:
                    stage = "in the TLS handshake"
                    await writer.start_tls(_tls_context(), server_hostname=_server_hostname(host))
                    result = _with_certificate(writer, result)
            else:  # StandardRdpConfirm: the server does not negotiate, standard RDP security
                result = replace(result, selected_protocol="rdp")
    except TimeoutError:
        result = replace(result, error=f"timed out after {limit_s:g} s {stage}")
    except asyncio.IncompleteReadError as exc:
        closed = f"connection closed by the server after {received + len(exc.partial)} bytes {stage}"
        result = replace(result, error=closed)
    except ProtocolError as exc:
        result = replace(result, error=f"protocol error: {exc}")
    except ssl.SSLError as exc:
        result = replace(result, error=f"TLS handshake failed: {exc}")
    except OSError as exc:
        failed = f"connect failed: {exc}" if stage == _CONNECTING else f"connection error {stage}: {exc}"
        result = replace(result, error=failed)
    finally:
        if writer is not None and raw_transport is not None:
            await _close(writer, raw_transport)
    return result


def _with_certificate(writer: asyncio.StreamWriter, result: ProbeResult) -> ProbeResult:
    """``result`` with the TLS version and the server certificate of the upgraded stream."""
    ssl_object = writer.get_extra_info("ssl_object")
    if not isinstance(ssl_object, ssl.SSLObject):
        raise ProtocolError("the TLS upgrade produced no SSL object")
    result = replace(result, tls_version=ssl_object.version())
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return replace(result, error="the server sent no TLS certificate")
    result = replace(result, cert_sha256=hashlib.sha256(der).hexdigest())
    try:
        info = parse_certificate(der)
    except ProtocolError as exc:  # the fingerprint is what matters; subject/expiry are a bonus
        logger.warning("cannot read subject/expiry of the certificate %s: %s", result.cert_sha256, exc)
        return result
    return replace(result, cert_subject=info.subject, cert_not_after=info.not_after.isoformat())


def _build_request(requested: SecurityProtocol, cookie: str | None) -> bytes:
    return encode_connection_request(
        ConnectionRequest(cookie=cookie, negotiation=NegotiationRequest(requested))
    )


async def probe(
    host: str,
    port: int,
    *,
    timeout: float = 5.0,  # noqa: ASYNC109 - bounds the whole probe; applied with asyncio.timeout inside
    requested: SecurityProtocol = DEFAULT_REQUESTED_PROTOCOLS,
    cookie: str | None = None,
) -> ProbeResult:
    """Probe one RDP endpoint; see the module docstring for how to read the result.

    Raises only for bad arguments (``ValueError``/``ProtocolError``: a cookie with CR/LF,
    protocols beyond 32 bits, a non-positive timeout), before any I/O.
    """
    _check_timeout(timeout)
    request = _build_request(requested, cookie)
    return await _probe(host, port, request, timeout, datetime.now(UTC))


async def probe_many(
    targets: Iterable[tuple[str, int]],
    *,
    concurrency: int,
    timeout: float,  # noqa: ASYNC109 - per probe, applied with asyncio.timeout inside
    requested: SecurityProtocol = DEFAULT_REQUESTED_PROTOCOLS,
    cookie: str | None = None,
) -> list[ProbeResult]:
    """Probe every ``(host, port)`` with at most ``concurrency`` probes in flight; results in input order."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    _check_timeout(timeout)
    request = _build_request(requested, cookie)
    semaphore = asyncio.Semaphore(concurrency)

    async def one(host: str, port: int) -> ProbeResult:
        async with semaphore:
            return await _probe(host, port, request, timeout, datetime.now(UTC))

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(one(host, port)) for host, port in targets]
    return [task.result() for task in tasks]


def _document_json(result: ProbeResult) -> str:
    document = result.to_document()
    document["checked_at"] = result.checked_at.isoformat()
    return json.dumps({"host": result.host, "port": result.port, **document}, indent=2)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m protocol.probe HOST PORT``: print the result as JSON; exit 0 when ``ok``."""
    parser = argparse.ArgumentParser(prog="python -m protocol.probe", description=__doc__.split("\n")[0])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds for the whole probe (5)")
    parser.add_argument(
        "--protocols",
        default="ssl,hybrid",
        help="requested protocols, comma separated: rdp, ssl, hybrid, rdstls, hybrid_ex (ssl,hybrid)",
    )
    parser.add_argument("--cookie", default=None, help="mstshash cookie (usually a user name)")
    args = parser.parse_args(argv)
    try:
        requested = parse_protocols(args.protocols)
        result = asyncio.run(
            probe(args.host, args.port, timeout=args.timeout, requested=requested, cookie=args.cookie)
        )
    except ValueError as exc:
        parser.error(str(exc))
    print(_document_json(result))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
