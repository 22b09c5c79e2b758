"""The relay's handshake reader: optional Pre-Connection PDU, X.224 request, token, rebuilt request."""

from __future__ import annotations

import asyncio
import contextlib
import random

import pytest

from protocol.errors import ProtocolError
from protocol.first_pdu import MAX_REQUEST_LENGTH, ClientHello, read_client_hello
from protocol.negotiation import (
    NegFailureCode,
    NegotiationFailure,
    NegotiationRequest,
    NegRequestFlags,
    SecurityProtocol,
)
from protocol.pcb import MAX_PCB_LENGTH, PreconnectionPdu, encode_preconnection_pdu
from protocol.x224 import (
    ConnectionRequest,
    decode_connection_confirm,
    encode_connection_confirm,
    encode_connection_request,
)

# Captured from Debian's xfreerdp 2.11.7 on loopback (see test_pcb.py for the PCB layouts).
# `xfreerdp /load-balance-info:TOKEN`: a routing token "TOKEN\r\n" and no cookie, then
# RDP_NEG_REQ for SSL|HYBRID. TPKT length 26, LI 21.
FREERDP_LOAD_BALANCE_INFO = bytes.fromhex("0300001a15e00000000000544f4b454e0d0a0100080003000000")
# `xfreerdp /pcb:ABC` (run as root, no /u:): the PCB (cchPCB 5, two null terminators), then a
# request with the cookie "Cookie: mstshash=root\r\n".
FREERDP_PCB_ABC = bytes.fromhex("1c000000000000000200000000000000050041004200430000000000")
FREERDP_PCB_REQUEST = bytes.fromhex(
    "0300002a25e00000000000436f6f6b69653a206d737473686173683d726f6f740d0a0100080003000000"
)
# What goes on to the host for /load-balance-info: the same request without "TOKEN\r\n", which is
# exactly the library's default request (SSL|HYBRID, no cookie).
FORWARDED_WITHOUT_TOKEN = bytes.fromhex("030000130ee000000000000100080003000000")
# The start of a TLS ClientHello: what a client sends next when the host selected SSL. It must
# stay in the reader.
TRAILER = bytes.fromhex("160301020001")


def _reader(data: bytes, *, eof: bool = True) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    if eof:
        reader.feed_eof()
    return reader


async def _read_byte_by_byte(data: bytes) -> tuple[ClientHello, bytes]:
    """Feed ``data`` one byte per event-loop turn while read_client_hello waits on it."""
    reader = asyncio.StreamReader()

    async def feed() -> None:
        for index in range(len(data)):
            reader.feed_data(data[index : index + 1])
            await asyncio.sleep(0)
        reader.feed_eof()

    feeder = asyncio.create_task(feed())
    hello = await read_client_hello(reader)
    await feeder
    return hello, await reader.read()


def test_freerdp_pcb_capture_is_v2_with_two_terminators() -> None:
    assert int.from_bytes(FREERDP_PCB_ABC[:4], "little") == len(FREERDP_PCB_ABC) == 18 + 2 * 5
    assert FREERDP_PCB_ABC[-4:] == bytes(4)


async def test_freerdp_load_balance_info() -> None:
    hello = await read_client_hello(_reader(FREERDP_LOAD_BALANCE_INFO))
    assert hello.pcb is None
    assert hello.request == ConnectionRequest(routing_token=b"TOKEN\r\n")
    assert hello.token() == "TOKEN"
    assert hello.forwarded_request() == FORWARDED_WITHOUT_TOKEN
    assert hello.forwarded_request() == encode_connection_request(ConnectionRequest())


async def test_freerdp_pcb() -> None:
    hello = await read_client_hello(_reader(FREERDP_PCB_ABC + FREERDP_PCB_REQUEST))
    assert hello.pcb == PreconnectionPdu(id=0, blob="ABC")
    assert hello.request.cookie == "root"
    assert hello.token() == "ABC"
    assert hello.forwarded_request() == FREERDP_PCB_REQUEST  # nothing to strip: the PCB is not forwarded


