"""The minimal DER reader: subject and validity of certificates made by the openssl CLI."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from protocol.errors import ProtocolError
from protocol.x509 import _decode_time, parse_certificate


def test_subject_and_not_after_match_openssl(self_signed: Any) -> None:
    info = parse_certificate(self_signed.der)
    assert info.subject == "CN=test"
    assert info.not_after == self_signed.not_after
    assert info.not_before < info.not_after


def test_rfc4514_order_and_escaping(make_cert: Callable[[str, int], Any]) -> None:
    # Same text as `openssl x509 -noout -subject -nameopt RFC2253` prints.
    cert = make_cert("/C=DE/O=Lucid, Inc./OU=#ops/CN=rdp-01.example", 2)
    assert parse_certificate(cert.der).subject == "CN=rdp-01.example,OU=\\#ops,O=Lucid\\, Inc.,C=DE"


def test_generalized_time_after_2049(make_cert: Callable[[str, int], Any]) -> None:
    cert = make_cert("/CN=far", 40000)
    info = parse_certificate(cert.der)
    assert info.not_after == cert.not_after
    assert info.not_after.year > 2100


def test_utc_time_century_pivot() -> None:
    assert _decode_time(0x17, b"491231235959Z") == datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert _decode_time(0x17, b"500101000000Z") == datetime(1950, 1, 1, tzinfo=UTC)
    with pytest.raises(ProtocolError, match="malformed certificate time"):
        _decode_time(0x17, b"501301000000Z")
    with pytest.raises(ProtocolError, match="unsupported certificate time"):
        _decode_time(0x17, b"5001010000Z")


def test_trailing_bytes_and_wrong_outer_tag() -> None:
    with pytest.raises(ProtocolError, match="bytes after the certificate"):
        parse_certificate(b"\x30\x00\x00")
    with pytest.raises(ProtocolError, match="expected Certificate"):
        parse_certificate(b"\x31\x00")


def test_random_and_mutated_der_raise_only_protocol_error(self_signed: Any) -> None:
    rng = random.Random(1126)
    der: bytes = self_signed.der
    candidates = [bytes(rng.randrange(256) for _ in range(rng.randrange(0, 64))) for _ in range(500)]
    candidates += [der[:cut] for cut in range(0, len(der), 7)]
    for _ in range(3000):
        mutated = bytearray(der[:400])  # the TBSCertificate head: tags, lengths, names, times
        mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        candidates.append(bytes(mutated) + der[400:])
    for data in candidates:
        with contextlib.suppress(ProtocolError):
            parse_certificate(data)
