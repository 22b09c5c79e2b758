"""What an RDP relay reads before it knows where a connection goes: the client hello.

A client opens with an optional Pre-Connection PDU (MS-RDPEPS 2.2.1, ``.rdp`` ``pcb:s:`` /
FreeRDP ``/pcb:``) followed by its X.224 Connection Request (MS-RDPBCGR 2.2.1.1), which may
carry a routing token (``.rdp`` ``loadbalanceinfo:s:`` / FreeRDP ``/load-balance-info:``: the
text followed by CRLF, in place of the ``Cookie: mstshash=`` cookie). :func:`read_client_hello`
reads exactly those bytes, :meth:`ClientHello.token` takes the one-time token out of them, and
:meth:`ClientHello.forwarded_request` is the request the host gets, without the token.

The two are told apart by their first bytes: a TPKT header is ``03 00``, while a
Pre-Connection PDU starts with its little-endian ``cbSize``, which could only begin ``03 00``
for sizes of 0x10003 and more; those are refused long before (``max_pcb_length`` is capped
below 0x10000).
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass, field, replace
from typing import Final

from protocol.errors import ProtocolError
from protocol.pcb import MAX_PCB_LENGTH, PCB_V1_LENGTH, PreconnectionPdu, decode_preconnection_pdu
from protocol.tpkt import TPKT_HEADER_LENGTH, TPKT_VERSION, decode_tpkt_header, encode_tpkt
from protocol.x224 import (
    CRLF,
    X224_FIXED_LENGTH,
    X224_MAX_LI,
    ConnectionRequest,
    decode_connection_request,
    encode_connection_request,
)

#: The longest Connection Request: a TPKT header and a TPDU whose length indicator is at most 254.
MAX_REQUEST_LENGTH: Final = TPKT_HEADER_LENGTH + 1 + X224_MAX_LI
#: The shortest: a TPKT header and the 7 fixed bytes of the TPDU (no cookie, no RDP_NEG_REQ).
MIN_REQUEST_LENGTH: Final = TPKT_HEADER_LENGTH + X224_FIXED_LENGTH
_U32: Final = struct.Struct("<I")


def _routing_token_text(token: bytes) -> str:
    body = token[: -len(CRLF)]
    if not all(0x20 <= byte <= 0x7E for byte in body):
        raise ProtocolError("routing token is not printable ASCII")
    return body.decode("ascii")


@dataclass(frozen=True, slots=True)
class ClientHello:
    """The first PDU(s) of a client connection.

    ``raw_request`` is the Connection Request exactly as received (set by
    :func:`read_client_hello`); with it, :meth:`forwarded_request` keeps every byte the decoder
    does not model (X.224 DST-REF/SRC-REF/class, correlation-info flags and reserved bytes).
    It must decode to ``request``. Without it the request is re-encoded.
    """

    pcb: PreconnectionPdu | None
    request: ConnectionRequest
    raw_request: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.raw_request is not None:
            raw = bytes(self.raw_request)
            object.__setattr__(self, "raw_request", raw)
            if decode_connection_request(raw, max_length=MAX_REQUEST_LENGTH) != self.request:
                raise ProtocolError("raw_request does not decode to request")

    def token(self) -> str | None:
        """The token the client presents, or ``None``.

        The routing token without its CRLF (it must be printable ASCII, else
        :class:`ProtocolError`); else the Pre-Connection PDU V2 blob (already without its null
        terminator(s)), unless it is empty; else ``None``. A routing token wins over a blob.
        mstsc's load-balancing form ``Cookie: msts=<ip>.<port>.<reserved>`` is a routing token
        too (only ``Cookie: mstshash=`` is the cookie), so its token is that whole line:
        ``"Cookie: msts=3640205228.15629.0000"``.
        """
        if self.request.routing_token is not None:
            return _routing_token_text(self.request.routing_token)
        if self.pcb is not None and self.pcb.blob:
            return self.pcb.blob
        return None

    def forwarded_request(self) -> bytes:
        """The whole TPKT of this Connection Request without the routing token.

        Everything else (cookie, ``RDP_NEG_REQ`` with its flags, correlation info) is kept
        byte for byte; only the TPKT length and the X.224 length indicator shrink. The
        Pre-Connection PDU is never forwarded.
        """
        token = self.request.routing_token
        if self.raw_request is None:
            return encode_connection_request(replace(self.request, routing_token=None))
        if token is None:
            return self.raw_request
        start = TPKT_HEADER_LENGTH + X224_FIXED_LENGTH
        if self.raw_request[start : start + len(token)] != token:  # checked in __post_init__
            raise ProtocolError("routing token is not where the Connection Request has it")
        rest = self.raw_request[TPKT_HEADER_LENGTH + 1 : start] + self.raw_request[start + len(token) :]
        return encode_tpkt(bytes((len(rest),)) + rest)


async def _read(reader: asyncio.StreamReader, count: int, what: str) -> bytes:
    try:
        return await reader.readexactly(count)
    except asyncio.IncompleteReadError as exc:
        got = len(exc.partial)
        if got == 0:
            raise ProtocolError(f"connection closed before the {what}") from None
        raise ProtocolError(f"connection closed after {got} of {count} bytes of the {what}") from None


async def _read_request(reader: asyncio.StreamReader, header: bytes) -> tuple[ConnectionRequest, bytes]:
    length = decode_tpkt_header(header, max_length=MAX_REQUEST_LENGTH)
    if length < MIN_REQUEST_LENGTH:
        raise ProtocolError(
            f"TPKT length {length} is too short for an X.224 Connection Request"
            f" (at least {MIN_REQUEST_LENGTH})"
        )
    raw = header + await _read(reader, length - TPKT_HEADER_LENGTH, "X.224 Connection Request")
    return decode_connection_request(raw, max_length=MAX_REQUEST_LENGTH), raw


async def read_client_hello(
    reader: asyncio.StreamReader, *, max_pcb_length: int = MAX_PCB_LENGTH
) -> ClientHello:
    """Read the optional Pre-Connection PDU and the X.224 Connection Request, and nothing more.

    Every length is checked before its body is read: a TPKT above :data:`MAX_REQUEST_LENGTH`
    (259) or below :data:`MIN_REQUEST_LENGTH` (11) bytes, a ``cbSize`` below 16 or above
    ``max_pcb_length``. On return the reader is at the first byte after the request. Malformed
    input and EOF mid-way raise :class:`ProtocolError`; socket errors (``OSError``) and
    cancellation propagate unchanged. There is no timeout here: the caller wraps the call in
    ``asyncio.timeout``.
    """
    if not PCB_V1_LENGTH <= max_pcb_length <= 0xFFFF:
        raise ProtocolError(f"max_pcb_length {max_pcb_length} must be between {PCB_V1_LENGTH} and 65535")
    first = await _read(reader, 4, "first PDU")
    if first[0] == TPKT_VERSION and first[1] == 0:
        request, raw = await _read_request(reader, first)
        return ClientHello(pcb=None, request=request, raw_request=raw)
    (size,) = _U32.unpack(first)
    if not PCB_V1_LENGTH <= size <= max_pcb_length:
        raise ProtocolError(
            f"first PDU is neither a TPKT (starts {first[:2].hex(' ')}, expected 03 00) nor a"
            f" pre-connection PDU (cbSize {size} outside {PCB_V1_LENGTH}..{max_pcb_length})"
        )
    pcb = decode_preconnection_pdu(
        first + await _read(reader, size - 4, "pre-connection PDU"), max_length=max_pcb_length
    )
    request, raw = await _read_request(reader, await _read(reader, 4, "X.224 Connection Request"))
    return ClientHello(pcb=pcb, request=request, raw_request=raw)