@pytest.mark.parametrize("byte_by_byte", [False, True], ids=["one-piece", "byte-by-byte"])
@pytest.mark.parametrize(
    ("data", "token"),
    [
        (FREERDP_LOAD_BALANCE_INFO, "TOKEN"),
        (FREERDP_PCB_ABC + FREERDP_PCB_REQUEST, "ABC"),
        (encode_preconnection_pdu(PreconnectionPdu(id=5)) + FORWARDED_WITHOUT_TOKEN, None),
        (FORWARDED_WITHOUT_TOKEN, None),
    ],
    ids=["routing-token", "pcb-v2", "pcb-v1", "no-token"],
)
async def test_reads_exactly_the_hello_and_leaves_the_rest(
    data: bytes, token: str | None, byte_by_byte: bool
) -> None:
    if byte_by_byte:
        hello, rest = await _read_byte_by_byte(data + TRAILER)
    else:
        reader = _reader(data + TRAILER)
        hello = await read_client_hello(reader)
        rest = await reader.read()
    assert rest == TRAILER
    assert hello.token() == token


async def test_returns_without_waiting_for_more_than_the_request() -> None:
    # No EOF and nothing after the request: a reader that asked for one byte more would hang.
    async with asyncio.timeout(2):
        hello = await read_client_hello(_reader(FREERDP_LOAD_BALANCE_INFO, eof=False))
    assert hello.token() == "TOKEN"


async def test_mstsc_load_balancing_cookie_is_a_routing_token() -> None:
    # mstsc's "Cookie: msts=<ip>.<port>.<reserved>" is not the "Cookie: mstshash=" cookie:
    # decode_connection_request keeps it as a routing token, and token() is that whole line.
    data = encode_connection_request(
        ConnectionRequest(routing_token=b"Cookie: msts=3640205228.15629.0000\r\n")
    )
    hello = await read_client_hello(_reader(data))
    assert hello.request.cookie is None
    assert hello.token() == "Cookie: msts=3640205228.15629.0000"
    assert hello.forwarded_request() == FORWARDED_WITHOUT_TOKEN


async def test_routing_token_wins_over_a_pcb_blob() -> None:
    data = encode_preconnection_pdu(PreconnectionPdu(blob="blob")) + FREERDP_LOAD_BALANCE_INFO
    hello = await read_client_hello(_reader(data))
    assert hello.token() == "TOKEN"


@pytest.mark.parametrize(
    ("pcb", "token"),
    [
        (None, None),
        (PreconnectionPdu(id=7), None),
        (PreconnectionPdu(blob=""), None),
        (PreconnectionPdu(blob="t"), "t"),
    ],
)
def test_token_without_routing_token(pcb: PreconnectionPdu | None, token: str | None) -> None:
    assert ClientHello(pcb=pcb, request=ConnectionRequest(cookie="alice")).token() == token


@pytest.mark.parametrize("body", [b"tok\xe9n", b"tab\there", b"\x7f", b"\x00abc"])
def test_non_printable_routing_token_is_refused_by_token(body: bytes) -> None:
    hello = ClientHello(pcb=None, request=ConnectionRequest(routing_token=body + b"\r\n"))
    with pytest.raises(ProtocolError, match="routing token is not printable ASCII"):
        hello.token()


async def test_everything_but_the_token_is_forwarded_byte_for_byte() -> None:
    correlation = NegotiationRequest(
        SecurityProtocol.PROTOCOL_SSL | SecurityProtocol.PROTOCOL_HYBRID_EX,
        NegRequestFlags.CORRELATION_INFO_PRESENT | NegRequestFlags.RESTRICTED_ADMIN_MODE_REQUIRED,
        correlation_id=bytes(range(0x20, 0x30)),
    )
    data = bytearray(
        encode_connection_request(ConnectionRequest(routing_token=b"tok\r\n", negotiation=correlation))
    )
    # Bytes the decoder does not model: SRC-REF, class option, correlation flags and reserved bytes.
    data[8:11] = b"\x12\x34\x00"
    data[-35] = 0x5A
    data[-1] = 0xA5
    hello = await read_client_hello(_reader(bytes(data)))
    assert hello.token() == "tok"
    forwarded = hello.forwarded_request()
    assert forwarded == bytes((3, 0, 0, len(data) - 5, data[4] - 5)) + bytes(data[5:11]) + bytes(data[16:])
    # The same request as ConnectionRequest, minus the token; re-encoding would zero those bytes.
    expected = encode_connection_request(ConnectionRequest(negotiation=correlation))
    assert len(forwarded) == len(expected)
    assert ClientHello(pcb=None, request=hello.request).forwarded_request() == expected


