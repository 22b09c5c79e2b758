"""End to end: the service as a real process, driven over real HTTP, against a real xrdp.

Two ways the service is started:

- the container's CMD, ``python rdp-controller/entrypoint.py``, with its settings in the
  environment (as compose passes them) against the test session's MongoDB and Redis;
- ``make run``'s command line, ``python -m common.devstack --memory --service-port P -- python -m
  uvicorn rdp_controller.main:create_app --factory ...``, with no backend URLs in the
  environment: the devstack starts SecantusDB and Redis itself, and Ctrl-C stops everything.
"""

from __future__ import annotations

import re
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.app import token
from tests.support.process import (
    ServiceProcess,
    alive,
    descendants,
    entrypoint_argv,
    free_port,
    port_open,
    service_env,
)
from tests.support.service_api import OPERATOR, SERVICE, Api, assert_clean_log, entrypoint_env, transitions
from tests.support.xrdp_host import XrdpHost, require_xrdp

pytestmark = pytest.mark.e2e

HEALTH_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
REAPER_TIMEOUT = 30.0


@pytest.fixture
def entrypoint_service(tmp_path: Path, mongo_url: str, redis_url: str) -> Iterator[ServiceProcess]:
    port = free_port()
    env = entrypoint_env(port, mongo_url, redis_url)
    with ServiceProcess(
        entrypoint_argv(), env=env, port=port, log_path=tmp_path / "service.log", stop_timeout=STOP_TIMEOUT
    ) as service:
        service.wait_for_health(timeout=HEALTH_TIMEOUT, want="healthy")  # indexes created too
        yield service


@pytest.fixture
def xrdp() -> Iterator[XrdpHost]:
    require_xrdp()  # skips locally, fails with CI=true
    with XrdpHost(security="negotiate") as host:
        yield host


def test_a_session_lives_and_ends_over_http_against_the_entrypoint_process(
    entrypoint_service: ServiceProcess, xrdp: XrdpHost
) -> None:
    service = entrypoint_service
    alice = {"Authorization": f"Bearer {token('alice', 'user')}"}
    bob = {"Authorization": f"Bearer {token('bob', 'user')}"}
    with httpx.Client(base_url=service.base_url, timeout=15.0) as client:
        api = Api(client, service)
        health = api.json("GET", "/health", 200, {})
        assert health["environment"] == "development" and health["auth_enabled"] is True
        api.call("GET", "/api/v1/sessions", 401, {})

        # The operator registers the xrdp host and probes it with the RDP protocol.
        server = api.json(
            "POST",
            "/api/v1/servers",
            201,
            OPERATOR,
            json={"name": "xrdp-e2e", "address": "127.0.0.1", "port": xrdp.port, "capacity": 4},
        )
        server_id = server["server_id"]
        assert (server["state"], server["live_sessions"]) == ("available", 0)
        probe = api.json("POST", f"/api/v1/servers/{server_id}/probe", 200, OPERATOR)
        assert probe["reachable"] is True and probe["error"] is None, (probe, xrdp.log_tail())
        assert probe["selected_protocol"] == "ssl"  # xrdp 0.9 has no CredSSP
        assert probe["cert_sha256"] == xrdp.certificate_sha256
        recorded = api.json("GET", f"/api/v1/servers/{server_id}", 200, OPERATOR)
        assert recorded["last_probe"]["cert_sha256"] == xrdp.certificate_sha256
        assert recorded["state"] == "available"

        # The session API creates a session for alice: a slot on the xrdp host is reserved.
        created = api.json(
            "POST",
            "/api/v1/sessions",
            201,
            SERVICE,
            json={
                "user_id": "alice",
                "session_config": {"display_resolution": "1280x720", "color_depth": 32},
            },
        )
        session_id = created["session_id"]
        assert (created["status"], created["server_id"], created["user_id"]) == ("ready", server_id, "alice")
        assert api.json("GET", f"/api/v1/servers/{server_id}", 200, OPERATOR)["live_sessions"] == 1
        api.call("GET", f"/api/v1/sessions/{session_id}", 404, bob)  # another user's session is hidden
        base = f"/api/v1/sessions/{session_id}"

        # Alice's client connects: a descriptor with a one-time token and the .rdp content.
        descriptor = api.json("POST", f"{base}/connect", 200, alice)
        assert (descriptor["session_id"], descriptor["server_id"]) == (session_id, server_id)
        assert (descriptor["address"], descriptor["port"]) == ("127.0.0.1", xrdp.port)
        assert descriptor["token"]
        assert f"full address:s:127.0.0.1:{xrdp.port}" in descriptor["rdp_file"]
        assert "desktopwidth:i:1280" in descriptor["rdp_file"]
        assert api.json("GET", base, 200, alice)["status"] == "active"
        rdp = api.call("GET", f"{base}/rdp", 200, alice)
        assert rdp.headers["content-type"].startswith("application/x-rdp")
        assert f'filename="session-{session_id}.rdp"' in rdp.headers["content-disposition"]
        assert f"full address:s:127.0.0.1:{xrdp.port}" in rdp.text

        # Heartbeat, disconnect, reconnect to the same host, idle, terminate.
        active = api.json("POST", f"{base}/activity", 200, alice, json={"bytes_in": 1200, "bytes_out": 3400})
        assert active["status"] == "active" and active["last_activity_at"] is not None
        suspended = api.json("POST", f"{base}/disconnect", 200, alice)
        assert suspended["status"] == "suspended" and suspended["disconnect_deadline"] is not None
        api.call("POST", f"{base}/connect", 409, alice)  # a suspended session is reconnected, not connected
        again = api.json("POST", f"{base}/reconnect", 200, alice)
        assert (again["server_id"], again["port"]) == (server_id, xrdp.port)
        assert again["token"] and again["token"] != descriptor["token"]
        assert api.json("GET", base, 200, alice)["status"] == "active"
        idle = api.json("PUT", f"{base}/status", 200, SERVICE, json={"status": "idle"})
        assert idle["status"] == "idle"
        ended = api.json("DELETE", base, 200, alice)
        assert (ended["status"], ended["termination_reason"]) == ("terminated", "user_request")
        assert api.json("DELETE", base, 200, alice)["status"] == "terminated"  # idempotent
        api.call("GET", f"{base}/rdp", 409, alice)  # a final session has no connection
        assert api.json("GET", f"/api/v1/servers/{server_id}", 200, OPERATOR)["live_sessions"] == 0

        assert transitions(api, session_id, alice) == [
            (None, "ready", "slot_reserved", "session-api"),
            ("ready", "active", "client_connected", "alice"),
            ("active", "suspended", "client_disconnected", "alice"),
            ("suspended", "active", "reconnected", "alice"),
            ("active", "idle", None, "session-api"),
            ("idle", "terminated", "user_request", "alice"),
        ]

        # A session nobody uses: the reaper ends it after its idle timeout.
        lazy = api.json(
            "POST",
            "/api/v1/sessions",
            201,
            SERVICE,
            json={"user_id": "bob", "session_config": {"idle_timeout": 1}},
        )
        deadline = time.monotonic() + REAPER_TIMEOUT
        current = lazy
        while current["status"] != "terminated":
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the reaper did not end {lazy['session_id']}: {current}\n{service.log_tail()}"
                )
            time.sleep(0.2)
            current = api.json("GET", f"/api/v1/sessions/{lazy['session_id']}", 200, bob)
        assert current["termination_reason"] == "idle_timeout"
        assert transitions(api, lazy["session_id"], bob) == [
            (None, "ready", "slot_reserved", "session-api"),
            ("ready", "terminated", "idle_timeout", "reaper"),
        ]
        assert api.json("GET", f"/api/v1/servers/{server_id}", 200, OPERATOR)["live_sessions"] == 0
        metrics = api.call("GET", "/metrics", 200, {})
        assert metrics.headers["content-type"].startswith("text/plain")

    # docker stop: SIGTERM to the main process; it shuts down gracefully and promptly, with exit code 0.
    service.send_signal(signal.SIGTERM)
    code = service.wait(timeout=STOP_TIMEOUT)
    log = service.log_text()
    assert "Application shutdown complete." in log and "rdp-controller stopped" in log, service.log_tail()
    assert "Reaper terminated" in log
    assert_clean_log(log)
    assert code == 0, f"exit code {code}\n{service.log_tail()}"


