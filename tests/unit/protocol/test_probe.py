"""probe() / probe_many() against tiny asyncio servers on 127.0.0.1, started inside each test."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from common.xrdp import free_loopback_port
from protocol.errors import ProtocolError
from protocol.negotiation import (
    NegFailureCode,
    NegotiationFailure,
    NegotiationResponse,
    SecurityProtocol,
    StandardRdpConfirm,
    protocol_name,
)
from protocol.probe import (
    MAX_CONFIRM_LENGTH,
    ProbeResult,
    _connect_host,
    _server_hostname,
    main,
    probe,
    probe_many,
)
from protocol.x224 import ConnectionRequest, decode_connection_request, encode_connection_confirm

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
# Generous: only guards against a probe that ignores its timeout.
UPPER_BOUND_S = 10.0


@contextlib.asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[int]:
    """Run ``handler`` for each connection on an ephemeral loopback port; close everything after."""
    handlers: set[asyncio.Task[None]] = set()

    async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await handler(reader, writer)
        except asyncio.CancelledError:
            pass  # serve() is shutting down; a cancelled handler makes 3.11's stream callback log an error
        finally:
            writer.transport.abort()
            handlers.discard(task)

    server = await asyncio.start_server(run, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in list(handlers):
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> ConnectionRequest:
    header = await reader.readexactly(4)
    body = await reader.readexactly(int.from_bytes(header[2:4], "big") - 4)
    return decode_connection_request(header + body)


async def wait_for_close(reader: asyncio.StreamReader) -> None:
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        await reader.read()


def answering(
    confirm: NegotiationResponse | NegotiationFailure | StandardRdpConfirm, seen: list[Any]
) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request(reader))
        writer.write(encode_connection_confirm(confirm))
        await writer.drain()
        await wait_for_close(reader)

    return handler


async def test_negotiation_response_rdp() -> None:
    seen: list[ConnectionRequest] = []
    async with serve(answering(NegotiationResponse(SecurityProtocol.PROTOCOL_RDP), seen)) as port:
        result = await probe("127.0.0.1", port, timeout=5.0, cookie="alice")
    assert result.reachable is True
    assert result.error is None
    assert result.ok
    assert result.selected_protocol == "rdp"
    assert result.tls_version is None and result.cert_sha256 is None
    assert result.latency_ms is not None and result.latency_ms > 0
    assert result.checked_at.tzinfo is UTC
    assert (result.host, result.port) == ("127.0.0.1", port)
    # The request on the wire: the cookie and the default SSL|HYBRID without flags.
    [request] = seen
    assert request.cookie == "alice"
    assert request.negotiation is not None
    assert request.negotiation.requested_protocols == 0x3
    assert request.negotiation.flags == 0


async def test_server_without_negotiation_is_standard_rdp() -> None:
    async with serve(answering(StandardRdpConfirm(), [])) as port:
        result = await probe("127.0.0.1", port)
    assert (result.reachable, result.selected_protocol, result.error) == (True, "rdp", None)


@pytest.mark.parametrize("code", list(NegFailureCode))
async def test_negotiation_failure_is_an_answer(code: NegFailureCode) -> None:
    async with serve(answering(NegotiationFailure(code), [])) as port:
        result = await probe("127.0.0.1", port, requested=SecurityProtocol.PROTOCOL_RDP)
    assert result.reachable is True
    assert result.failure_code == int(code)
    assert result.failure_name == code.name
    assert result.error is None
    assert result.selected_protocol is None
    assert not result.ok


async def test_silent_server_times_out_within_the_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await wait_for_close(reader)

    async with serve(silent) as port:
        started = time.monotonic()
        result = await probe("127.0.0.1", port, timeout=0.3)
        elapsed = time.monotonic() - started
    assert result.reachable is False
    assert result.error == "timed out after 0.3 s waiting for the X.224 Connection Confirm"
    assert elapsed < UPPER_BOUND_S


async def test_server_closing_immediately() -> None:
    async def close_now(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async with serve(close_now) as port:
        result = await probe("127.0.0.1", port, timeout=5.0)
    assert result.reachable is False
    assert result.error is not None
    # FIN before our request arrived, or RST because it arrived unread: both are "closed".
    assert "connection closed by the server after 0 bytes" in result.error or "reset" in result.error.lower()


async def test_server_closing_after_half_a_confirm() -> None:
    async def half(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(encode_connection_confirm(NegotiationResponse(SecurityProtocol.PROTOCOL_SSL))[:9])
        await writer.drain()
        writer.write_eof()
        await wait_for_close(reader)

    async with serve(half) as port:
        result = await probe("127.0.0.1", port)
    assert result.reachable is False
    assert (
        result.error
        == "connection closed by the server after 9 bytes waiting for the X.224 Connection Confirm"
    )


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", "protocol error: not a TPKT packet: version byte is 0x48"),
        (b"\x03\x00\xff\xff" + bytes(100), f"exceeds the accepted maximum of {MAX_CONFIRM_LENGTH}"),
        (bytes.fromhex("030000130ed000000000000400080000000000"), "unknown negotiation type 0x04"),
        (bytes.fromhex("0300000902f0802180"), "Disconnect Provider Ultimatum"),
    ],
)
async def test_garbage_answers_are_protocol_errors(answer: bytes, message: str) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer)
        await writer.drain()
        await wait_for_close(reader)

    async with serve(garbage) as port:
        result = await probe("127.0.0.1", port)
    assert result.reachable is False
    assert result.error is not None and message in result.error
    assert result.error.startswith("protocol error: ")


async def test_refused_port() -> None:
    port = free_loopback_port()
    result = await probe("127.0.0.1", port, timeout=5.0)
    assert result.reachable is False
    assert result.latency_ms is None
    assert result.error is not None
    assert result.error.startswith("connect failed: ")


def _tls_server_context(cert: Any) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert.cert_path, cert.key_path)
    return context


async def test_tls_upgrade_reads_the_certificate(self_signed: Any) -> None:
    context = _tls_server_context(self_signed)

    async def tls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(encode_connection_confirm(NegotiationResponse(SecurityProtocol.PROTOCOL_SSL)))
        await writer.drain()
        await writer.start_tls(context)
        await wait_for_close(reader)

    async with serve(tls) as port:
        result = await probe("127.0.0.1", port, timeout=5.0)
    assert result.error is None
    assert result.reachable is True
    assert result.selected_protocol == "ssl"
    assert result.cert_sha256 == hashlib.sha256(self_signed.der).hexdigest()
    assert result.tls_version is not None and result.tls_version.startswith("TLSv1.")
    assert result.cert_subject == "CN=test"
    assert result.cert_not_after == self_signed.not_after.isoformat()


@pytest.mark.parametrize("selected", [SecurityProtocol.PROTOCOL_HYBRID, SecurityProtocol.PROTOCOL_HYBRID_EX])
async def test_credssp_also_upgrades_to_tls(self_signed: Any, selected: SecurityProtocol) -> None:
    context = _tls_server_context(self_signed)

    async def credssp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(encode_connection_confirm(NegotiationResponse(selected)))
        await writer.drain()
        await writer.start_tls(context)
        await wait_for_close(reader)

    async with serve(credssp) as port:
        result = await probe("127.0.0.1", port, requested=SecurityProtocol.PROTOCOL_HYBRID_EX)
    assert result.selected_protocol == protocol_name(selected)
    assert result.cert_sha256 == hashlib.sha256(self_signed.der).hexdigest()


async def test_tls_not_started_by_the_server() -> None:
    async def liar(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(encode_connection_confirm(NegotiationResponse(SecurityProtocol.PROTOCOL_SSL)))
        await writer.drain()
        await reader.read(1)  # the ClientHello has arrived
        writer.write(b"this is not a TLS ServerHello" * 4)
        await writer.drain()
        await wait_for_close(reader)

    async with serve(liar) as port:
        result = await probe("127.0.0.1", port, timeout=5.0)
    assert result.reachable is True  # it answered the negotiation
    assert result.selected_protocol == "ssl"
    assert result.cert_sha256 is None
    assert result.error is not None and result.error.startswith("TLS handshake failed")


async def test_tls_handshake_that_never_completes_is_bounded() -> None:
    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(encode_connection_confirm(NegotiationResponse(SecurityProtocol.PROTOCOL_SSL)))
        await writer.drain()
        await wait_for_close(reader)

    async with serve(stall) as port:
        started = time.monotonic()
        result = await probe("127.0.0.1", port, timeout=0.5)
        assert time.monotonic() - started < UPPER_BOUND_S
    assert result.reachable is True
    assert result.error == "timed out after 0.5 s in the TLS handshake"


async def test_bad_arguments_raise_before_any_io() -> None:
    with pytest.raises(ProtocolError, match="CR/LF"):
        await probe("127.0.0.1", 1, cookie="a\r\nb")
    with pytest.raises(ProtocolError, match="32 bits"):
        await probe("127.0.0.1", 1, requested=SecurityProtocol(1 << 33))
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="timeout must be a positive"):
            await probe("127.0.0.1", 1, timeout=bad)
    with pytest.raises(ValueError, match="concurrency must be at least 1"):
        await probe_many([("127.0.0.1", 1)], concurrency=0, timeout=1.0)


async def test_probe_many_keeps_input_order_and_bounds_concurrency() -> None:
    in_flight = 0
    peak = 0

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            await read_request(reader)
            await asyncio.sleep(0.02)
            writer.write(encode_connection_confirm(NegotiationResponse(SecurityProtocol.PROTOCOL_RDP)))
            await writer.drain()
            await wait_for_close(reader)
        finally:
            in_flight -= 1

    refused = free_loopback_port()
    async with serve(slow) as port, serve(answering(NegotiationFailure(NegFailureCode(1)), [])) as failing:
        targets = (
            [("127.0.0.1", port)] * 4
            + [("127.0.0.1", refused), ("127.0.0.1", failing)]
            + [("127.0.0.1", port)] * 3
        )
        results = await probe_many(iter(targets), concurrency=2, timeout=5.0)
    assert [(r.host, r.port) for r in results] == targets
    assert [r.ok for r in results] == [True] * 4 + [False, False] + [True] * 3
    assert results[4].reachable is False
    assert results[5].failure_name == "SSL_REQUIRED_BY_SERVER"
    assert 1 <= peak <= 2


async def test_probe_many_of_nothing() -> None:
    assert await probe_many([], concurrency=5, timeout=1.0) == []


def test_host_forms() -> None:
    assert _connect_host("[::1]") == "::1"
    assert _connect_host("rdp-01.example") == "rdp-01.example"
    assert _server_hostname("rdp-01.example") == "rdp-01.example"  # SNI for names only
    assert _server_hostname("10.0.0.5") is None
    assert _server_hostname("[fd00::1]") is None


def test_to_document() -> None:
    checked = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    result = ProbeResult(
        host="h", port=3389, reachable=True, latency_ms=1.5, selected_protocol="ssl", checked_at=checked
    )
    assert result.to_document() == {
        "reachable": True,
        "latency_ms": 1.5,
        "selected_protocol": "ssl",
        "tls_version": None,
        "cert_sha256": None,
        "cert_subject": None,
        "cert_not_after": None,
        "failure_code": None,
        "failure_name": None,
        "error": None,
        "checked_at": checked,
    }


def test_cli_prints_json_and_exits_1_when_unreachable(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_loopback_port()
    assert main(["127.0.0.1", str(port), "--timeout", "2", "--protocols", "rdp"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["port"] == port
    assert document["reachable"] is False
    assert document["error"].startswith("connect failed: ")
    datetime.fromisoformat(document["checked_at"])


def test_cli_rejects_unknown_protocol(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["127.0.0.1", "3389", "--protocols", "ssl,tls"])
    assert exit_info.value.code == 2
    assert "unknown security protocol 'tls'" in capsys.readouterr().err
