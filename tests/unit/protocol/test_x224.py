"""X.224 Connection Request / Confirm (MS-RDPBCGR), with the negotiation structures they carry.

The negotiation structures alone (construction, names, their own encoding) are test_negotiation.py.
"""

from __future__ import annotations

import contextlib
import random

import pytest

from protocol.errors import ProtocolError
from protocol.negotiation import (
    DEFAULT_REQUESTED_PROTOCOLS,
    NegFailureCode,
    NegotiationFailure,
    NegotiationRequest,
    NegotiationResponse,
    NegRequestFlags,
    NegResponseFlags,
    SecurityProtocol,
    StandardRdpConfirm,
)
from protocol.x224 import (
    ConnectionRequest,
    decode_connection_confirm,
    decode_connection_request,
    encode_connection_confirm,
    encode_connection_request,
)

# MS-RDPBCGR 4.1.1 Client X.224 Connection Request PDU: cookie "eltons", RDP_NEG_REQ asking
# for PROTOCOL_RDP only. TPKT length 0x2c = 44, LI 0x27 = 39.
SPEC_CONNECTION_REQUEST = bytes.fromhex(
    "0300002c27e00000000000"
    "436f6f6b69653a206d737473686173683d656c746f6e730d0a"  # "Cookie: mstshash=eltons\r\n"
    "0100080000000000"
)
# MS-RDPBCGR 4.1.2 Server X.224 Connection Confirm PDU: LI 0x0e, SRC-REF 0x1234 (the spec
# calls it a bogus value; xrdp 0.9 sends the same), RDP_NEG_RSP selecting PROTOCOL_RDP.
SPEC_CONNECTION_CONFIRM = bytes.fromhex("030000130ed000001234000200080000000000")
# What xrdp 0.9.21 (security_layer=negotiate) answers to SSL|HYBRID, captured on loopback.
XRDP_CONFIRM_SSL = bytes.fromhex("030000130ed000001234000201080001000000")
# xrdp's answer to a request it rejects (bad flags / protocol bits): an X.224 Data TPDU
# carrying an MCS Disconnect Provider Ultimatum, instead of a confirm.
XRDP_REFUSAL = bytes.fromhex("0300000902f0802180")


def test_spec_connection_request_decodes() -> None:
    request = decode_connection_request(SPEC_CONNECTION_REQUEST)
    assert request == ConnectionRequest(
        cookie="eltons", negotiation=NegotiationRequest(SecurityProtocol.PROTOCOL_RDP)
    )


def test_spec_connection_request_encodes_byte_for_byte() -> None:
    request = ConnectionRequest(
        cookie="eltons", negotiation=NegotiationRequest(SecurityProtocol.PROTOCOL_RDP)
    )
    assert encode_connection_request(request) == SPEC_CONNECTION_REQUEST


def test_spec_connection_confirm_decodes() -> None:
    assert decode_connection_confirm(SPEC_CONNECTION_CONFIRM) == NegotiationResponse(
        SecurityProtocol.PROTOCOL_RDP, NegResponseFlags(0)
    )


def test_spec_connection_confirm_encodes_except_the_bogus_source_reference() -> None:
    encoded = encode_connection_confirm(NegotiationResponse(SecurityProtocol.PROTOCOL_RDP))
    assert encoded[:8] + encoded[10:] == SPEC_CONNECTION_CONFIRM[:8] + SPEC_CONNECTION_CONFIRM[10:]
    assert encoded[8:10] == b"\x00\x00"


def test_xrdp_confirm_selecting_ssl() -> None:
    confirm = decode_connection_confirm(XRDP_CONFIRM_SSL)
    assert isinstance(confirm, NegotiationResponse)
    assert confirm.selected_protocol is SecurityProtocol.PROTOCOL_SSL
    assert confirm.protocol_name == "ssl"
    assert confirm.flags == NegResponseFlags.EXTENDED_CLIENT_DATA_SUPPORTED


def test_xrdp_refusal_is_explained() -> None:
    with pytest.raises(ProtocolError, match=r"0xf0 \(Data\).*Disconnect Provider Ultimatum"):
        decode_connection_confirm(XRDP_REFUSAL)


def test_default_request_asks_for_ssl_and_hybrid_without_flags() -> None:
    data = encode_connection_request(ConnectionRequest())
    assert DEFAULT_REQUESTED_PROTOCOLS == 0x3
    assert data == bytes.fromhex("030000130ee000000000000100080003000000")


