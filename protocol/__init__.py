"""RDP wire protocol: TPKT, X.224 connection request/confirm, negotiation, probe, .rdp files.

Written from MS-RDPBCGR (2.2.1.1 / 2.2.1.2) and RFC 1006. Encoders and decoders are pure
functions over whole TPKT packets; every malformed input raises :class:`ProtocolError`.
The probe is imported from its module (``from protocol.probe import probe``) so that
``python -m protocol.probe`` runs it without the package having imported it first.

- :mod:`protocol.tpkt` - TPKT framing
- :mod:`protocol.negotiation` - ``RDP_NEG_REQ`` / ``RDP_NEG_RSP`` / ``RDP_NEG_FAILURE`` and their enums
- :mod:`protocol.x224` - Connection Request / Connection Confirm TPDUs (cookie, routing token)
- :mod:`protocol.probe` - :func:`probe` / :func:`probe_many` (``python -m protocol.probe HOST PORT``)
- :mod:`protocol.x509` - subject and expiry of a DER certificate, without extra dependencies
- :mod:`protocol.rdpfile` - :func:`render_rdp_file`
"""

from protocol.errors import ProtocolError
from protocol.negotiation import (
    DEFAULT_REQUESTED_PROTOCOLS,
    ConnectionConfirm,
    NegFailureCode,
    NegotiationFailure,
    NegotiationRequest,
    NegotiationResponse,
    NegRequestFlags,
    NegResponseFlags,
    SecurityProtocol,
    StandardRdpConfirm,
)
from protocol.rdpfile import AudioMode, AuthenticationLevel, render_rdp_file
from protocol.x224 import (
    ConnectionRequest,
    decode_connection_confirm,
    decode_connection_request,
    encode_connection_confirm,
    encode_connection_request,
)

__all__ = [
    "DEFAULT_REQUESTED_PROTOCOLS",
    "AudioMode",
    "AuthenticationLevel",
    "ConnectionConfirm",
    "ConnectionRequest",
    "NegFailureCode",
    "NegRequestFlags",
    "NegResponseFlags",
    "NegotiationFailure",
    "NegotiationRequest",
    "NegotiationResponse",
    "ProtocolError",
    "SecurityProtocol",
    "StandardRdpConfirm",
    "decode_connection_confirm",
    "decode_connection_request",
    "encode_connection_confirm",
    "encode_connection_request",
    "render_rdp_file",
]
