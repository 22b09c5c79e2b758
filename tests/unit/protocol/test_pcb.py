"""The RDP Pre-Connection PDU (MS-RDPEPS 2.2.1.1 / 2.2.1.2)."""

from __future__ import annotations

import contextlib
import random

import pytest

from protocol.errors import ProtocolError
from protocol.pcb import (
    MAX_PCB_LENGTH,
    PRECONNECTION_PDU_V1,
    PRECONNECTION_PDU_V2,
    PreconnectionPdu,
    decode_preconnection_pdu,
    encode_preconnection_pdu,
)

# MS-RDPEPS has no byte example of these PDUs; the next two are built by hand from the tables of
# 2.2.1.1 / 2.2.1.2 and 3.1.5.2 (cbSize = 18 + 2 * cchPCB, cchPCB counting one null terminator).
# V1: cbSize 16, Flags 0, Version 1, Id 42.
HAND_V1 = bytes.fromhex("1000000000000000010000002a000000")
# V2: cbSize 26, Flags 0, Version 2, Id 0, cchPCB 4, "ABC\0" in UTF-16LE.
HAND_V2_ABC = bytes.fromhex("1a00000000000000020000000000000004004100420043000000")
# Captured from Debian's xfreerdp 2.11.7 on loopback. FreeRDP 2.x counts the terminator twice
# (ConvertToUnicode already includes it, then "cchPCB += 1"), so it sends cchPCB = strlen + 2.
# `xfreerdp /pcb:ABC`: cbSize 28, Version 2, Id 0, cchPCB 5, "ABC\0\0".
FREERDP_PCB_ABC = bytes.fromhex("1c000000000000000200000000000000050041004200430000000000")
# `xfreerdp /pcid:7` (no blob): FreeRDP always sends V2, here with cchPCB 0 and no wszPCB.
FREERDP_PCID_7 = bytes.fromhex("120000000000000002000000070000000000")
# `xfreerdp /pcb:é€😀`: 4 UTF-16 code units (a surrogate pair for the emoji), cchPCB 6.
FREERDP_PCB_UNICODE = bytes.fromhex("1e0000000000000002000000000000000600e900ac203dd800de00000000")


def _v2(cch: int, units: bytes, *, size: int | None = None, flags: int = 0, version: int = 2) -> bytes:
    size = 18 + len(units) if size is None else size
    return (
        size.to_bytes(4, "little")
        + flags.to_bytes(4, "little")
        + version.to_bytes(4, "little")
        + bytes(4)
        + cch.to_bytes(2, "little")
        + units
    )


def test_hand_built_v1() -> None:
    assert decode_preconnection_pdu(HAND_V1) == PreconnectionPdu(id=42)
    assert encode_preconnection_pdu(PreconnectionPdu(id=42)) == HAND_V1
    assert PreconnectionPdu(id=42).version == PRECONNECTION_PDU_V1


def test_hand_built_v2_encodes_byte_for_byte() -> None:
    pdu = PreconnectionPdu(blob="ABC")
    assert pdu.version == PRECONNECTION_PDU_V2
    assert encode_preconnection_pdu(pdu) == HAND_V2_ABC
    assert decode_preconnection_pdu(HAND_V2_ABC) == pdu


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (FREERDP_PCB_ABC, PreconnectionPdu(id=0, blob="ABC")),
        (FREERDP_PCID_7, PreconnectionPdu(id=7, blob="")),
        (FREERDP_PCB_UNICODE, PreconnectionPdu(id=0, blob="é€😀")),
        (_v2(3, "ABC".encode("utf-16-le")), PreconnectionPdu(blob="ABC")),  # no terminator at all
        (_v2(1, b"\x00\x00"), PreconnectionPdu(blob="")),
    ],
    ids=["freerdp-pcb", "freerdp-pcid", "freerdp-unicode", "no-terminator", "only-terminator"],
)
def test_real_client_layouts_decode(data: bytes, expected: PreconnectionPdu) -> None:
    assert decode_preconnection_pdu(data) == expected