@pytest.mark.parametrize(
    "request_",
    [
        ConnectionRequest(),
        ConnectionRequest(negotiation=None),
        ConnectionRequest(cookie=""),
        ConnectionRequest(cookie="DOMAIN\\Jörg Müller", negotiation=None),
        ConnectionRequest(cookie="Jörg€".encode().decode("latin-1")),  # FreeRDP sends UTF-8 bytes
        ConnectionRequest(routing_token=b"Cookie: msts=3640205228.15629.0000\r\n"),
        ConnectionRequest(routing_token=b"tsv://MS Terminal Services Plugin.1.Sessions\r\n"),
        ConnectionRequest(
            cookie="x" * 200,
            negotiation=NegotiationRequest(SecurityProtocol(0xFFFFFFFF), NegRequestFlags(0xF7)),
        ),
        ConnectionRequest(
            cookie="alice",
            negotiation=NegotiationRequest(
                SecurityProtocol.PROTOCOL_SSL | SecurityProtocol.PROTOCOL_HYBRID_EX,
                NegRequestFlags.CORRELATION_INFO_PRESENT | NegRequestFlags.RESTRICTED_ADMIN_MODE_REQUIRED,
                correlation_id=bytes(range(0x20, 0x30)),
            ),
        ),
    ],
    ids=repr,
)
def test_connection_request_round_trip(request_: ConnectionRequest) -> None:
    assert decode_connection_request(encode_connection_request(request_)) == request_


@pytest.mark.parametrize(
    "confirm",
    [
        StandardRdpConfirm(),
        *(NegotiationResponse(protocol) for protocol in SecurityProtocol),
        NegotiationResponse(SecurityProtocol.PROTOCOL_HYBRID, NegResponseFlags(0x1F)),
        *(NegotiationFailure(code) for code in NegFailureCode),
    ],
    ids=repr,
)
def test_connection_confirm_round_trip(
    confirm: NegotiationResponse | NegotiationFailure | StandardRdpConfirm,
) -> None:
    assert decode_connection_confirm(encode_connection_confirm(confirm)) == confirm


@pytest.mark.parametrize(
    ("code", "name"),
    [
        (1, "SSL_REQUIRED_BY_SERVER"),
        (2, "SSL_NOT_ALLOWED_BY_SERVER"),
        (3, "SSL_CERT_NOT_ON_SERVER"),
        (4, "INCONSISTENT_FLAGS"),
        (5, "HYBRID_REQUIRED_BY_SERVER"),
        (6, "SSL_WITH_USER_AUTH_REQUIRED_BY_SERVER"),
    ],
)
def test_every_failure_code(code: int, name: str) -> None:
    data = bytes.fromhex("030000130ed000000000000300080000000000")[:-4] + code.to_bytes(4, "little")
    confirm = decode_connection_confirm(data)
    assert isinstance(confirm, NegotiationFailure)
    assert confirm.failure_code == code
    assert confirm.failure_code.name == name


def test_bare_confirm_is_standard_rdp() -> None:
    assert decode_connection_confirm(bytes.fromhex("0300000b06d00000123400")) == StandardRdpConfirm()


