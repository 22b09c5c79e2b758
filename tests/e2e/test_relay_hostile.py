"""End to end: hostile input on the relay port of a running service.

Each case comes from a loopback source address of its own (``127.0.0.N``), so the per-address
limit on failed redemptions is tested on its own. Every case must end within the handshake
timeout with nothing written back but, for a request that could be read, an X.224 Connection
Confirm carrying ``RDP_NEG_FAILURE``, and with its refusal counted; the HTTP API stays responsive.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from protocol.negotiation import NegotiationFailure
from protocol.x224 import ConnectionRequest, encode_connection_request
from tests.support.process import ServiceProcess, entrypoint_argv, free_port, started
from tests.support.rdp_client import RawClient
from tests.support.service_api import OPERATOR, SERVICE, Api, assert_clean_log, entrypoint_env
from tests.support.xrdp_host import XrdpHost, require_xrdp

pytestmark = pytest.mark.e2e

HANDSHAKE_TIMEOUT = 2.0
FAILURES_PER_MINUTE = 3
TOKEN_TTL = 10
SLACK = 1.5  # scheduling on a shared 2-core machine
HALF_OPEN = 1000


class Hostile:
    def __init__(self, service: ServiceProcess, relay_port: int, client: httpx.Client) -> None:
        self.service = service
        self.relay_port = relay_port
        self.api = Api(client, service)

    def handshakes(self) -> dict[str, int]:
        counts: dict[str, int] = self.api.json("GET", "/api/v1/metrics", 200, OPERATOR)["relay"]["handshakes"]
        return counts

    def token(self, user_id: str, **config: Any) -> tuple[str, str]:
        body = {"user_id": user_id, "new_session": True, "session_config": config}
        session_id = self.api.json("POST", "/api/v1/sessions", 201, SERVICE, json=body)["session_id"]
        descriptor = self.api.json("POST", f"/api/v1/sessions/{session_id}/connect", 200, SERVICE)
        return session_id, str(descriptor["token"])


@pytest.fixture
def hostile(tmp_path: Path, mongo_url: str, redis_url: str) -> Iterator[Hostile]:
    require_xrdp()
    with XrdpHost(security="negotiate") as xrdp:
        servers = [{"name": "xrdp", "address": "127.0.0.1", "port": xrdp.port, "capacity": 20}]
        port, relay_port = free_port(), free_port()
        env = entrypoint_env(
            port,
            mongo_url,
            redis_url,
            RDP_CONTROLLER_RELAY_PORT=str(relay_port),
            RDP_CONTROLLER_RELAY_BIND="127.0.0.1",
            RDP_CONTROLLER_RELAY_HANDSHAKE_TIMEOUT=str(HANDSHAKE_TIMEOUT),
            RDP_CONTROLLER_RELAY_FAILURES_PER_MINUTE=str(FAILURES_PER_MINUTE),
            RDP_CONTROLLER_CONNECTION_TOKEN_TTL=str(TOKEN_TTL),
            RDP_CONTROLLER_MAX_SESSIONS_PER_USER="20",
            RDP_CONTROLLER_RATE_LIMIT_PER_MINUTE="0",
            RDP_CONTROLLER_SERVERS=json.dumps(servers),
            LOG_LEVEL="INFO",
        )
        process = ServiceProcess(entrypoint_argv(), env=env, port=port, log_path=tmp_path / "service.log")
        with started(process) as service, httpx.Client(base_url=service.base_url, timeout=15) as client:
            yield Hostile(service, relay_port, client)


def ends_within(raw: RawClient, seconds: float) -> tuple[bytes, float]:
    """What the relay wrote before closing, and how long that took."""
    started_at = time.monotonic()
    raw.sock.settimeout(seconds)
    data = raw.read_all()
    return data, time.monotonic() - started_at


def assert_refused(raw: RawClient) -> None:
    started_at = time.monotonic()
    answer = raw.confirm()
    assert isinstance(answer, NegotiationFailure), answer
    assert raw.read_all() == b""
    assert time.monotonic() - started_at < HANDSHAKE_TIMEOUT + SLACK


def test_every_hostile_case_ends_within_the_handshake_timeout_with_a_counted_refusal(
    hostile: Hostile,
) -> None:
    relay = hostile.relay_port
    expired_session, expired = hostile.token("expiring")  # used after its TTL, at the end
    issued_at = time.monotonic()
    before = hostile.handshakes()

    # Random bytes: not an RDP request, so not answered.
    with RawClient(relay, source="127.0.0.2") as raw:
        raw.send(random.Random(20261130).randbytes(300))
        data, seconds = ends_within(raw, HANDSHAKE_TIMEOUT + SLACK + 2)
        assert data == b"" and seconds < HANDSHAKE_TIMEOUT + SLACK
    # A TPKT header announcing 65,535 bytes that never come: refused on the header alone.
    with RawClient(relay, source="127.0.0.3") as raw:
        raw.send(b"\x03\x00\xff\xff")
        data, seconds = ends_within(raw, HANDSHAKE_TIMEOUT + SLACK + 2)
        assert data == b"" and seconds < 1.0
    # One byte a second of a valid request: cut at the handshake timeout.
    with RawClient(relay, source="127.0.0.4") as raw:
        request = encode_connection_request(ConnectionRequest(routing_token=b"rct_slow\r\n"))
        started_at = time.monotonic()
        try:
            for byte in request:
                raw.send(bytes([byte]))
                time.sleep(1.0)
        except (BrokenPipeError, ConnectionResetError):
            pass
        data, _ = ends_within(raw, 5)
        assert data == b"" and time.monotonic() - started_at < HANDSHAKE_TIMEOUT + SLACK + 1.0
    # Unknown, malformed and missing tokens: answered RDP_NEG_FAILURE, then closed.
    for source, token in (
        ("127.0.0.5", "rct_" + "A" * 43),
        ("127.0.0.6", "not-a-token"),
        ("127.0.0.7", None),
    ):
        with RawClient(relay, source=source) as raw:
            raw.hello(token)
            assert_refused(raw)
    # A used token, and the token of a terminated session.
    _, used = hostile.token("used")
    with RawClient(relay, source="127.0.0.8") as raw:
        raw.hello(used)
        raw.confirm()  # xrdp's confirm: relayed
    with RawClient(relay, source="127.0.0.9") as raw:
        raw.hello(used)
        assert_refused(raw)
    ended_session, ended = hostile.token("ended")
    hostile.api.json("DELETE", f"/api/v1/sessions/{ended_session}", 200, SERVICE)
    with RawClient(relay, source="127.0.0.10") as raw:
        raw.hello(ended)
        assert_refused(raw)
    # A token in the pre-connection PDU works like one in the routing token, and once only.
    _, pcb_token = hostile.token("pcb")
    with RawClient(relay, source="127.0.0.11") as raw:
        raw.hello(None, pcb=pcb_token)
        assert not isinstance(raw.confirm(), NegotiationFailure)
    with RawClient(relay, source="127.0.0.12") as raw:
        raw.hello(None, pcb=pcb_token)
        assert_refused(raw)

    # Failed redemptions from one address are limited: past the limit even a valid token is
    # refused from there without being spent, and still works from elsewhere.
    for _ in range(FAILURES_PER_MINUTE):
        with RawClient(relay, source="127.0.0.50") as raw:
            raw.hello("rct_" + "B" * 43)
            assert_refused(raw)
    _, valid = hostile.token("limited")
    with RawClient(relay, source="127.0.0.50") as raw:
        raw.hello(valid)
        assert_refused(raw)
    with RawClient(relay, source="127.0.0.51") as raw:
        raw.hello(valid)
        assert not isinstance(raw.confirm(), NegotiationFailure)

    # An expired token.
    time.sleep(max(0.0, TOKEN_TTL + 1 - (time.monotonic() - issued_at)))
    with RawClient(relay, source="127.0.0.13") as raw:
        raw.hello(expired)
        assert_refused(raw)
    assert hostile.api.json("GET", f"/api/v1/sessions/{expired_session}", 200, SERVICE)["status"] == "ready"

    after = hostile.handshakes()
    counted = {outcome: after[outcome] - before.get(outcome, 0) for outcome in after}
    assert counted["malformed"] == 2 and counted["timeout"] == 1
    assert counted["token_invalid"] == 2 + 2 + 1 + FAILURES_PER_MINUTE + 1  # unknown, malformed, used x2, ...
    assert counted["no_token"] == 1 and counted["rate_limited"] == 1
    assert counted["relayed"] == 3
    assert_clean_log(hostile.service.log_text())


async def half_open(relay: int, count: int) -> list[float]:
    """``count`` connections that send nothing; how long each took to be closed by the relay."""

    async def one(index: int) -> float:
        source = f"127.0.1.{1 + index % 250}"
        reader, writer = await asyncio.open_connection("127.0.0.1", relay, local_addr=(source, 0))
        started_at = time.monotonic()
        try:
            data = await asyncio.wait_for(reader.read(), HANDSHAKE_TIMEOUT + 10)
            assert data == b""
        finally:
            writer.close()
        return time.monotonic() - started_at

    return await asyncio.gather(*(one(i) for i in range(count)))


def test_a_thousand_half_open_connections_end_and_the_api_stays_responsive(hostile: Hostile) -> None:
    before = hostile.handshakes()
    latencies: list[float] = []
    with httpx.Client(base_url=hostile.service.base_url, timeout=10) as probe:

        async def storm() -> list[float]:
            task = asyncio.create_task(half_open(hostile.relay_port, HALF_OPEN))
            while not task.done():
                started_at = time.monotonic()
                response = await asyncio.to_thread(probe.get, "/health")
                assert response.status_code == 200
                latencies.append(time.monotonic() - started_at)
                await asyncio.sleep(0.1)
            return await task

        closed_after = asyncio.run(storm())
    assert len(closed_after) == HALF_OPEN
    assert max(closed_after) < HANDSHAKE_TIMEOUT + SLACK + 2, max(closed_after)
    assert latencies and max(latencies) < 2.0, max(latencies)
    assert hostile.handshakes()["timeout"] - before["timeout"] == HALF_OPEN
    print(
        f"\n{HALF_OPEN} half-open connections: closed after"
        f" {min(closed_after):.2f}..{max(closed_after):.2f} s;"
        f" /health answered {len(latencies)} times, slowest {max(latencies) * 1000:.0f} ms"
    )
