"""TPKT framing (RFC 1006 section 6), the outermost layer of an RDP connection.

A TPKT is a 4-byte header (version 3, a reserved zero byte, the 16-bit big-endian length of
the whole packet including the header) followed by one X.224 TPDU.
"""

from __future__ import annotations

from typing import Final

from protocol.errors import ProtocolError

TPKT_VERSION: Final = 3
TPKT_HEADER_LENGTH: Final = 4
#: The smallest X.224 TPDU (a data TPDU header: LI, code, EOT) is 3 octets.
TPKT_MIN_LENGTH: Final = TPKT_HEADER_LENGTH + 3
TPKT_MAX_LENGTH: Final = 0xFFFF


def encode_tpkt(payload: bytes) -> bytes:
    """Frame ``payload`` (one X.224 TPDU) in a TPKT header."""
    length = TPKT_HEADER_LENGTH + len(payload)
    if length < TPKT_MIN_LENGTH:
        raise ProtocolError(f"TPKT payload of {len(payload)} bytes is too short (at least 3 bytes)")
    if length > TPKT_MAX_LENGTH:
        raise ProtocolError(f"TPKT payload of {len(payload)} bytes does not fit a 16-bit TPKT length")
    return bytes((TPKT_VERSION, 0, length >> 8, length & 0xFF)) + payload


def decode_tpkt_header(header: bytes, *, max_length: int = TPKT_MAX_LENGTH) -> int:
    """Validate a 4-byte TPKT header and return the total packet length it announces.

    ``max_length`` lets a reader refuse to buffer more than it expects (a probe expects a
    few dozen bytes, so it passes a small bound).
    """
    if len(header) != TPKT_HEADER_LENGTH:
        raise ProtocolError(f"TPKT header must be {TPKT_HEADER_LENGTH} bytes, got {len(header)}")
    if header[0] != TPKT_VERSION:
        raise ProtocolError(f"not a TPKT packet: version byte is 0x{header[0]:02x}, expected 0x03")
    if header[1] != 0:
        raise ProtocolError(f"TPKT reserved byte must be 0, got 0x{header[1]:02x}")
    length = (header[2] << 8) | header[3]
    if length < TPKT_MIN_LENGTH:
        raise ProtocolError(f"TPKT length {length} is below the minimum of {TPKT_MIN_LENGTH}")
    if length > max_length:
        raise ProtocolError(f"TPKT length {length} exceeds the accepted maximum of {max_length}")
    return length


def decode_tpkt(data: bytes, *, max_length: int = TPKT_MAX_LENGTH) -> bytes:
    """Return the payload of exactly one TPKT packet; ``data`` must hold nothing else."""
    if len(data) < TPKT_HEADER_LENGTH:
        raise ProtocolError(f"truncated TPKT header: {len(data)} of {TPKT_HEADER_LENGTH} bytes")
    length = decode_tpkt_header(data[:TPKT_HEADER_LENGTH], max_length=max_length)
    if len(data) < length:
        raise ProtocolError(f"truncated TPKT packet: {len(data)} of {length} bytes")
    if len(data) > length:
        raise ProtocolError(f"{len(data) - length} bytes after the {length}-byte TPKT packet")
    return data[TPKT_HEADER_LENGTH:]
