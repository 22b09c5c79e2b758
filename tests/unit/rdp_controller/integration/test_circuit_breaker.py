"""CircuitBreaker: closed, open, half-open with one trial at a time, and its settings; driven through a
client's calls (a scripted peer and clock)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from rdp_controller.integration.circuit_breaker import CircuitBreaker, CircuitState
from rdp_controller.integration.errors import CircuitOpenError, ServiceError
from tests.unit.rdp_controller.integration.scripted_peer import Clock, Peer, make_client


async def test_breaker_closed_open_half_open_closed() -> None:
    clock = Clock()
    peer = Peer(503)
    client = make_client(peer, retry_count=2, failure_threshold=2, reset_seconds=30, clock=clock)
    for _ in range(2):
        with pytest.raises(ServiceError):
            await client._request("GET", "/x")
    assert client.breaker.state is CircuitState.OPEN
    calls = len(peer.requests)
    with pytest.raises(CircuitOpenError) as refused:
        await client._request("GET", "/x")
    assert len(peer.requests) == calls  # refused without calling
    assert refused.value.retry_in == pytest.approx(30)
    clock.now += 29
    with pytest.raises(CircuitOpenError):
        await client._request("GET", "/x")
    clock.now += 1
    assert client.breaker.state is CircuitState.HALF_OPEN
    peer.answers = [(200, {"ok": True})]
    assert await client._request("GET", "/x") == {"ok": True}
    assert client.breaker.state is CircuitState.CLOSED
    assert client.breaker.consecutive_failures == 0
    await client.close()


async def test_breaker_lets_one_trial_through_at_a_time() -> None:
    clock = Clock()
    release = asyncio.Event()

    async def slow_ok(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return httpx.Response(200, json={})

    peer = Peer(503)
    client = make_client(peer, retry_count=1, failure_threshold=1, reset_seconds=5, clock=clock)
    with pytest.raises(ServiceError):
        await client._request("GET", "/x")
    clock.now += 5
    peer.answers = [slow_ok]
    trial = asyncio.create_task(client._request("GET", "/x"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    with pytest.raises(CircuitOpenError, match="trial"):
        await client._request("GET", "/x")
    release.set()
    await trial
    assert client.breaker.state is CircuitState.CLOSED
    await client.close()


def test_breaker_validates_its_settings() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(0, 1)
    with pytest.raises(ValueError):
        CircuitBreaker(1, 0)
