"""The RDP negotiation structures alone (MS-RDPBCGR 2.2.1.1.1, 2.2.1.2.1, 2.2.1.2.2): what construction
refuses, the protocol names, and their own encoding; inside a Connection Request / Confirm: test_x224.py."""

from __future__ import annotations

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
    decode_negotiation_request,
    decode_negotiation_result,
    encode_negotiation_request,
    encode_negotiation_result,
    parse_protocols,
    protocol_name,
)

# The RDP_NEG_REQ of MS-RDPBCGR 4.1.1 (PROTOCOL_RDP only) and the RDP_NEG_RSP of 4.1.2.
SPEC_NEG_REQ = bytes.fromhex("0100080000000000")
SPEC_NEG_RSP = bytes.fromhex("0200080000000000")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: NegotiationRequest(SecurityProtocol(1 << 32)), "does not fit 32 bits"),
        (lambda: NegotiationRequest(flags=NegRequestFlags(0x100)), "does not fit 8 bits"),
        (
            lambda: NegotiationRequest(flags=NegRequestFlags.CORRELATION_INFO_PRESENT),
            "correlation_id must be set",
        ),
        (lambda: NegotiationRequest(correlation_id=bytes(range(1, 17))), "correlation_id must be set"),
        (
            lambda: NegotiationRequest(
                flags=NegRequestFlags.CORRELATION_INFO_PRESENT, correlation_id=b"short"
            ),
            "must be 16 bytes",
        ),
        (
            lambda: NegotiationRequest(
                flags=NegRequestFlags.CORRELATION_INFO_PRESENT, correlation_id=bytes(16)
            ),
            "must not start with 0x00",
        ),
        (lambda: NegotiationResponse(SecurityProtocol(3)), "not a single known"),
        (lambda: NegotiationFailure(NegFailureCode(1) + 9), "unknown RDP_NEG_FAILURE"),  # type: ignore[arg-type]
    ],
)
def test_invalid_values_are_refused_on_construction(make: object, message: str) -> None:
    assert callable(make)
    with pytest.raises(ProtocolError, match=message):
        make()


def test_protocol_names() -> None:
    assert parse_protocols("ssl, HYBRID") == DEFAULT_REQUESTED_PROTOCOLS
    assert parse_protocols("rdp") == SecurityProtocol.PROTOCOL_RDP
    assert protocol_name(SecurityProtocol.PROTOCOL_HYBRID_EX) == "hybrid_ex"
    with pytest.raises(ProtocolError, match="unknown security protocol 'tls'"):
        parse_protocols("ssl,tls")
    with pytest.raises(ProtocolError, match="not a single known"):
        protocol_name(DEFAULT_REQUESTED_PROTOCOLS)


def test_spec_structures_decode_and_encode_byte_for_byte() -> None:
    request = NegotiationRequest(SecurityProtocol.PROTOCOL_RDP)
    assert decode_negotiation_request(SPEC_NEG_REQ) == request
    assert encode_negotiation_request(request) == SPEC_NEG_REQ
    response = NegotiationResponse(SecurityProtocol.PROTOCOL_RDP, NegResponseFlags(0))
    assert decode_negotiation_result(SPEC_NEG_RSP) == response
    assert encode_negotiation_result(response) == SPEC_NEG_RSP


@pytest.mark.parametrize(
    "request_",
    [
        NegotiationRequest(),
        NegotiationRequest(SecurityProtocol(0xFFFFFFFF), NegRequestFlags(0xF7)),
        NegotiationRequest(
            SecurityProtocol.PROTOCOL_SSL,
            NegRequestFlags.CORRELATION_INFO_PRESENT,
            correlation_id=bytes(range(0x20, 0x30)),
        ),
    ],
    ids=repr,
)
def test_request_round_trip(request_: NegotiationRequest) -> None:
    encoded = encode_negotiation_request(request_)
    assert len(encoded) == (44 if request_.correlation_id else 8)
    assert decode_negotiation_request(encoded) == request_


@pytest.mark.parametrize(
    "result",
    [
        *(NegotiationResponse(protocol) for protocol in SecurityProtocol),
        *(NegotiationFailure(code) for code in NegFailureCode),
    ],
    ids=repr,
)
def test_result_round_trip(result: NegotiationResponse | NegotiationFailure) -> None:
    assert decode_negotiation_result(encode_negotiation_result(result)) == result