DEVSTACK_URL_RE = re.compile(
    r"devstack: (?:MongoDB-compatible server mongodb|Redis redis)://127\.0\.0\.1:(\d+)"
)


def test_make_run_command_starts_without_backend_urls_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    port = free_port()
    argv = [
        *(sys.executable, "-m", "common.devstack", "--memory", "--service-port", str(port), "--"),
        *(sys.executable, "-m", "uvicorn", "rdp_controller.main:create_app", "--factory"),
        *("--host", "127.0.0.1", "--port", str(port)),
    ]
    env = service_env()  # no MONGODB_URL, REDIS_URL, LUCID_ENV or JWT_SECRET_KEY: as on a fresh checkout
    assert not {"MONGODB_URL", "REDIS_URL", "LUCID_ENV", "JWT_SECRET_KEY"} & env.keys()
    with ServiceProcess(argv, env=env, port=port, log_path=tmp_path / "make-run.log") as run:
        health = run.wait_for_health(timeout=HEALTH_TIMEOUT, want="healthy")
        assert health["environment"] == "development"
        log = run.log_text()
        backend_ports = [int(p) for p in DEVSTACK_URL_RE.findall(log)]
        assert len(backend_ports) == 2, run.log_tail()
        assert f"devstack: service http://127.0.0.1:{port}" in log
        tree = descendants(run.pid)
        commands = " | ".join(command for _pid, _start, command in tree)
        assert "secantus" in commands and "redis-server" in commands and "uvicorn" in commands, commands

        # Ctrl-C: the terminal sends SIGINT to the whole foreground process group.
        run.signal_group(signal.SIGINT)
        code = run.wait(timeout=STOP_TIMEOUT + 10)
        log = run.log_text()
        left = [identity for identity in tree if alive(identity)]
        assert not left, f"still running after Ctrl-C: {left}\n{run.log_tail()}"
        assert not [p for p in (*backend_ports, port) if port_open(p)], run.log_tail()
        assert "devstack: stopping the embedded servers" in log, run.log_tail()
        assert "Application shutdown complete." in log, run.log_tail()
        assert code == 0, f"exit code {code}\n{run.log_tail()}"
        assert_clean_log(log)
