"""Just enough DER to read the subject and validity of an X.509 certificate (RFC 5280 4.1).

The probe reads a server's certificate without verifying it; it needs the SHA-256 of the DER
(done by :mod:`hashlib`), the subject and the expiry. The ``cryptography`` package is not a
dependency of this project, and the standard library only decodes certificates it has
verified (or through a private helper), so this is a small, strict DER walker: every length is
checked against its container, and any malformed input raises :class:`ProtocolError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from protocol.errors import ProtocolError

_SEQUENCE: Final = 0x30
_SET: Final = 0x31
_INTEGER: Final = 0x02
_OID: Final = 0x06
_UTC_TIME: Final = 0x17
_GENERALIZED_TIME: Final = 0x18
_EXPLICIT_VERSION: Final = 0xA0  # [0] EXPLICIT Version
_STRING_TAGS: Final = {
    0x0C: "utf-8",  # UTF8String
    0x13: "ascii",  # PrintableString
    0x16: "ascii",  # IA5String
    0x14: "latin-1",  # TeletexString (T.61; Latin-1 is the usual reading)
    0x1E: "utf-16-be",  # BMPString
    0x1C: "utf-32-be",  # UniversalString
}
#: RFC 4514 short names (plus the ones OpenSSL prints) for the usual attribute types.
_ATTRIBUTE_NAMES: Final = {
    "2.5.4.3": "CN",
    "2.5.4.5": "serialNumber",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.9": "STREET",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "0.9.2342.19200300.100.1.1": "UID",
    "0.9.2342.19200300.100.1.25": "DC",
    "1.2.840.113549.1.9.1": "emailAddress",
}
_RFC4514_SPECIAL: Final = frozenset(',+"\\<>;')


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    subject: str
    not_before: datetime
    not_after: datetime


def _read_tlv(data: bytes, offset: int, end: int) -> tuple[int, int, int]:
    """Read the tag and length at ``offset``; return (tag, content start, content end)."""
    if offset + 2 > end:
        raise ProtocolError("truncated DER element")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise ProtocolError("multi-byte DER tags are not used in certificates")
    first = data[offset + 1]
    position = offset + 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4:
            raise ProtocolError(f"unsupported DER length form 0x{first:02x}")
        if position + count > end:
            raise ProtocolError("truncated DER length")
        length = int.from_bytes(data[position : position + count], "big")
        position += count
    if position + length > end:
        raise ProtocolError(f"DER element of {length} bytes overruns its container")
    return tag, position, position + length


def _expect(data: bytes, offset: int, end: int, tag: int, what: str) -> tuple[int, int]:
    found, start, stop = _read_tlv(data, offset, end)
    if found != tag:
        raise ProtocolError(f"expected {what} (tag 0x{tag:02x}), found tag 0x{found:02x}")
    return start, stop


def _decode_oid(content: bytes) -> str:
    if not content or content[-1] & 0x80:
        raise ProtocolError("malformed OBJECT IDENTIFIER")
    arcs: list[int] = []
    value = 0
    for byte in content:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = arcs[0]
    head = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    return ".".join(str(arc) for arc in head + arcs[1:])


def _decode_time(tag: int, content: bytes) -> datetime:
    try:
        text = content.decode("ascii")
        if tag == _UTC_TIME and len(text) == 13 and text.endswith("Z"):
            parsed = datetime.strptime(text, "%y%m%d%H%M%SZ")
            # RFC 5280 4.1.2.5.1: YY >= 50 is 19YY; strptime's pivot is 69, so fix it here.
            year = 1900 + parsed.year % 100 if parsed.year % 100 >= 50 else 2000 + parsed.year % 100
            return parsed.replace(year=year, tzinfo=UTC)
        if tag == _GENERALIZED_TIME and len(text) == 15 and text.endswith("Z"):
            return datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=UTC)
    except ValueError as exc:  # UnicodeDecodeError is a ValueError too
        raise ProtocolError(f"malformed certificate time {content!r}") from exc
    raise ProtocolError(f"unsupported certificate time (tag 0x{tag:02x}) {content!r}")


def _escape_char(char: str) -> str:
    if char in _RFC4514_SPECIAL:
        return "\\" + char
    if ord(char) < 0x20 or ord(char) == 0x7F:  # control characters as hex pairs (RFC 4514 2.4)
        return f"\\{ord(char):02x}"
    return char


def _escape(value: str) -> str:
    escaped = [_escape_char(char) for char in value]
    if escaped and escaped[0] in ("#", " "):
        escaped[0] = "\\" + escaped[0]
    if escaped and escaped[-1] == " ":
        escaped[-1] = "\\ "
    return "".join(escaped)


def _decode_name(data: bytes, start: int, end: int) -> str:
    """An RDNSequence as an RFC 4514 string (most specific RDN first, like OpenSSL's -nameopt RFC2253)."""
    rdns: list[str] = []
    offset = start
    while offset < end:
        set_start, set_end = _expect(data, offset, end, _SET, "RelativeDistinguishedName SET")
        attributes: list[str] = []
        inner = set_start
        while inner < set_end:
            seq_start, seq_end = _expect(data, inner, set_end, _SEQUENCE, "AttributeTypeAndValue")
            oid_start, oid_end = _expect(data, seq_start, seq_end, _OID, "attribute type")
            oid = _decode_oid(data[oid_start:oid_end])
            value_tag, value_start, value_end = _read_tlv(data, oid_end, seq_end)
            raw = data[value_start:value_end]
            encoding = _STRING_TAGS.get(value_tag)
            if encoding is None:
                value = "#" + data[oid_end:value_end].hex()
            else:
                try:
                    value = _escape(raw.decode(encoding))
                except UnicodeDecodeError as exc:
                    raise ProtocolError(f"attribute {oid} is not valid {encoding}") from exc
            attributes.append(f"{_ATTRIBUTE_NAMES.get(oid, oid)}={value}")
            inner = value_end
        rdns.append("+".join(attributes))
        offset = set_end
    return ",".join(reversed(rdns))


def parse_certificate(der: bytes) -> CertificateInfo:
    """Subject and validity of a DER certificate. Raises :class:`ProtocolError` if malformed."""
    cert_start, cert_end = _expect(der, 0, len(der), _SEQUENCE, "Certificate")
    if cert_end != len(der):
        raise ProtocolError(f"{len(der) - cert_end} bytes after the certificate")
    tbs_start, tbs_end = _expect(der, cert_start, cert_end, _SEQUENCE, "TBSCertificate")
    tag, _, offset = _read_tlv(der, tbs_start, tbs_end)
    if tag == _EXPLICIT_VERSION:
        tag, _, offset = _read_tlv(der, offset, tbs_end)
    if tag != _INTEGER:
        raise ProtocolError(f"expected serialNumber INTEGER, found tag 0x{tag:02x}")
    _, offset = _expect(der, offset, tbs_end, _SEQUENCE, "signature AlgorithmIdentifier")
    _, offset = _expect(der, offset, tbs_end, _SEQUENCE, "issuer Name")
    validity_start, validity_end = _expect(der, offset, tbs_end, _SEQUENCE, "Validity")
    times: list[datetime] = []
    position = validity_start
    for _ in range(2):
        time_tag, time_start, position = _read_tlv(der, position, validity_end)
        times.append(_decode_time(time_tag, der[time_start:position]))
    subject_start, subject_end = _expect(der, validity_end, tbs_end, _SEQUENCE, "subject Name")
    return CertificateInfo(
        subject=_decode_name(der, subject_start, subject_end), not_before=times[0], not_after=times[1]
    )
