"""RDP security negotiation structures (MS-RDPBCGR 2.2.1.1.1, 2.2.1.1.2, 2.2.1.2.1, 2.2.1.2.2).

The client puts an ``RDP_NEG_REQ`` (and, optionally, ``RDP_NEG_CORRELATION_INFO``) at the end
of its X.224 Connection Request; the server answers in its Connection Confirm with either an
``RDP_NEG_RSP`` (the protocol it selected) or an ``RDP_NEG_FAILURE`` (why it refused), or with
no negotiation data at all when it only speaks standard RDP security. All multi-byte fields
are little-endian.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from types import MappingProxyType
from typing import Final

from protocol.errors import ProtocolError


class SecurityProtocol(IntFlag):
    """``requestedProtocols`` / ``selectedProtocol`` values (MS-RDPBCGR 2.2.1.1.1)."""

    PROTOCOL_RDP = 0x00000000
    PROTOCOL_SSL = 0x00000001
    PROTOCOL_HYBRID = 0x00000002
    PROTOCOL_RDSTLS = 0x00000004
    PROTOCOL_HYBRID_EX = 0x00000008
    PROTOCOL_RDSAAD = 0x00000010


class NegType(IntEnum):
    """The ``type`` byte of the negotiation structures."""

    TYPE_RDP_NEG_REQ = 0x01
    TYPE_RDP_NEG_RSP = 0x02
    TYPE_RDP_NEG_FAILURE = 0x03
    TYPE_RDP_CORRELATION_INFO = 0x06


class NegRequestFlags(IntFlag):
    """``RDP_NEG_REQ.flags``. xrdp 0.9 drops a request whose flags are not 0, 1 or 8."""

    RESTRICTED_ADMIN_MODE_REQUIRED = 0x01
    REDIRECTED_AUTHENTICATION_MODE_REQUIRED = 0x02
    CORRELATION_INFO_PRESENT = 0x08


class NegResponseFlags(IntFlag):
    """``RDP_NEG_RSP.flags``."""

    EXTENDED_CLIENT_DATA_SUPPORTED = 0x01
    DYNVC_GFX_PROTOCOL_SUPPORTED = 0x02
    NEGRSP_FLAG_RESERVED = 0x04
    RESTRICTED_ADMIN_MODE_SUPPORTED = 0x08
    REDIRECTED_AUTHENTICATION_MODE_SUPPORTED = 0x10


class NegFailureCode(IntEnum):
    """``RDP_NEG_FAILURE.failureCode`` (MS-RDPBCGR 2.2.1.2.2)."""

    SSL_REQUIRED_BY_SERVER = 0x00000001
    SSL_NOT_ALLOWED_BY_SERVER = 0x00000002
    SSL_CERT_NOT_ON_SERVER = 0x00000003
    INCONSISTENT_FLAGS = 0x00000004
    HYBRID_REQUIRED_BY_SERVER = 0x00000005
    SSL_WITH_USER_AUTH_REQUIRED_BY_SERVER = 0x00000006


#: What a probe asks for: TLS or CredSSP, so the server answers with a certificate.
#: (xrdp 0.9 drops the connection without a confirm if any bit above 0x0B is set.)
DEFAULT_REQUESTED_PROTOCOLS: Final = SecurityProtocol.PROTOCOL_SSL | SecurityProtocol.PROTOCOL_HYBRID

#: Short lowercase names, as stored in probe results and accepted by :func:`parse_protocols`.
PROTOCOL_NAMES: Final[Mapping[SecurityProtocol, str]] = MappingProxyType(
    {
        SecurityProtocol.PROTOCOL_RDP: "rdp",
        SecurityProtocol.PROTOCOL_SSL: "ssl",
        SecurityProtocol.PROTOCOL_HYBRID: "hybrid",
        SecurityProtocol.PROTOCOL_RDSTLS: "rdstls",
        SecurityProtocol.PROTOCOL_HYBRID_EX: "hybrid_ex",
        SecurityProtocol.PROTOCOL_RDSAAD: "rdsaad",
    }
)
_PROTOCOLS_BY_NAME: Final = {name: protocol for protocol, name in PROTOCOL_NAMES.items()}

NEG_STRUCTURE_LENGTH: Final = 8
CORRELATION_INFO_LENGTH: Final = 36
CORRELATION_ID_LENGTH: Final = 16
_NEG_HEADER: Final = struct.Struct("<BBHI")  # type, flags, length, 32-bit value
_CORRELATION_HEADER: Final = struct.Struct("<BBH")  # type, flags, length
_NO_REQUEST_FLAGS: Final = NegRequestFlags(0)
_NO_RESPONSE_FLAGS: Final = NegResponseFlags(0)


def protocol_name(protocol: SecurityProtocol) -> str:
    """The short name of one selected protocol (``"ssl"``); raises for a combination."""
    try:
        return PROTOCOL_NAMES[protocol]
    except KeyError:
        raise ProtocolError(f"0x{int(protocol):08x} is not a single known security protocol") from None


def parse_protocols(text: str) -> SecurityProtocol:
    """Parse ``"ssl,hybrid"`` (names of :data:`PROTOCOL_NAMES`, comma separated) into flags."""
    result = SecurityProtocol.PROTOCOL_RDP
    for raw in text.split(","):
        name = raw.strip().lower()
        if name not in _PROTOCOLS_BY_NAME:
            known = ", ".join(PROTOCOL_NAMES.values())
            raise ProtocolError(f"unknown security protocol {raw.strip()!r} (known: {known})")
        result |= _PROTOCOLS_BY_NAME[name]
    return result


def _check_uint(value: int, bits: int, what: str) -> int:
    number = int(value)
    if not 0 <= number < (1 << bits):
        raise ProtocolError(f"{what} 0x{number:x} does not fit {bits} bits")
    return number


@dataclass(frozen=True, slots=True)
class NegotiationRequest:
    """``RDP_NEG_REQ`` plus the optional ``RDP_NEG_CORRELATION_INFO``.

    ``correlation_id`` must be given exactly when ``flags`` has ``CORRELATION_INFO_PRESENT``.
    """

    requested_protocols: SecurityProtocol = DEFAULT_REQUESTED_PROTOCOLS
    flags: NegRequestFlags = _NO_REQUEST_FLAGS
    correlation_id: bytes | None = None

    def __post_init__(self) -> None:
        protocols = _check_uint(self.requested_protocols, 32, "requestedProtocols")
        flags = _check_uint(self.flags, 8, "RDP_NEG_REQ flags")
        object.__setattr__(self, "requested_protocols", SecurityProtocol(protocols))
        object.__setattr__(self, "flags", NegRequestFlags(flags))
        wants_correlation = bool(flags & NegRequestFlags.CORRELATION_INFO_PRESENT)
        if wants_correlation != (self.correlation_id is not None):
            raise ProtocolError("correlation_id must be set exactly when CORRELATION_INFO_PRESENT is set")
        if self.correlation_id is not None:
            cid = bytes(self.correlation_id)
            if len(cid) != CORRELATION_ID_LENGTH:
                raise ProtocolError(f"correlation_id must be {CORRELATION_ID_LENGTH} bytes, got {len(cid)}")
            # MS-RDPBCGR 2.2.1.1.2: the first byte SHOULD NOT be 0x00 or 0xF4, no byte SHOULD be 0x0D.
            if cid[0] in (0x00, 0xF4) or 0x0D in cid:
                raise ProtocolError("correlation_id must not start with 0x00/0xF4 nor contain 0x0D")
            object.__setattr__(self, "correlation_id", cid)

    @property
    def encoded_length(self) -> int:
        extra = CORRELATION_INFO_LENGTH if self.correlation_id is not None else 0
        return NEG_STRUCTURE_LENGTH + extra


@dataclass(frozen=True, slots=True)
class NegotiationResponse:
    """``RDP_NEG_RSP``: the server selected ``selected_protocol``."""

    selected_protocol: SecurityProtocol
    flags: NegResponseFlags = _NO_RESPONSE_FLAGS

    def __post_init__(self) -> None:
        selected = SecurityProtocol(_check_uint(self.selected_protocol, 32, "selectedProtocol"))
        protocol_name(selected)  # exactly one known protocol
        object.__setattr__(self, "selected_protocol", selected)
        object.__setattr__(self, "flags", NegResponseFlags(_check_uint(self.flags, 8, "RDP_NEG_RSP flags")))

    @property
    def protocol_name(self) -> str:
        return protocol_name(self.selected_protocol)


@dataclass(frozen=True, slots=True)
class NegotiationFailure:
    """``RDP_NEG_FAILURE``: the server refused every requested protocol."""

    failure_code: NegFailureCode

    def __post_init__(self) -> None:
        object.__setattr__(self, "failure_code", _failure_code(int(self.failure_code)))


@dataclass(frozen=True, slots=True)
class StandardRdpConfirm:
    """A Connection Confirm without negotiation data: the server only speaks standard RDP security."""


#: What a Connection Confirm carries.
ConnectionConfirm = NegotiationResponse | NegotiationFailure | StandardRdpConfirm


def _failure_code(code: int) -> NegFailureCode:
    try:
        return NegFailureCode(code)
    except ValueError:
        raise ProtocolError(f"unknown RDP_NEG_FAILURE failureCode 0x{code:08x}") from None


def encode_negotiation_request(request: NegotiationRequest) -> bytes:
    data = _NEG_HEADER.pack(
        NegType.TYPE_RDP_NEG_REQ, request.flags, NEG_STRUCTURE_LENGTH, request.requested_protocols
    )
    if request.correlation_id is not None:
        header = _CORRELATION_HEADER.pack(NegType.TYPE_RDP_CORRELATION_INFO, 0, CORRELATION_INFO_LENGTH)
        data += header + request.correlation_id + bytes(16)
    return data


def _unpack_neg_structure(data: bytes, where: str) -> tuple[int, int, int]:
    if len(data) < NEG_STRUCTURE_LENGTH:
        raise ProtocolError(f"truncated {where}: {len(data)} of {NEG_STRUCTURE_LENGTH} bytes")
    neg_type, flags, length, value = _NEG_HEADER.unpack_from(data)
    if length != NEG_STRUCTURE_LENGTH:
        raise ProtocolError(f"{where} length field is {length}, expected {NEG_STRUCTURE_LENGTH}")
    return neg_type, flags, value


def decode_negotiation_request(data: bytes) -> NegotiationRequest:
    """Decode ``RDP_NEG_REQ`` (+ correlation info); ``data`` must hold exactly that."""
    neg_type, flags, protocols = _unpack_neg_structure(data, "RDP_NEG_REQ")
    if neg_type != NegType.TYPE_RDP_NEG_REQ:
        raise ProtocolError(f"expected RDP_NEG_REQ (type 0x01), got type 0x{neg_type:02x}")
    correlation_id = None
    if flags & NegRequestFlags.CORRELATION_INFO_PRESENT:
        info = data[NEG_STRUCTURE_LENGTH:]
        if len(info) != CORRELATION_INFO_LENGTH:
            raise ProtocolError(
                f"RDP_NEG_CORRELATION_INFO must be {CORRELATION_INFO_LENGTH} bytes, got {len(info)}"
            )
        info_type, _info_flags, info_length = _CORRELATION_HEADER.unpack_from(info)
        if info_type != NegType.TYPE_RDP_CORRELATION_INFO or info_length != CORRELATION_INFO_LENGTH:
            raise ProtocolError(
                f"bad RDP_NEG_CORRELATION_INFO header (type 0x{info_type:02x}, length {info_length})"
            )
        correlation_id = info[4 : 4 + CORRELATION_ID_LENGTH]
    elif len(data) != NEG_STRUCTURE_LENGTH:
        raise ProtocolError(f"{len(data) - NEG_STRUCTURE_LENGTH} unexpected bytes after RDP_NEG_REQ")
    return NegotiationRequest(SecurityProtocol(protocols), NegRequestFlags(flags), correlation_id)


def encode_negotiation_result(result: NegotiationResponse | NegotiationFailure) -> bytes:
    if isinstance(result, NegotiationResponse):
        return _NEG_HEADER.pack(
            NegType.TYPE_RDP_NEG_RSP, result.flags, NEG_STRUCTURE_LENGTH, result.selected_protocol
        )
    return _NEG_HEADER.pack(NegType.TYPE_RDP_NEG_FAILURE, 0, NEG_STRUCTURE_LENGTH, result.failure_code)


def decode_negotiation_result(data: bytes) -> NegotiationResponse | NegotiationFailure:
    """Decode the ``RDP_NEG_RSP`` or ``RDP_NEG_FAILURE`` of a confirm; exactly 8 bytes."""
    neg_type, flags, value = _unpack_neg_structure(data, "negotiation response")
    if len(data) != NEG_STRUCTURE_LENGTH:
        raise ProtocolError(f"{len(data) - NEG_STRUCTURE_LENGTH} unexpected bytes after the negotiation data")
    if neg_type == NegType.TYPE_RDP_NEG_RSP:
        return NegotiationResponse(SecurityProtocol(value), NegResponseFlags(flags))
    if neg_type == NegType.TYPE_RDP_NEG_FAILURE:
        return NegotiationFailure(_failure_code(value))
    raise ProtocolError(f"unknown negotiation type 0x{neg_type:02x} in a Connection Confirm")
