"""Fixtures of the protocol unit tests: a throw-away self-signed certificate made by the openssl CLI."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest


@dataclass(frozen=True)
class SelfSignedCert:
    cert_path: Path
    key_path: Path
    der: bytes
    not_after: datetime


def make_self_signed(directory: Path, subject: str, days: int) -> SelfSignedCert:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl CLI is needed to generate a test certificate")
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            subject,
            "-days",
            str(days),
            "-keyout",
            str(key_path),
            "-out",
            str(cert_path),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    end = subprocess.run(
        [openssl, "x509", "-in", str(cert_path), "-noout", "-enddate"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()
    # "notAfter=Nov 28 03:57:02 2026 GMT"
    not_after = datetime.strptime(" ".join(end.split("=", 1)[1].split()), "%b %d %H:%M:%S %Y GMT")
    der = ssl.PEM_cert_to_DER_cert(cert_path.read_text())
    return SelfSignedCert(cert_path, key_path, der, not_after.replace(tzinfo=UTC))


@pytest.fixture(scope="session")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> SelfSignedCert:
    """``/CN=test``, valid for 2 days (UTCTime)."""
    return make_self_signed(tmp_path_factory.mktemp("cert"), "/CN=test", 2)


@pytest.fixture(scope="session")
def make_cert(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, int], SelfSignedCert]:
    """Make another certificate: ``make_cert("/CN=x/O=y", days)``."""

    def make(subject: str, days: int) -> SelfSignedCert:
        return make_self_signed(tmp_path_factory.mktemp("cert"), subject, days)

    return make