@pytest.mark.parametrize(
    "pdu",
    [
        PreconnectionPdu(),
        PreconnectionPdu(id=0xFFFFFFFF),
        PreconnectionPdu(blob=""),
        PreconnectionPdu(id=1, blob="f3d5b1c2-6c1e-4a8e-9b7e-0d6f0f4f7d2a"),
        PreconnectionPdu(blob="ünï€ødé 😀 \u2028"),
        PreconnectionPdu(blob="x" * ((MAX_PCB_LENGTH - 18) // 2 - 1)),
    ],
    ids=repr,
)
def test_round_trip(pdu: PreconnectionPdu) -> None:
    data = encode_preconnection_pdu(pdu)
    assert int.from_bytes(data[:4], "little") == len(data) <= MAX_PCB_LENGTH
    assert decode_preconnection_pdu(data) == pdu


def test_size_bound_on_encode_and_decode() -> None:
    biggest = PreconnectionPdu(blob="x" * ((MAX_PCB_LENGTH - 18) // 2 - 1))
    assert len(encode_preconnection_pdu(biggest)) == MAX_PCB_LENGTH
    with pytest.raises(ProtocolError, match="exceeds the accepted maximum of 4096"):
        encode_preconnection_pdu(PreconnectionPdu(blob="x" * ((MAX_PCB_LENGTH - 18) // 2)))
    data = encode_preconnection_pdu(PreconnectionPdu(blob="x" * 100))
    with pytest.raises(ProtocolError, match="cbSize 220 exceeds the accepted maximum of 64"):
        decode_preconnection_pdu(data, max_length=64)
    with pytest.raises(ProtocolError, match="exceeds the accepted maximum of 64"):
        encode_preconnection_pdu(PreconnectionPdu(blob="x" * 100), max_length=64)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "truncated pre-connection PDU: 0 of at least 16"),
        (HAND_V1[:15], "truncated pre-connection PDU: 15"),
        (bytes.fromhex("0f000000000000000100000000000000"), "cbSize 15 is neither 16"),
        (bytes.fromhex("00000000000000000100000000000000"), "cbSize 0 is neither 16"),
        (bytes.fromhex("1100000000000000020000000000000000"), "cbSize 17 is neither 16"),
        (HAND_V1 + b"\x00", "cbSize 16 disagrees with its 17 bytes"),
        (HAND_V2_ABC[:-1], "cbSize 26 disagrees with its 25 bytes"),
        (b"\x00\x10\x00\x00" + bytes(0x1000 - 5), "cbSize 4096 disagrees with its 4095 bytes"),
        (b"\x01\x10\x00\x00" + bytes(0x1001 - 4), "cbSize 4097 exceeds the accepted maximum of 4096"),
        (b"\xff\xff\xff\xff" + bytes(12), "exceeds the accepted maximum"),
        (bytes.fromhex("10000000010000000100000000000000"), "Flags must be 0, got 0x00000001"),
        (bytes.fromhex("10000000000000000200000000000000"), "of 16 bytes must have Version 1, got 2$"),
        (bytes.fromhex("10000000000000000300000000000000"), r"Version 1, got 3 \(unknown version\)"),
        (_v2(0, b"", version=1), "of 18 bytes must have Version 2, got 1$"),
        (_v2(0, b"", version=0), r"Version 2, got 0 \(unknown"),
        (_v2(4, b"A\x00\x00\x00"), "cchPCB 4 needs cbSize 26, got 22"),
        (_v2(1, b"A\x00\x00\x00"), "cchPCB 1 needs cbSize 20, got 22"),
        (_v2(0xFFFF, b"A\x00"), "cchPCB 65535 needs cbSize 131088, got 20"),
        (_v2(1, b"\x00\xd8"), "not valid UTF-16LE"),  # a lone high surrogate
        (_v2(1, b"\x00\xdc"), "not valid UTF-16LE"),  # a lone low surrogate
        (_v2(3, "A\x00B".encode("utf-16-le")), "NUL before the end"),
        (_v2(3, "\x00AB".encode("utf-16-le")), "NUL before the end"),
    ],
)
def test_malformed_pdus(data: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        decode_preconnection_pdu(data)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: PreconnectionPdu(id=-1), "does not fit 32 bits"),
        (lambda: PreconnectionPdu(id=1 << 32), "does not fit 32 bits"),
        (lambda: PreconnectionPdu(blob="a\x00b"), "must not contain NUL"),
        (lambda: PreconnectionPdu(blob="trailing\x00"), "must not contain NUL"),
        (lambda: PreconnectionPdu(blob="\ud800"), "lone surrogate"),
    ],
)
def test_invalid_values_are_refused_on_construction(make: object, message: str) -> None:
    assert callable(make)
    with pytest.raises(ProtocolError, match=message):
        make()


def _decode(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        pdu = decode_preconnection_pdu(data)
        # Whatever decodes re-encodes to something that decodes the same.
        assert decode_preconnection_pdu(encode_preconnection_pdu(pdu)) == pdu


def test_random_bytes_raise_only_protocol_error() -> None:
    rng = random.Random(20250110)
    for _ in range(4000):
        size = rng.choice((0, 4, 15, 16, 17, 18, 20, 26, rng.randrange(0, 200)))
        data = bytearray(rng.randrange(256) for _ in range(size))
        if size >= 16 and rng.random() < 0.8:  # plausible fixed part
            cb = size if rng.random() < 0.8 else rng.randrange(0, 300)
            data[0:16] = _v2(0, b"", size=cb, version=rng.choice((1, 2, 2, 3)))[:16]
            if size >= 18 and rng.random() < 0.7:
                data[16:18] = ((size - 18) // 2 + rng.choice((0, 0, 0, -1, 1))).to_bytes(
                    2, "little", signed=True
                )
        _decode(bytes(data))


def test_truncations_and_byte_flips_of_valid_pdus_raise_only_protocol_error() -> None:
    rng = random.Random(11)
    for sample in (HAND_V1, HAND_V2_ABC, FREERDP_PCB_ABC, FREERDP_PCID_7, FREERDP_PCB_UNICODE):
        for cut in range(len(sample)):
            with pytest.raises(ProtocolError):
                decode_preconnection_pdu(sample[:cut])
        for index in range(len(sample)):
            for _ in range(24):
                mutated = bytearray(sample)
                mutated[index] = rng.randrange(256)
                _decode(bytes(mutated))
