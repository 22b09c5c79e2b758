"""TPKT framing (RFC 1006)."""

from __future__ import annotations

import pytest

from protocol.errors import ProtocolError
from protocol.tpkt import decode_tpkt, decode_tpkt_header, encode_tpkt


def test_encode_prefixes_version_reserved_and_big_endian_length() -> None:
    assert encode_tpkt(b"\x02\xf0\x80") == b"\x03\x00\x00\x07\x02\xf0\x80"
    assert encode_tpkt(bytes(300))[:4] == b"\x03\x00\x01\x30"


def test_round_trip() -> None:
    payload = bytes(range(256)) * 3
    assert decode_tpkt(encode_tpkt(payload)) == payload


def test_largest_packet_fits_and_one_more_byte_does_not() -> None:
    assert decode_tpkt(encode_tpkt(bytes(0xFFFF - 4)))[:1] == b"\x00"
    with pytest.raises(ProtocolError, match="16-bit"):
        encode_tpkt(bytes(0xFFFF - 3))


def test_too_short_payload_is_refused_on_encode() -> None:
    with pytest.raises(ProtocolError, match="too short"):
        encode_tpkt(b"\x00")


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (b"\x16\x03\x01\x00", "not a TPKT packet: version byte is 0x16"),  # a TLS ClientHello
        (b"HTTP", "not a TPKT packet"),
        (b"\x03\x01\x00\x13", "reserved byte"),
        (b"\x03\x00\x00\x06", "below the minimum"),
        (b"\x03\x00\x00\x00", "below the minimum"),
        (b"\x03\x00\x00", "must be 4 bytes"),
    ],
)
def test_bad_headers(header: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        decode_tpkt_header(header)


def test_header_length_above_the_callers_bound_is_refused() -> None:
    assert decode_tpkt_header(b"\x03\x00\x10\x00", max_length=4096) == 4096
    with pytest.raises(ProtocolError, match="exceeds the accepted maximum of 4096"):
        decode_tpkt_header(b"\x03\x00\x10\x01", max_length=4096)


def test_truncated_and_trailing_data() -> None:
    packet = encode_tpkt(b"\x02\xf0\x80")
    with pytest.raises(ProtocolError, match="truncated TPKT packet: 6 of 7"):
        decode_tpkt(packet[:-1])
    with pytest.raises(ProtocolError, match="truncated TPKT header"):
        decode_tpkt(packet[:2])
    with pytest.raises(ProtocolError, match="1 bytes after"):
        decode_tpkt(packet + b"\x00")
