"""X.224 Connection Request / Connection Confirm TPDUs as RDP uses them (MS-RDPBCGR 2.2.1.1, 2.2.1.2).

Both are class 0 TPDUs inside one TPKT::

    LI (1) | code (1: 0xE0 CR, 0xD0 CC) | DST-REF (2) | SRC-REF (2) | class (1) | variable part

``LI`` (length indicator) counts every byte after itself; RDP TPDUs have no user data, so
``LI == len(TPDU) - 1`` and at most 254. A request's variable part is an optional cookie
(``Cookie: mstshash=<id>\\r\\n``) or routing token (any bytes ending in ``\\r\\n``), then an
optional ``RDP_NEG_REQ``; a confirm's variable part is empty or one ``RDP_NEG_RSP`` /
``RDP_NEG_FAILURE``. Encoders and decoders work on whole TPKT packets and are pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from protocol.errors import ProtocolError
from protocol.negotiation import (
    CORRELATION_INFO_LENGTH,
    NEG_STRUCTURE_LENGTH,
    ConnectionConfirm,
    NegotiationRequest,
    NegType,
    StandardRdpConfirm,
    decode_negotiation_request,
    decode_negotiation_result,
    encode_negotiation_request,
    encode_negotiation_result,
)
from protocol.tpkt import TPKT_MAX_LENGTH, decode_tpkt, encode_tpkt

TPDU_CONNECTION_REQUEST: Final = 0xE0
TPDU_CONNECTION_CONFIRM: Final = 0xD0
_TPDU_NAMES: Final = {
    0xE: "Connection Request",
    0xD: "Connection Confirm",
    0x8: "Disconnect Request",
    0xC: "Disconnect Confirm",
    0xF: "Data",
    0x7: "TPDU Error",
}
#: LI, code, DST-REF, SRC-REF, class option.
X224_FIXED_LENGTH: Final = 7
X224_MAX_LI: Final = 254
COOKIE_PREFIX: Final = b"Cookie: mstshash="
CRLF: Final = b"\r\n"
#: A cookie identifier: one byte per character ("ANSI"; clients send their code page, FreeRDP
#: UTF-8 bytes, which decode here as Latin-1), no C0 control characters or DEL (so no CR/LF).
_COOKIE_RE: Final = re.compile(r"[\x20-\x7e\x80-\xff]*")


def _check_cookie(cookie: str) -> None:
    if _COOKIE_RE.fullmatch(cookie) is None:
        raise ProtocolError(
            f"cookie {cookie!r} must be single-byte (Latin-1) text without control characters (no CR/LF)"
        )


def _check_routing_token(token: bytes) -> None:
    body = token[: -len(CRLF)]
    if not token.endswith(CRLF) or not body:
        raise ProtocolError("routing token must be at least one byte followed by CRLF")
    if b"\r" in body or b"\n" in body:
        raise ProtocolError("routing token must not contain CR or LF before its final CRLF")
    if token.startswith(COOKIE_PREFIX):
        raise ProtocolError("a routing token must not start with 'Cookie: mstshash=' (use cookie)")
    if token[0] == NegType.TYPE_RDP_NEG_REQ:
        raise ProtocolError("a routing token must not start with byte 0x01 (ambiguous with RDP_NEG_REQ)")


@dataclass(frozen=True, slots=True)
class ConnectionRequest:
    """Client X.224 Connection Request. ``negotiation=None`` sends no ``RDP_NEG_REQ`` (legacy client)."""

    cookie: str | None = None
    routing_token: bytes | None = None
    negotiation: NegotiationRequest | None = field(default_factory=NegotiationRequest)

    def __post_init__(self) -> None:
        if self.cookie is not None and self.routing_token is not None:
            raise ProtocolError("a Connection Request carries a cookie or a routing token, not both")
        if self.cookie is not None:
            _check_cookie(self.cookie)
        if self.routing_token is not None:
            object.__setattr__(self, "routing_token", bytes(self.routing_token))
            _check_routing_token(bytes(self.routing_token))


def _describe_code(code: int) -> str:
    name = _TPDU_NAMES.get(code >> 4)
    return f"0x{code:02x} ({name})" if name else f"0x{code:02x}"


def _refusal_hint(tpdu: bytes) -> str:
    # An X.224 Data TPDU (LI 2, 0xF0, EOT) whose MCS PDU is a Disconnect Provider Ultimatum
    # (PER choice 8 -> first byte 0x20..0x23): xrdp 0.9 answers this way to a request it
    # rejects (RDP_NEG_REQ flags other than 0, 1, 8, or protocol bits above 0x0B).
    if tpdu[1] >> 4 == 0xF and len(tpdu) >= 4 and tpdu[3] & 0xFC == 0x20:
        return ": an MCS Disconnect Provider Ultimatum, the server refused the request"
    return ""


def _split_tpdu(data: bytes, expected_code: int, what: str, max_length: int) -> bytes:
    """Validate TPKT + fixed X.224 header; return the variable part."""
    tpdu = decode_tpkt(data, max_length=max_length)
    code = tpdu[1]
    if code != expected_code:
        raise ProtocolError(
            f"expected X.224 {what} (0x{expected_code:02x}), got TPDU code {_describe_code(code)}"
            + _refusal_hint(tpdu)
        )
    li = tpdu[0]
    if li != len(tpdu) - 1:
        raise ProtocolError(f"X.224 length indicator {li} disagrees with the {len(tpdu) - 1} bytes after it")
    if len(tpdu) < X224_FIXED_LENGTH:
        raise ProtocolError(f"truncated X.224 {what}: {len(tpdu)} of {X224_FIXED_LENGTH} bytes")
    return tpdu[X224_FIXED_LENGTH:]


def _frame(code: int, variable: bytes) -> bytes:
    tpdu_length = X224_FIXED_LENGTH + len(variable)
    li = tpdu_length - 1
    if li > X224_MAX_LI:
        raise ProtocolError(
            f"X.224 TPDU of {tpdu_length} bytes is too long (length indicator {li} > {X224_MAX_LI});"
            " shorten the cookie or routing token"
        )
    return encode_tpkt(bytes((li, code, 0, 0, 0, 0, 0)) + variable)


def encode_connection_request(request: ConnectionRequest) -> bytes:
    """The whole TPKT packet of a Client X.224 Connection Request PDU."""
    variable = b""
    if request.cookie is not None:
        variable = COOKIE_PREFIX + request.cookie.encode("latin-1") + CRLF
    elif request.routing_token is not None:
        variable = request.routing_token
    if request.negotiation is not None:
        variable += encode_negotiation_request(request.negotiation)
    return _frame(TPDU_CONNECTION_REQUEST, variable)


def decode_connection_request(data: bytes, *, max_length: int = TPKT_MAX_LENGTH) -> ConnectionRequest:
    """Parse one whole TPKT packet holding a Client X.224 Connection Request PDU."""
    variable = _split_tpdu(data, TPDU_CONNECTION_REQUEST, "Connection Request", max_length)
    cookie: str | None = None
    token: bytes | None = None
    if variable and variable[0] != NegType.TYPE_RDP_NEG_REQ:
        end = variable.find(CRLF)
        if end < 0 and len(variable) in (
            NEG_STRUCTURE_LENGTH,
            NEG_STRUCTURE_LENGTH + CORRELATION_INFO_LENGTH,
        ):
            # No token, but a negotiation structure whose type is not 0x01: this raises the clearer error.
            decode_negotiation_request(variable)
        if end < 0:
            raise ProtocolError("cookie / routing token in the Connection Request is not terminated by CRLF")
        if variable.startswith(COOKIE_PREFIX):
            cookie = variable[len(COOKIE_PREFIX) : end].decode("latin-1")
        else:
            token = variable[: end + len(CRLF)]
        variable = variable[end + len(CRLF) :]
    negotiation = decode_negotiation_request(variable) if variable else None
    return ConnectionRequest(cookie=cookie, routing_token=token, negotiation=negotiation)


def encode_connection_confirm(confirm: ConnectionConfirm) -> bytes:
    """The whole TPKT packet of a Server X.224 Connection Confirm PDU."""
    variable = b"" if isinstance(confirm, StandardRdpConfirm) else encode_negotiation_result(confirm)
    return _frame(TPDU_CONNECTION_CONFIRM, variable)


def decode_connection_confirm(data: bytes, *, max_length: int = TPKT_MAX_LENGTH) -> ConnectionConfirm:
    """Parse one whole TPKT packet holding a Server X.224 Connection Confirm PDU.

    Returns :class:`NegotiationResponse`, :class:`NegotiationFailure`, or
    :class:`StandardRdpConfirm` when the server sent no negotiation data.
    """
    variable = _split_tpdu(data, TPDU_CONNECTION_CONFIRM, "Connection Confirm", max_length)
    if not variable:
        return StandardRdpConfirm()
    return decode_negotiation_result(variable)
