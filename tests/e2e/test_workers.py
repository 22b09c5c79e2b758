"""End to end: the service with two worker processes (``RDP_CONTROLLER_WORKERS=2``).

Each worker listens on the relay port with ``SO_REUSEPORT``; the kernel spreads connections over
them. A connection is relayed through each worker (the ``client_connected`` event names the worker:
``relay:<host>:<pid>``), and terminating the sessions over HTTP closes every connection, so at
least one is closed by the worker that did not answer the termination (the close channel is Redis
pub/sub, one listener per worker). The counters read the same from whichever worker answers
(``prometheus_client`` multiprocess mode).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_relay import HEALTH_TIMEOUT, Relayed, relay_env, relayed_process
from tests.support.process import descendants, free_port, started
from tests.support.rdp_client import RawClient
from tests.support.service_api import OPERATOR, SERVICE, assert_clean_log
from tests.support.xrdp_host import XrdpHost, require_xrdp

pytestmark = pytest.mark.e2e


@pytest.fixture
def xrdp() -> Iterator[XrdpHost]:
    require_xrdp()  # skips locally, fails with CI=true
    with XrdpHost(security="negotiate") as host:
        yield host


WORKERS = 2
MAX_CONNECTIONS = 16  # enough that both workers get one (each lands on either with even odds)


def connected_by(relayed: Relayed, session_id: str) -> str:
    """The relay (``host:pid``) that connected the session, from its ``client_connected`` event."""
    events = relayed.api.json("GET", f"/api/v1/sessions/{session_id}/events", 200, SERVICE)["items"]
    actors = [e["actor"] for e in events if e["reason"] == "client_connected"]
    assert len(actors) == 1, events
    return str(actors[0]).removeprefix("relay:")


def fresh_get(base_url: str, path: str, headers: dict[str, str]) -> httpx.Response:
    """One request on a new connection (another worker may answer it)."""
    with httpx.Client(base_url=base_url, timeout=15.0) as client:
        return client.get(path, headers=headers)


def test_two_workers_share_the_relay_port_close_each_others_connections_and_sum_their_counters(
    tmp_path: Path, mongo_url: str, redis_url: str, xrdp: XrdpHost
) -> None:
    servers = json.dumps([{"name": "xrdp", "address": "127.0.0.1", "port": xrdp.port, "capacity": 32}])
    relay_port = free_port()
    env = relay_env(
        free_port(),
        relay_port,
        mongo_url,
        redis_url,
        RDP_CONTROLLER_SERVERS=servers,
        RDP_CONTROLLER_WORKERS=str(WORKERS),
        RDP_CONTROLLER_MAX_SESSIONS_PER_USER="100",
    )
    with (
        started(relayed_process(tmp_path, "workers", env), health_timeout=HEALTH_TIMEOUT) as service,
        httpx.Client(base_url=service.base_url, timeout=15.0) as client,
    ):
        workers = [pid for pid, _start, command in descendants(service.pid) if "spawn_main" in command]
        assert len(workers) == WORKERS, descendants(service.pid)
        relayed = Relayed(service, relay_port, client)
        open_clients: list[RawClient] = []
        sessions: dict[str, str] = {}  # session id -> the relay that holds its connection
        try:
            while len(set(sessions.values())) < WORKERS and len(sessions) < MAX_CONNECTIONS:
                session_id = relayed.create(f"user-{len(sessions)}")["session_id"]
                raw = RawClient(relay_port)
                open_clients.append(raw)
                raw.hello(relayed.connect(session_id)["token"])
                assert raw.confirm() is not None  # xrdp's answer, through one of the workers
                relayed.wait_connected(session_id, 5)
                sessions[session_id] = connected_by(relayed, session_id)
            holders = set(sessions.values())
            assert len(holders) == WORKERS, sessions  # a relayed connection through each worker
            assert {int(holder.rsplit(":", 1)[1]) for holder in holders} == set(workers)
            for _ in range(4):  # the relay's open connections: summed over the workers, whichever answers
                relay = fresh_get(service.base_url, "/api/v1/metrics", OPERATOR).json()["relay"]
                assert relay["connections"] == len(sessions)

            # Terminate every session over HTTP: each connection closes, whichever worker holds it.
            for session_id in sessions:
                relayed.api.json("DELETE", f"/api/v1/sessions/{session_id}", 200, SERVICE)
            for raw in open_clients:
                raw.sock.settimeout(5)
                assert raw.read_all() == b""
        finally:
            for raw in open_clients:
                raw.close()

        # Counters are summed over the workers: every answer, from either worker, says the same.
        created = len(sessions)
        for _ in range(6):
            metrics: dict[str, Any] = fresh_get(service.base_url, "/api/v1/metrics", OPERATOR).json()
            assert metrics["counters"]["sessions_created"] == created
            assert metrics["counters"]["sessions_terminated"]["admin"] == created
            assert metrics["relay"]["handshakes"]["relayed"] == created
            text = fresh_get(service.base_url, "/metrics", {}).text
            found = re.search(r'^rdp_controller_sessions_created_total\{label=""\} ([0-9.]+)$', text, re.M)
            assert found is not None and float(found.group(1)) == created, text
            assert re.search(r"^rdp_controller_relay_connections 0\.0$", text, re.M), text
        assert service.stop() == 0
    assert_clean_log(service.log_text())