def _confirm_with(neg: bytes, li: int | None = None) -> bytes:
    tpdu_rest = bytes.fromhex("d00000000000") + neg
    body = bytes((len(tpdu_rest) if li is None else li,)) + tpdu_rest
    return bytes((3, 0, 0, 4 + len(body))) + body


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_confirm_with(bytes.fromhex("0400080000000000")), "unknown negotiation type 0x04"),
        (_confirm_with(bytes.fromhex("0100080000000000")), "unknown negotiation type 0x01"),
        (_confirm_with(bytes.fromhex("0300080007000000")), "unknown RDP_NEG_FAILURE failureCode 0x00000007"),
        (_confirm_with(bytes.fromhex("0300080000000000")), "failureCode 0x00000000"),
        (_confirm_with(bytes.fromhex("0200080003000000")), "not a single known security protocol"),
        (_confirm_with(bytes.fromhex("0200080000010000")), "not a single known security protocol"),
        (_confirm_with(bytes.fromhex("0200090001000000")), "length field is 9, expected 8"),
        (_confirm_with(bytes.fromhex("0200100001000000")), "length field is 16"),
        (_confirm_with(bytes.fromhex("02000800010000")), "truncated negotiation response: 7 of 8"),
        (_confirm_with(bytes.fromhex("020008000100000000")), "1 unexpected bytes"),
        (
            _confirm_with(bytes.fromhex("0200080001000000"), li=13),
            "length indicator 13 disagrees with the 14",
        ),
        (_confirm_with(bytes.fromhex("0200080001000000"), li=200), "length indicator 200"),
        (
            bytes.fromhex("030000130ee000000000000200080001000000"),
            r"got TPDU code 0xe0 \(Connection Request\)",
        ),
        (bytes.fromhex("0300000b06800000000000"), r"0x80 \(Disconnect Request\)"),
        (bytes.fromhex("030000130e000000000000020008000100000000"), "1 bytes after the 19-byte TPKT"),
        (bytes.fromhex("030000130ed0000000000002000800010000"), "truncated TPKT packet: 18 of 19"),
        (bytes.fromhex("0300000904d0000000"), "truncated X.224 Connection Confirm: 5 of 7"),
        (bytes.fromhex("0200000b06d00000123400"), "version byte is 0x02"),
        (b"\x03\x00\xff\xff" + bytes(20), "truncated TPKT packet"),
        (b"", "truncated TPKT header"),
        (b"SSH-2.0-OpenSSH_9.2\r\n", "not a TPKT packet"),
    ],
)
def test_malformed_confirms(data: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        decode_connection_confirm(data)


def test_oversized_confirm_refused_by_bound() -> None:
    data = _confirm_with(bytes.fromhex("0200080001000000"))
    with pytest.raises(ProtocolError, match="exceeds the accepted maximum of 16"):
        decode_connection_confirm(data, max_length=16)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (SPEC_CONNECTION_REQUEST.replace(b"\r\n", b"\r_"), "not terminated by CRLF"),
        (bytes.fromhex("030000130ee000000000000200080000000000"), "expected RDP_NEG_REQ"),
        (bytes.fromhex("030000130ee000000000000100090000000000"), "RDP_NEG_REQ length field is 9"),
        (bytes.fromhex("030000130ee000000000000108080000000000"), "CORRELATION_INFO must be 36 bytes, got 0"),
        (bytes.fromhex("030000140fe00000000000010008000000000000"), "1 unexpected bytes after RDP_NEG_REQ"),
        (bytes.fromhex("0300000d08e000000000000d0a"), "at least one byte followed by CRLF"),
        (bytes.fromhex("030000130ed000000000000100080000000000"), "got TPDU code 0xd0"),
    ],
)
def test_malformed_requests(data: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        decode_connection_request(data)


def test_bad_correlation_info_header() -> None:
    request = ConnectionRequest(
        negotiation=NegotiationRequest(
            flags=NegRequestFlags.CORRELATION_INFO_PRESENT, correlation_id=bytes(range(0x20, 0x30))
        )
    )
    data = bytearray(encode_connection_request(request))
    data[-36 + 2] = 35  # correlation info length field
    with pytest.raises(ProtocolError, match="bad RDP_NEG_CORRELATION_INFO header"):
        decode_connection_request(bytes(data))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ConnectionRequest(cookie="alice\r\n"), "no CR/LF"),
        (lambda: ConnectionRequest(cookie="a\nb"), "no CR/LF"),
        (lambda: ConnectionRequest(cookie="ünï€ode"), "Latin-1"),
        (lambda: ConnectionRequest(cookie="a", routing_token=b"t\r\n"), "not both"),
        (lambda: ConnectionRequest(routing_token=b"token"), "followed by CRLF"),
        (lambda: ConnectionRequest(routing_token=b"\r\n"), "at least one byte"),
        (lambda: ConnectionRequest(routing_token=b"a\rb\r\n"), "must not contain CR or LF"),
        (lambda: ConnectionRequest(routing_token=b"Cookie: mstshash=x\r\n"), "use cookie"),
        (lambda: ConnectionRequest(routing_token=b"\x01abc\r\n"), "ambiguous"),
    ],
)
def test_invalid_values_are_refused_on_construction(make: object, message: str) -> None:
    assert callable(make)
    with pytest.raises(ProtocolError, match=message):
        make()


def test_cookie_too_long_for_the_one_byte_length_indicator() -> None:
    assert encode_connection_request(ConnectionRequest(cookie="x" * 221))[4] == 254
    with pytest.raises(ProtocolError, match="too long"):
        encode_connection_request(ConnectionRequest(cookie="x" * 222))


def _decode_both(data: bytes) -> None:
    for decode in (decode_connection_confirm, decode_connection_request):
        with contextlib.suppress(ProtocolError):
            decode(data)


def test_random_bytes_raise_only_protocol_error() -> None:
    rng = random.Random(20241126)
    for _ in range(5000):
        size = rng.choice((0, 1, 3, 4, 5, 7, 11, 19, 44, rng.randrange(0, 300)))
        data = bytes(rng.randrange(256) for _ in range(size))
        if rng.random() < 0.7 and size >= 4:  # a plausible TPKT header gets past the first check
            data = b"\x03\x00" + size.to_bytes(2, "big") + data[4:]
        if rng.random() < 0.5 and size >= 6:
            data = data[:4] + bytes((min(size - 5, 255), rng.choice((0xD0, 0xE0)))) + data[6:]
        _decode_both(data)


def test_truncations_and_byte_flips_of_valid_pdus_raise_only_protocol_error() -> None:
    rng = random.Random(7)
    samples = [SPEC_CONNECTION_REQUEST, SPEC_CONNECTION_CONFIRM, XRDP_CONFIRM_SSL, XRDP_REFUSAL]
    for sample in samples:
        for cut in range(len(sample)):
            _decode_both(sample[:cut])
        for index in range(len(sample)):
            for _ in range(16):
                mutated = bytearray(sample)
                mutated[index] = rng.randrange(256)
                _decode_both(bytes(mutated))
