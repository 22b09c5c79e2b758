"""Certificate subject and validity (cryptography), on certificates made by the openssl CLI."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from typing import Any

import pytest

from protocol.errors import ProtocolError
from protocol.x509 import parse_certificate


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


def test_trailing_bytes_and_wrong_outer_tag() -> None:
    with pytest.raises(ProtocolError, match="malformed certificate"):
        parse_certificate(b"\x30\x00\x00")
    with pytest.raises(ProtocolError, match="malformed certificate"):
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
