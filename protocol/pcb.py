"""The RDP Pre-Connection PDU (MS-RDPEPS 2.2.1.1, 2.2.1.2), sent before the X.224 Connection Request.

A client configured with a pre-connection id or blob (``.rdp`` ``pcb:s:`` / ``pcbid:i:``,
FreeRDP ``/pcb:`` / ``/pcid:``) opens the TCP connection with one of these PDUs; a broker or
gateway reads it to pick the target and does not pass it on. All fields are little-endian::

    cbSize (u32) | Flags (u32, 0) | Version (u32) | Id (u32)          RDP_PRECONNECTION_PDU_V1, 16 bytes
    ... V1 ... | cchPCB (u16) | wszPCB (cchPCB UTF-16LE code units)  RDP_PRECONNECTION_PDU_V2

``cbSize`` is the size of the whole PDU; it is 16 for V1 and ``18 + 2 * cchPCB`` for V2
(MS-RDPEPS 3.1.5.2; ``cchPCB`` 0 means no ``wszPCB``). ``wszPCB`` is null-terminated and
``cchPCB`` counts the terminator. Real clients differ on the terminator: FreeRDP 2.11
(``nego_send_preconnection_pdu``) sends *two* (``cchPCB = strlen + 2``, captured from
``xfreerdp /pcb:ABC``), FreeRDP 3 and IronRDP one, and ``/pcid:`` alone gives ``cchPCB`` 0.
The decoder therefore accepts any number of trailing NUL code units (including none) as long
as ``cbSize`` agrees with ``cchPCB``; a NUL before other text is refused.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from protocol.errors import ProtocolError

PRECONNECTION_PDU_V1: Final = 1
PRECONNECTION_PDU_V2: Final = 2
#: cbSize of a V1 PDU and the fixed part every PDU starts with (MS-RDPEPS 2.2.1.1).
PCB_V1_LENGTH: Final = 16
#: cbSize of a V2 PDU with ``cchPCB`` 0 (MS-RDPEPS 3.1.5.2).
PCB_V2_MIN_LENGTH: Final = PCB_V1_LENGTH + 2
#: The largest cbSize accepted (a one-time token needs a few dozen characters). Keep it below
#: 0x10000: a PDU can then never start with bytes 03 00, so it cannot be taken for a TPKT.
MAX_PCB_LENGTH: Final = 4096
_HEADER: Final = struct.Struct("<IIII")  # cbSize, Flags, Version, Id
_CCH: Final = struct.Struct("<H")
_NUL: Final = "\x00"


@dataclass(frozen=True, slots=True)
class PreconnectionPdu:
    """``RDP_PRECONNECTION_PDU_V1`` (``blob=None``) or ``RDP_PRECONNECTION_PDU_V2`` (``blob`` a string).

    ``blob`` is the ``wszPCB`` text without its null terminator; it must not contain NUL and
    must be encodable as UTF-16 (no lone surrogates). ``""`` is a V2 PDU with an empty string.
    """

    id: int = 0
    blob: str | None = None

    def __post_init__(self) -> None:
        if not 0 <= int(self.id) <= 0xFFFFFFFF:
            raise ProtocolError(f"pre-connection Id {self.id} does not fit 32 bits")
        object.__setattr__(self, "id", int(self.id))
        if self.blob is not None:
            if _NUL in self.blob:
                raise ProtocolError("pre-connection blob must not contain NUL characters")
            try:
                self.blob.encode("utf-16-le")
            except UnicodeEncodeError:
                raise ProtocolError("pre-connection blob is not valid Unicode (lone surrogate)") from None

    @property
    def version(self) -> int:
        """:data:`PRECONNECTION_PDU_V1` or :data:`PRECONNECTION_PDU_V2`."""
        return PRECONNECTION_PDU_V1 if self.blob is None else PRECONNECTION_PDU_V2


def encode_preconnection_pdu(pdu: PreconnectionPdu, *, max_length: int = MAX_PCB_LENGTH) -> bytes:
    """The bytes of ``pdu``; a V2 string is written with one null terminator (MS-RDPEPS 3.1.5.2)."""
    if pdu.blob is None:
        return _HEADER.pack(PCB_V1_LENGTH, 0, PRECONNECTION_PDU_V1, pdu.id)
    text = (pdu.blob + _NUL).encode("utf-16-le")
    size = PCB_V2_MIN_LENGTH + len(text)
    if size > max_length:
        raise ProtocolError(
            f"pre-connection PDU of {size} bytes exceeds the accepted maximum of {max_length};"
            " shorten the blob"
        )
    return _HEADER.pack(size, 0, PRECONNECTION_PDU_V2, pdu.id) + _CCH.pack(len(text) // 2) + text


def decode_preconnection_pdu(data: bytes, *, max_length: int = MAX_PCB_LENGTH) -> PreconnectionPdu:
    """Parse one whole Pre-Connection PDU; ``data`` must hold exactly ``cbSize`` bytes.

    Checks (MS-RDPEPS 3.2.5.1): ``cbSize`` 16 (V1) or at least 18 (V2), at most ``max_length``
    and equal to ``len(data)``; ``Flags`` 0; ``Version`` matching the size; for V2
    ``cbSize == 18 + 2 * cchPCB`` and ``wszPCB`` valid UTF-16LE with NULs only at its end.
    """
    if len(data) < PCB_V1_LENGTH:
        raise ProtocolError(f"truncated pre-connection PDU: {len(data)} of at least {PCB_V1_LENGTH} bytes")
    size, flags, version, pdu_id = _HEADER.unpack_from(data)
    if size < PCB_V1_LENGTH or size == PCB_V1_LENGTH + 1:
        raise ProtocolError(f"pre-connection PDU cbSize {size} is neither 16 (V1) nor at least 18 (V2)")
    if size > max_length:
        raise ProtocolError(f"pre-connection PDU cbSize {size} exceeds the accepted maximum of {max_length}")
    if size != len(data):
        raise ProtocolError(f"pre-connection PDU cbSize {size} disagrees with its {len(data)} bytes")
    if flags != 0:
        raise ProtocolError(f"pre-connection PDU Flags must be 0, got 0x{flags:08x}")
    expected = PRECONNECTION_PDU_V1 if size == PCB_V1_LENGTH else PRECONNECTION_PDU_V2
    if version != expected:
        raise ProtocolError(
            f"pre-connection PDU of {size} bytes must have Version {expected}, got {version}"
            + ("" if version in (PRECONNECTION_PDU_V1, PRECONNECTION_PDU_V2) else " (unknown version)")
        )
    if version == PRECONNECTION_PDU_V1:
        return PreconnectionPdu(id=pdu_id)
    (cch,) = _CCH.unpack_from(data, PCB_V1_LENGTH)
    if size != PCB_V2_MIN_LENGTH + 2 * cch:
        raise ProtocolError(
            f"pre-connection PDU cchPCB {cch} needs cbSize {PCB_V2_MIN_LENGTH + 2 * cch}, got {size}"
        )
    try:
        text = data[PCB_V2_MIN_LENGTH:].decode("utf-16-le")
    except UnicodeDecodeError:
        raise ProtocolError("pre-connection PDU wszPCB is not valid UTF-16LE") from None
    blob = text.rstrip(_NUL)
    if _NUL in blob:
        raise ProtocolError("pre-connection PDU wszPCB has a NUL before the end of its text")
    return PreconnectionPdu(id=pdu_id, blob=blob)