@pytest.mark.parametrize(
    "request_",
    [
        ConnectionRequest(),
        ConnectionRequest(negotiation=None),
        ConnectionRequest(cookie="alice"),
        ConnectionRequest(routing_token=b"x\r\n", negotiation=None),
        ConnectionRequest(routing_token=b"y" * 200 + b"\r\n"),
    ],
    ids=repr,
)
async def test_forwarded_request_equals_the_request_re_encoded_without_token(
    request_: ConnectionRequest,
) -> None:
    hello = await read_client_hello(_reader(encode_connection_request(request_)))
    expected = ConnectionRequest(cookie=request_.cookie, negotiation=request_.negotiation)
    assert hello.forwarded_request() == encode_connection_request(expected)
    assert b"\r\n" not in hello.forwarded_request() or request_.cookie is not None


def test_raw_request_must_match_request() -> None:
    with pytest.raises(ProtocolError, match="raw_request does not decode to request"):
        ClientHello(pcb=None, request=ConnectionRequest(cookie="a"), raw_request=FREERDP_LOAD_BALANCE_INFO)
    with pytest.raises(ProtocolError):
        ClientHello(pcb=None, request=ConnectionRequest(), raw_request=b"\x03\x00")


def test_refusal_is_one_call_of_the_existing_encoder() -> None:
    refusal = encode_connection_confirm(NegotiationFailure(NegFailureCode.SSL_REQUIRED_BY_SERVER))
    assert refusal == bytes.fromhex("030000130ed00000000000030008000100000000")[:19]
    assert decode_connection_confirm(refusal) == NegotiationFailure(NegFailureCode.SSL_REQUIRED_BY_SERVER)


def _pcb_header(size: int) -> bytes:
    return size.to_bytes(4, "little")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "connection closed before the first PDU"),
        (b"\x03\x00", "connection closed after 2 of 4 bytes of the first PDU"),
        (b"\x03\x00\xff\xff", "TPKT length 65535 exceeds the accepted maximum of 259"),
        (b"\x03\x00\x01\x04", "TPKT length 260 exceeds the accepted maximum of 259"),
        (b"\x03\x00\x00\x0a", "TPKT length 10 is too short for an X.224 Connection Request"),
        (b"\x03\x00\x00\x06", "below the minimum"),
        (b"\x03\x01\x00\x13", "neither a TPKT"),  # reserved byte set: not a TPKT, and cbSize is huge
        (b"\x03\x00\x00\x1a" + FREERDP_LOAD_BALANCE_INFO[4:10], "closed after 6 of 22 bytes of the X.224"),
        (_pcb_header(15), "cbSize 15 outside 16..4096"),
        (_pcb_header(0), "cbSize 0 outside"),
        (_pcb_header(MAX_PCB_LENGTH + 1), "cbSize 4097 outside 16..4096"),
        (_pcb_header(0x16030100), "neither a TPKT"),
        (bytes.fromhex("16030100"), "starts 16 03, expected 03 00"),  # a TLS ClientHello
        (b"GET / HTTP/1.1\r\n", "neither a TPKT"),
        (b"SSH-2.0-OpenSSH_9.2\r\n", "neither a TPKT"),
        (FREERDP_PCB_ABC[:20], "closed after 16 of 24 bytes of the pre-connection PDU"),
        (_pcb_header(17) + bytes(13), "cbSize 17 is neither 16"),
        (FREERDP_PCB_ABC, "connection closed before the X.224 Connection Request"),
        (FREERDP_PCB_ABC + FREERDP_PCB_REQUEST[:3], "closed after 3 of 4 bytes of the X.224"),
        (FREERDP_PCB_ABC + FREERDP_PCB_ABC, "not a TPKT packet"),  # a second PCB
        (FREERDP_PCB_ABC + b"\x03\x00\x04\x00", "TPKT length 1024 exceeds the accepted maximum of 259"),
        (bytes.fromhex("030000130ed000000000000100080000000000"), "got TPDU code 0xd0"),  # a confirm
        (bytes.fromhex("0300000902f0802180"), "too short for an X.224 Connection Request"),
        (bytes.fromhex("030000130ee000000000000200080000000000"), "expected RDP_NEG_REQ"),
        (bytes.fromhex("030000120de0000000000074"), "closed after 8 of 14 bytes"),
        (bytes.fromhex("0300000e09e000000000007a0d0b"), "not terminated by CRLF"),
    ],
)
async def test_refusals(data: bytes, message: str) -> None:
    async with asyncio.timeout(2):  # every refusal is immediate: none waits for bytes
        with pytest.raises(ProtocolError, match=message):
            await read_client_hello(_reader(data, eof=not message.startswith(("TPKT length", "neither"))))


