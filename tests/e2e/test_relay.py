"""End to end: the RDP relay of a running service, with a real client and a real xrdp.

The service runs as a process (the container's entrypoint) with the relay on a free loopback
port, in front of Debian's xrdp. The client is FreeRDP's ``xfreerdp`` under Xvfb opening the
``.rdp`` file that ``POST .../connect`` returned, as a person would; what no real client sends
comes from a raw socket.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.process import ServiceProcess, entrypoint_argv, free_port, started
from tests.support.rdp_client import Display, FreeRdp, RawClient
from tests.support.service_api import OPERATOR, SERVICE, Api, assert_clean_log, entrypoint_env
from tests.support.xrdp_host import XrdpHost, require_xrdp

pytestmark = pytest.mark.e2e

HEALTH_TIMEOUT = 60.0


@pytest.fixture
def xrdp() -> Iterator[XrdpHost]:
    require_xrdp()  # skips locally, fails with CI=true
    with XrdpHost(security="negotiate") as host:
        yield host


@pytest.fixture
def display() -> Iterator[Display]:
    with Display() as started:
        yield started


def relay_env(port: int, relay_port: int, mongo_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    return entrypoint_env(
        port,
        mongo_url,
        redis_url,
        **{
            "RDP_CONTROLLER_RELAY_PORT": str(relay_port),
            "RDP_CONTROLLER_RELAY_BIND": "127.0.0.1",
            "RDP_CONTROLLER_RELAY_PUBLIC_ADDRESS": f"127.0.0.1:{relay_port}",
            "RDP_CONTROLLER_ACTIVITY_FLUSH_SECONDS": "0.5",
            "LOG_LEVEL": "INFO",
            **extra,
        },
    )


class Relayed:
    """A running service with its relay: HTTP client, relay port, helpers to wait for states."""

    def __init__(self, service: ServiceProcess, relay_port: int, client: httpx.Client) -> None:
        self.service = service
        self.relay_port = relay_port
        self.api = Api(client, service)

    def status(self, session_id: str) -> str:
        return str(self.api.json("GET", f"/api/v1/sessions/{session_id}", 200, SERVICE)["status"])

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> float:
        """Seconds until ``condition`` held; fails with the service log after ``timeout``."""
        started = time.monotonic()
        while not condition():
            if time.monotonic() - started > timeout:
                raise AssertionError(f"{what}: not within {timeout} s\n{self.service.log_tail(40)}")
            time.sleep(0.05)
        return time.monotonic() - started

    def wait_status(self, session_id: str, want: str, timeout: float) -> float:
        return self.wait_for(lambda: self.status(session_id) == want, timeout, f"{session_id} {want}")

    def wait_connected(self, session_id: str, timeout: float) -> float:
        """Until the relay has connected the session: active, or idle once a flush saw no input."""
        return self.wait_for(
            lambda: self.status(session_id) in ("active", "idle"), timeout, f"{session_id} connected"
        )

    def relay_health(self) -> dict[str, Any]:
        health: dict[str, Any] = self.api.json("GET", "/health", 200, {})["components"]["relay"]
        return health

    def metrics(self) -> dict[str, Any]:
        relay: dict[str, Any] = self.api.json("GET", "/api/v1/metrics", 200, OPERATOR)["relay"]
        return relay

    def create(self, user_id: str, **config: Any) -> dict[str, Any]:
        body = {"user_id": user_id, "new_session": True, "session_config": config}
        created: dict[str, Any] = self.api.json("POST", "/api/v1/sessions", 201, SERVICE, json=body)
        return created

    def connect(self, session_id: str) -> dict[str, Any]:
        descriptor: dict[str, Any] = self.api.json(
            "POST", f"/api/v1/sessions/{session_id}/connect", 200, SERVICE
        )
        return descriptor


def relayed_process(tmp_path: Path, name: str, env: dict[str, str]) -> ServiceProcess:
    port = int(env["RDP_CONTROLLER_PORT"])
    return ServiceProcess(entrypoint_argv(), env=env, port=port, log_path=tmp_path / f"{name}.log")


@pytest.fixture
def relayed(tmp_path: Path, mongo_url: str, redis_url: str, xrdp: XrdpHost) -> Iterator[Relayed]:
    servers = [{"name": "xrdp", "address": "127.0.0.1", "port": xrdp.port, "capacity": 4}]
    relay_port = free_port()
    env = relay_env(free_port(), relay_port, mongo_url, redis_url, RDP_CONTROLLER_SERVERS=json.dumps(servers))
    with (
        started(relayed_process(tmp_path, "service", env), health_timeout=HEALTH_TIMEOUT) as service,
        httpx.Client(base_url=service.base_url, timeout=15.0) as client,
    ):
        yield Relayed(service, relay_port, client)


def write_rdp(tmp_path: Path, descriptor: dict[str, Any], name: str) -> Path:
    path = tmp_path / f"{name}.rdp"
    path.write_text(descriptor["rdp_file"], newline="")
    return path


def test_a_real_client_goes_through_the_relay_and_the_session_follows_the_wire(
    relayed: Relayed, xrdp: XrdpHost, display: Display, tmp_path: Path
) -> None:
    session = relayed.create("alice", display_resolution="1024x768")
    session_id = session["session_id"]
    descriptor = relayed.connect(session_id)
    assert descriptor["mode"] == "relay"
    assert (descriptor["address"], descriptor["port"]) == ("127.0.0.1", relayed.relay_port)
    rdp_file = descriptor["rdp_file"]
    assert f"full address:s:127.0.0.1:{relayed.relay_port}\r\n" in rdp_file
    assert f"loadbalanceinfo:s:{descriptor['token']}\r\n" in rdp_file
    assert "redirectprinters:i:0\r\n" in rdp_file and "redirectsmartcards:i:0\r\n" in rdp_file
    assert "username:s:" not in rdp_file  # alice is not an account on the host
    assert relayed.status(session_id) == "ready"  # nothing moves before a client is there

    with FreeRdp(write_rdp(tmp_path, descriptor, "first"), display, tmp_path / "xfreerdp-1.log") as client:
        relayed.wait_connected(session_id, 20)
        # xrdp drew its login screen through the relay: TLS end to end, bytes both ways.
        relayed.wait_for(
            lambda: relayed.metrics()["bytes"]["host_to_client"] > 20_000, 20, "the login screen's bytes"
        )
        shot = tmp_path / "through-relay.png"
        relayed.wait_for(
            lambda: display.colours(display.screenshot(shot)) > 16, 15, "xrdp's login screen shown"
        )
        connections = relayed.api.json("GET", f"/api/v1/connections?session_id={session_id}", 200, OPERATOR)
        (record,) = [c for c in connections["items"] if c["closed_at"] is None]
        assert record["client_address"].startswith("127.0.0.1:") and record["relay"]
        assert record["client_address"] != "127.0.0.1"  # the RDP client's socket, not the API caller's
        assert relayed.relay_health()["connections"] == 1
        assert client.running, client.log()

        # The same token again: refused with an X.224 confirm carrying RDP_NEG_FAILURE.
        with RawClient(relayed.relay_port) as replay:
            replay.hello(descriptor["token"])
            assert replay.refused()

        client.kill()
        seconds = relayed.wait_status(session_id, "suspended", 5)
    assert seconds < 5
    suspended = relayed.api.json("GET", f"/api/v1/sessions/{session_id}", 200, SERVICE)
    assert suspended["disconnect_deadline"] is not None
    closed = relayed.api.json("GET", f"/api/v1/connections?session_id={session_id}", 200, OPERATOR)["items"]
    assert (
        closed[0]["closed_at"] is not None and closed[0]["bytes_out"] > 20_000 and closed[0]["bytes_in"] > 0
    )

    # Reconnect: a new token, the same host, active again once the client is through.
    again = relayed.api.json("POST", f"/api/v1/sessions/{session_id}/reconnect", 200, SERVICE)
    assert again["token"] != descriptor["token"] and again["server_id"] == descriptor["server_id"]
    assert relayed.status(session_id) == "suspended"
    with FreeRdp(write_rdp(tmp_path, again, "again"), display, tmp_path / "xfreerdp-2.log") as client:
        relayed.wait_connected(session_id, 20)
        relayed.wait_for(lambda: relayed.relay_health()["connections"] == 1, 10, "one relayed connection")
        started = time.monotonic()
        ended = relayed.api.json("DELETE", f"/api/v1/sessions/{session_id}", 200, SERVICE)
        assert ended["status"] == "terminated"
        relayed.wait_for(lambda: relayed.relay_health()["connections"] == 0, 2, "connection closed")
        assert time.monotonic() - started < 2
        relayed.wait_for(lambda: not client.running, 10, "xfreerdp sees the connection end")

    # A token of a terminated session is refused, and GET .../rdp issues none any more.
    with RawClient(relayed.relay_port) as late:
        late.hello(again["token"])
        assert late.refused()
    relayed.api.call("GET", f"/api/v1/sessions/{session_id}/rdp", 409, SERVICE)
    events = relayed.api.json("GET", f"/api/v1/sessions/{session_id}/events", 200, SERVICE)["items"]
    moves = [(e["to_status"], e["reason"]) for e in events]
    assert moves[:2] == [("ready", "slot_reserved"), ("active", "client_connected")]
    assert ("suspended", "client_disconnected") in moves and moves[-1] == ("terminated", "admin")
    assert relayed.metrics()["handshakes"]["relayed"] == 2
    assert_clean_log(relayed.service.log_text())


def test_rdp_download_carries_a_fresh_token_so_there_is_no_path_around_the_relay(relayed: Relayed) -> None:
    session_id = relayed.create("carol")["session_id"]
    first = relayed.api.call("GET", f"/api/v1/sessions/{session_id}/rdp", 200, SERVICE).text
    second = relayed.api.call("GET", f"/api/v1/sessions/{session_id}/rdp", 200, SERVICE).text
    tokens = [
        line.split(":", 2)[2]
        for text in (first, second)
        for line in text.split("\r\n")
        if "loadbalanceinfo" in line
    ]
    assert len(tokens) == 2 and tokens[0] != tokens[1]
    assert f"full address:s:127.0.0.1:{relayed.relay_port}" in first
    with RawClient(relayed.relay_port) as raw:  # a downloaded file works through the relay once
        raw.hello(tokens[0])
        assert raw.confirm() is not None
        relayed.wait_connected(session_id, 5)


def test_a_live_desktop_with_input_is_not_reaped_for_idleness_and_an_abandoned_one_is(
    relayed: Relayed, display: Display, tmp_path: Path
) -> None:
    busy = relayed.create("dave", idle_timeout=4, display_resolution="800x600")["session_id"]
    quiet = relayed.create("erin", idle_timeout=4, display_resolution="800x600")["session_id"]
    busy_file, quiet_file = (
        write_rdp(tmp_path, relayed.connect(busy), "busy"),
        write_rdp(tmp_path, relayed.connect(quiet), "quiet"),
    )
    with (
        Display() as other_display,
        FreeRdp(busy_file, display, tmp_path / "busy.log"),
        FreeRdp(quiet_file, other_display, tmp_path / "quiet.log"),
    ):
        relayed.wait_connected(busy, 20)
        relayed.wait_connected(quiet, 20)
        # The pointer moves over the busy client's window for 8 s, twice its idle timeout; the
        # quiet one, on a display of its own, gets no input and is reaped while still connected.
        deadline, step = time.monotonic() + 8, 0
        while time.monotonic() < deadline:
            step += 1
            display.move_pointer(100 + step % 50, 100 + step % 40)
            time.sleep(0.25)
        reaped = relayed.api.json("GET", f"/api/v1/sessions/{quiet}", 200, SERVICE)
        assert (reaped["status"], reaped["termination_reason"]) == ("terminated", "idle_timeout")
        alive = relayed.api.json("GET", f"/api/v1/sessions/{busy}", 200, SERVICE)
        assert alive["status"] == "active", alive
        assert relayed.relay_health()["connections"] == 1  # the reaped one was closed


def test_a_connection_relayed_by_one_replica_closes_when_the_other_terminates_its_session(
    tmp_path: Path, mongo_url: str, redis_url: str, xrdp: XrdpHost
) -> None:
    servers = json.dumps([{"name": "xrdp", "address": "127.0.0.1", "port": xrdp.port, "capacity": 4}])
    relay_a = free_port()
    env_a = relay_env(free_port(), relay_a, mongo_url, redis_url, RDP_CONTROLLER_SERVERS=servers)
    # Replica B shares A's database and Redis prefix: two replicas of one deployment.
    env_b = {**env_a, "RDP_CONTROLLER_PORT": str(free_port()), "RDP_CONTROLLER_RELAY_PORT": str(free_port())}
    with (
        started(relayed_process(tmp_path, "replica-a", env_a), health_timeout=HEALTH_TIMEOUT) as first,
        started(relayed_process(tmp_path, "replica-b", env_b), health_timeout=HEALTH_TIMEOUT) as second,
        httpx.Client(base_url=first.base_url, timeout=15) as a,
        httpx.Client(base_url=second.base_url, timeout=15) as b,
    ):
        replica_a, replica_b = Relayed(first, relay_a, a), Relayed(second, 0, b)
        session_id = replica_a.create("frank")["session_id"]
        descriptor = replica_a.connect(session_id)
        with RawClient(relay_a) as raw:
            raw.hello(descriptor["token"])
            raw.confirm()  # xrdp's answer, through replica A's relay
            replica_b.wait_connected(session_id, 5)
            started_at = time.monotonic()
            replica_b.api.json("DELETE", f"/api/v1/sessions/{session_id}", 200, SERVICE)
            raw.sock.settimeout(5)
            assert raw.read_all() == b""  # closed by replica A
            assert time.monotonic() - started_at < 2
        assert replica_a.relay_health()["connections"] == 0

        # Replica A stops (SIGTERM) while it relays a connection: the client is closed, the session
        # suspended (replica B sees it), and A exits cleanly.
        session_id = replica_a.create("grace")["session_id"]
        descriptor = replica_a.connect(session_id)
        with RawClient(relay_a) as raw:
            raw.hello(descriptor["token"])
            raw.confirm()
            replica_b.wait_connected(session_id, 5)
            assert first.stop() == 0
            raw.sock.settimeout(5)
            assert raw.read_all() == b""
        assert replica_b.status(session_id) == "suspended"
        assert "(shutdown;" in first.log_text()
        assert_clean_log(first.log_text())
