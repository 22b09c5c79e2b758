"""The dev stack's RDP host decisions, without starting anything: what it says and registers."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from common import devstack, devstack_rdp_host, xrdp


def test_without_xrdp_one_line_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(devstack_rdp_host, "find_xrdp", lambda: None)
    assert devstack_rdp_host.spawn_rdp_host(None) is None
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "devstack: no RDP host: xrdp is not installed (apt-get install xrdp); "
        "add a host with POST /api/v1/servers or RDP_CONTROLLER_SERVERS"
    ]


def test_an_unusable_xrdp_is_not_started_and_says_why(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(devstack_rdp_host, "find_xrdp", lambda: "/usr/sbin/xrdp")
    monkeypatch.setattr(devstack_rdp_host, "unusable_reason", lambda: "xrdp needs root here (...)")
    monkeypatch.setattr(devstack_rdp_host, "DevRdpHost", None)  # would fail if called
    assert devstack_rdp_host.spawn_rdp_host(None) is None
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("devstack: no RDP host: xrdp needs root here") and "POST /api/v1/servers" in line


def test_unusable_reason_names_the_files_another_user_cannot_read(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key, keys = tmp_path / "snakeoil.key", tmp_path / "rsakeys.ini"
    key.write_text("k")
    keys.write_text("k")
    monkeypatch.setattr(xrdp, "SNAKEOIL_KEY", key)
    monkeypatch.setattr(xrdp, "RSA_KEYS", keys)
    monkeypatch.setattr(xrdp.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(xrdp.os, "access", lambda path, mode: Path(path) != keys)
    assert xrdp.unusable_reason() == f"xrdp needs root here (this user cannot read {keys})"
    monkeypatch.setattr(xrdp.os, "geteuid", lambda: 0)
    assert xrdp.unusable_reason() is None


def test_the_host_joins_the_static_servers_of_the_environment() -> None:
    server = {"name": "devstack-xrdp", "address": "127.0.0.1", "port": 4000}
    assert json.loads(devstack_rdp_host.with_static_server({}, server) or "") == [server]
    mine = {"name": "lab", "address": "10.0.0.5", "port": 3389}
    env = {"RDP_CONTROLLER_SERVERS": json.dumps([mine, {**server, "port": 1}])}
    assert json.loads(devstack_rdp_host.with_static_server(env, server) or "") == [mine, server]
    assert devstack_rdp_host.with_static_server({"RDP_CONTROLLER_SERVERS": "not json"}, server) is None
    assert devstack_rdp_host.with_static_server({"RDP_CONTROLLER_SERVERS": '{"a": 1}'}, server) is None


def test_the_port_is_kept_across_runs_while_it_is_free(tmp_path: Path) -> None:
    state = tmp_path / "xrdp-port"
    first = devstack_rdp_host.rdp_host_port(state)
    assert state.read_text().strip() == str(first)
    assert devstack_rdp_host.rdp_host_port(state) == first
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", first))
        taken.listen()
        second = devstack_rdp_host.rdp_host_port(state)
    assert second != first and state.read_text().strip() == str(second)
    assert devstack_rdp_host.rdp_host_port(None) > 0


def test_the_relay_line_names_where_clients_connect() -> None:
    assert devstack._relay_line({}) is None
    assert devstack._relay_line({"RDP_CONTROLLER_RELAY_PORT": "0"}) is None
    env = {
        "RDP_CONTROLLER_RELAY_PORT": "13389",
        "RDP_CONTROLLER_RELAY_BIND": "127.0.0.1",
        "RDP_CONTROLLER_RELAY_PUBLIC_ADDRESS": "127.0.0.1:13389",
    }
    assert devstack._relay_line(env) == (
        "devstack: RDP relay on 127.0.0.1:13389 (in the service); .rdp files name 127.0.0.1:13389"
    )