async def test_oversized_lengths_are_refused_before_reading_the_body() -> None:
    for header in (b"\x03\x00\xff\xff", _pcb_header(MAX_PCB_LENGTH + 1), _pcb_header(0xFFFFFFFF)):
        reader = _reader(header + b"body that must stay unread", eof=False)
        with pytest.raises(ProtocolError):
            await read_client_hello(reader)
        reader.feed_eof()
        assert await reader.read() == b"body that must stay unread"


async def test_max_pcb_length() -> None:
    data = encode_preconnection_pdu(PreconnectionPdu(blob="x" * 40)) + FORWARDED_WITHOUT_TOKEN
    assert (await read_client_hello(_reader(data), max_pcb_length=100)).token() == "x" * 40
    with pytest.raises(ProtocolError, match=r"cbSize 100 outside 16\.\.99"):
        await read_client_hello(_reader(data), max_pcb_length=99)
    for bad in (15, 0x10000):
        with pytest.raises(ProtocolError, match="max_pcb_length"):
            await read_client_hello(_reader(data), max_pcb_length=bad)


async def _consumed(data: bytes) -> tuple[ClientHello | None, int]:
    reader = _reader(data)
    hello: ClientHello | None = None
    with contextlib.suppress(ProtocolError):
        hello = await read_client_hello(reader)
    return hello, len(data) - len(await reader.read())


def _valid_hellos() -> list[bytes]:
    pcbs = [b"", FREERDP_PCB_ABC, encode_preconnection_pdu(PreconnectionPdu(id=3))]
    requests = [FREERDP_LOAD_BALANCE_INFO, FREERDP_PCB_REQUEST, FORWARDED_WITHOUT_TOKEN]
    return [pcb + request for pcb in pcbs for request in requests]


async def _check_bounded(data: bytes) -> None:
    hello, consumed = await _consumed(data)
    assert consumed <= 4 + MAX_PCB_LENGTH + MAX_REQUEST_LENGTH
    if hello is not None:
        pcb = b"" if hello.pcb is None else data[: consumed - len(hello.raw_request or b"")]
        assert hello.raw_request is not None
        assert consumed == len(pcb) + len(hello.raw_request)
        assert data[len(pcb) : consumed] == hello.raw_request
        forwarded = hello.forwarded_request()
        assert len(forwarded) <= len(hello.raw_request)
        with contextlib.suppress(ProtocolError):
            hello.token()
        token = hello.request.routing_token or b""
        raw = hello.raw_request
        assert forwarded[4:] == bytes((raw[4] - len(token),)) + raw[5:11] + raw[11 + len(token) :]
        assert int.from_bytes(forwarded[2:4], "big") == len(forwarded)


async def test_random_bytes_raise_only_protocol_error_and_stay_bounded() -> None:
    rng = random.Random(20250110)
    for _ in range(3000):
        size = rng.choice((0, 3, 4, 11, 19, 26, 28, 60, rng.randrange(0, 400)))
        data = bytearray(rng.randrange(256) for _ in range(size))
        roll = rng.random()
        if size >= 4 and roll < 0.4:  # a plausible TPKT header
            data[0:4] = b"\x03\x00" + rng.randrange(0, 300).to_bytes(2, "big")
            if size >= 6 and rng.random() < 0.6:
                data[4:6] = bytes((rng.randrange(0, 256), 0xE0))
        elif size >= 4 and roll < 0.7:  # a plausible PCB header
            data[0:4] = rng.choice((16, 17, 18, 26, 28, rng.randrange(0, 5000))).to_bytes(4, "little")
        await _check_bounded(bytes(data))


async def test_mutations_of_valid_hellos_raise_only_protocol_error_and_stay_bounded() -> None:
    rng = random.Random(7)
    for sample in _valid_hellos():
        for cut in range(len(sample)):
            with pytest.raises(ProtocolError):
                await read_client_hello(_reader(sample[:cut]))
        for index in range(len(sample)):
            for _ in range(8):
                mutated = bytearray(sample)
                mutated[index] = rng.randrange(256)
                await _check_bounded(bytes(mutated) + TRAILER)
        for _ in range(40):  # a few bytes inserted or dropped somewhere
            mutated = bytearray(sample)
            at = rng.randrange(len(mutated))
            if rng.random() < 0.5:
                mutated[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4)))
            else:
                del mutated[at : at + rng.randrange(1, 4)]
            await _check_bounded(bytes(mutated) + TRAILER)
