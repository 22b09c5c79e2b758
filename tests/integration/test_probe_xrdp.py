"""The probe against a real xrdp 0.9 (Debian package) on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from protocol.negotiation import SecurityProtocol
from protocol.probe import probe, probe_many
from tests.support import xrdp_host
from tests.support.xrdp_host import XrdpHost, certificate_sha256, require_xrdp, set_ini_values

pytestmark = pytest.mark.xrdp


@pytest.fixture(scope="module")
def xrdp_negotiate() -> Iterator[XrdpHost]:
    require_xrdp()
    with XrdpHost(security="negotiate") as host:
        yield host


@pytest.fixture(scope="module")
def xrdp_tls_only() -> Iterator[XrdpHost]:
    require_xrdp()
    with XrdpHost(security="tls-only") as host:
        yield host


async def test_probe_reads_the_certificate_xrdp_serves(xrdp_negotiate: XrdpHost) -> None:
    result = await probe("127.0.0.1", xrdp_negotiate.port, timeout=10.0)
    assert result.error is None, xrdp_negotiate.log_tail()
    assert result.reachable is True
    # xrdp 0.9 has no CredSSP: asked for SSL|HYBRID it selects SSL.
    assert result.selected_protocol == "ssl"
    assert result.tls_version is not None and result.tls_version.startswith("TLSv1.")
    assert result.cert_sha256 == xrdp_negotiate.certificate_sha256
    assert result.cert_sha256 == certificate_sha256(xrdp_negotiate.certificate_path)
    assert result.cert_subject is not None and result.cert_subject.startswith("CN=")
    assert result.cert_not_after is not None
    assert result.failure_code is None


async def test_negotiating_xrdp_accepts_standard_rdp_security(xrdp_negotiate: XrdpHost) -> None:
    result = await probe(
        "127.0.0.1", xrdp_negotiate.port, timeout=10.0, requested=SecurityProtocol.PROTOCOL_RDP
    )
    assert (result.reachable, result.selected_protocol, result.error) == (True, "rdp", None)
    assert result.cert_sha256 is None


async def test_xrdp_refuses_an_unsupported_request_flag(xrdp_negotiate: XrdpHost) -> None:
    # Protocol bits above 0x0B make xrdp answer with an MCS Disconnect Provider Ultimatum.
    result = await probe(
        "127.0.0.1", xrdp_negotiate.port, timeout=10.0, requested=SecurityProtocol.PROTOCOL_RDSAAD
    )
    assert result.reachable is False
    assert result.error is not None and "Disconnect Provider Ultimatum" in result.error


async def test_tls_only_xrdp_answers_a_plain_request_with_ssl_required(xrdp_tls_only: XrdpHost) -> None:
    result = await probe(
        "127.0.0.1", xrdp_tls_only.port, timeout=10.0, requested=SecurityProtocol.PROTOCOL_RDP
    )
    assert result.reachable is True
    assert result.failure_code == 1
    assert result.failure_name == "SSL_REQUIRED_BY_SERVER"
    assert result.error is None
    assert result.selected_protocol is None


async def test_tls_only_xrdp_still_serves_tls(xrdp_tls_only: XrdpHost) -> None:
    result = await probe("127.0.0.1", xrdp_tls_only.port, timeout=10.0)
    assert result.ok, result
    assert result.cert_sha256 == xrdp_tls_only.certificate_sha256


async def test_probe_many_against_two_instances(xrdp_negotiate: XrdpHost, xrdp_tls_only: XrdpHost) -> None:
    targets = [("127.0.0.1", xrdp_negotiate.port), ("127.0.0.1", xrdp_tls_only.port)] * 2
    # xrdp's listen backlog is 2: keep the fan-out at it.
    results = await probe_many(targets, concurrency=2, timeout=10.0)
    assert [r.port for r in results] == [port for _, port in targets]
    assert all(r.ok and r.cert_sha256 == xrdp_negotiate.certificate_sha256 for r in results), results


async def test_stopped_xrdp_is_unreachable_and_restart_brings_it_back() -> None:
    require_xrdp()
    with XrdpHost(security="negotiate") as host:
        assert (await probe("127.0.0.1", host.port, timeout=10.0)).ok
        host.stop()
        assert not host.running
        down = await probe("127.0.0.1", host.port, timeout=10.0)
        assert down.reachable is False
        assert down.error is not None and down.error.startswith("connect failed: ")
        host.restart()
        again = await probe("127.0.0.1", host.port, timeout=10.0)
        assert again.ok, host.log_tail()


def test_instances_run_concurrently_on_their_own_ports() -> None:
    require_xrdp()
    with XrdpHost(security="rdp") as first, XrdpHost(security="rdp") as second:
        assert first.port != second.port
        assert first.running and second.running
        assert first.pid != second.pid


def test_set_ini_values_replaces_only_inside_the_section() -> None:
    text = "[Globals]\nport=3389\n#port=1\nfork=true\nport=3390\n[Xorg]\nport=-1\n"
    result = set_ini_values(text, "Globals", {"port": "tcp://127.0.0.1:1", "security_layer": "tls"})
    assert result == (
        "[Globals]\nport=tcp://127.0.0.1:1\n#port=1\nfork=true\nsecurity_layer=tls\n[Xorg]\nport=-1\n"
    )
    assert set_ini_values("[A]\nx=1\n", "Logging", {"LogFile": "f"}) == "[A]\nx=1\n[Logging]\nLogFile=f\n"


def test_require_xrdp_skips_locally_and_fails_on_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(xrdp_host, "find_xrdp", lambda: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="xrdp binary is not installed"):
        xrdp_host.require_xrdp()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        xrdp_host.require_xrdp()
