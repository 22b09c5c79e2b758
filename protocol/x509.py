"""The subject and validity of an X.509 certificate, read with ``cryptography``.

The probe reads a server's certificate without verifying it: it needs the SHA-256 of the DER
(:mod:`hashlib`), the subject (RFC 4514 text, as ``openssl x509 -nameopt RFC2253`` prints it)
and the validity. Certificate parsing is security-sensitive, so it is left to the maintained
``cryptography`` package; whatever it cannot read raises :class:`ProtocolError`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from protocol.errors import ProtocolError


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    subject: str
    not_before: datetime
    not_after: datetime


def parse_certificate(der: bytes) -> CertificateInfo:
    """Subject and validity (UTC) of a DER certificate. Raises :class:`ProtocolError` if malformed."""
    try:
        with warnings.catch_warnings():
            # A certificate with quirks RFC 5280 forbids (a non-positive serial number, a country
            # code of the wrong length) is still read, as OpenSSL does: the probe reports what the
            # host presents, and cryptography's warnings about it are not the probe's business.
            warnings.simplefilter("ignore")
            certificate = x509.load_der_x509_certificate(der)
            return CertificateInfo(
                subject=certificate.subject.rfc4514_string(),
                not_before=certificate.not_valid_before_utc,
                not_after=certificate.not_valid_after_utc,
            )
    except (ValueError, x509.InvalidVersion) as exc:  # cryptography's parse errors
        raise ProtocolError(f"malformed certificate: {exc}") from exc
