"""ServiceClientBase: retries, backoff, typed errors, idempotency keys, how its calls move the circuit
breaker (the breaker's own states: test_circuit_breaker.py), health."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from rdp_controller.integration.circuit_breaker import CircuitState
from rdp_controller.integration.errors import (
    CircuitOpenError,
    ServiceError,
    ServiceNotFoundError,
    ServiceTimeoutError,
)
from rdp_controller.integration.service_base import check_base_url, redact_url
from tests.unit.rdp_controller.integration.scripted_peer import Clock, Peer, Sleeps, make_client

HEALTH_SCHEMA = json.loads(
    (Path(__file__).parents[4] / "rdp-controller" / "health-schema.json").read_text(encoding="utf-8")
)
INTEGRATION_SCHEMA = {
    **HEALTH_SCHEMA["definitions"]["IntegrationHealth"],
    "definitions": HEALTH_SCHEMA["definitions"],
}


class UpperBound(random.Random):
    """uniform(a, b) -> b: shows the cap of each jittered delay."""

    def uniform(self, a: float, b: float) -> float:
        return b


# Retries -------------------------------------------------------------------------------------
async def test_retries_5xx_then_succeeds() -> None:
    peer, sleeps = Peer(503, 502, (200, {"ok": True})), Sleeps()
    client = make_client(peer, sleeps=sleeps)
    assert await client._make_request("GET", "/things") == {"ok": True}
    assert len(peer.requests) == 3
    assert len(sleeps.delays) == 2
    await client.close()


async def test_retries_timeouts_then_raises_timeout_error() -> None:
    peer, sleeps = Peer(httpx.ReadTimeout("slow")), Sleeps()
    client = make_client(peer, sleeps=sleeps)
    with pytest.raises(ServiceTimeoutError) as caught:
        await client._make_request("GET", "/things")
    assert caught.value.retryable and caught.value.status_code is None
    assert "timed out" in str(caught.value)
    assert len(peer.requests) == 3 and len(sleeps.delays) == 2
    await client.close()


async def test_connect_timeout_is_a_timeout_error() -> None:
    client = make_client(Peer(httpx.ConnectTimeout("no route")), retry_count=1)
    with pytest.raises(ServiceTimeoutError):
        await client._request("GET", "/x")
    await client.close()


async def test_retries_connection_errors() -> None:
    peer = Peer(httpx.ConnectError("refused"), httpx.RemoteProtocolError("reset"), (200, {"n": 1}))
    client = make_client(peer)
    assert await client._request("GET", "/x") == {"n": 1}
    assert len(peer.requests) == 3
    await client.close()


async def test_exhausted_connection_errors_raise_a_retryable_service_error() -> None:
    client = make_client(Peer(httpx.ConnectError("refused")), retry_count=2)
    with pytest.raises(ServiceError) as caught:
        await client._request("GET", "/x")
    assert caught.value.retryable and not isinstance(caught.value, ServiceTimeoutError)
    assert "ConnectError" in str(caught.value)
    await client.close()


async def test_exhausted_5xx_keeps_the_status() -> None:
    client = make_client(Peer(500), retry_count=2)
    with pytest.raises(ServiceError) as caught:
        await client._request("POST", "/x", json_data={})
    assert caught.value.status_code == 500 and caught.value.retryable
    await client.close()


@pytest.mark.parametrize("status", [400, 401, 403, 409, 422, 429])
async def test_never_retries_4xx(status: int) -> None:
    peer, sleeps = Peer(status), Sleeps()
    client = make_client(peer, sleeps=sleeps)
    with pytest.raises(ServiceError) as caught:
        await client._request("POST", "/x", json_data={"a": 1})
    assert caught.value.status_code == status and not caught.value.retryable
    assert not isinstance(caught.value, ServiceNotFoundError)
    assert len(peer.requests) == 1 and sleeps.delays == []
    await client.close()


async def test_404_maps_to_not_found_without_retry() -> None:
    peer = Peer(404)
    client = make_client(peer)
    with pytest.raises(ServiceNotFoundError) as caught:
        await client._request("GET", "/missing")
    assert caught.value.status_code == 404 and len(peer.requests) == 1
    await client.close()


async def test_retry_count_one_means_a_single_attempt() -> None:
    peer = Peer(503)
    client = make_client(peer, retry_count=1)
    with pytest.raises(ServiceError):
        await client._request("GET", "/x")
    assert len(peer.requests) == 1
    await client.close()


# Backoff -------------------------------------------------------------------------------------
async def test_backoff_is_full_jitter_within_zero_and_cap() -> None:
    sleeps = Sleeps()
    client = make_client(Peer(503), retry_count=8, retry_delay=0.5, sleeps=sleeps, rng=random.Random(7))
    with pytest.raises(ServiceError):
        await client._request("GET", "/x")
    assert len(sleeps.delays) == 7
    for attempt, delay in enumerate(sleeps.delays):
        assert 0.0 <= delay <= min(4.0, 0.5 * 2**attempt)
    assert len(set(sleeps.delays)) > 1  # jittered, not a fixed schedule
    await client.close()


async def test_backoff_cap_doubles_then_stops_at_max_retry_delay() -> None:
    sleeps = Sleeps()
    client = make_client(Peer(503), retry_count=6, retry_delay=0.5, sleeps=sleeps, rng=UpperBound())
    with pytest.raises(ServiceError):
        await client._request("GET", "/x")
    assert sleeps.delays == [0.5, 1.0, 2.0, 4.0, 4.0]
    await client.close()


def test_backoff_lower_bound_is_zero() -> None:
    class LowerBound(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return a

    client = make_client(Peer(200), rng=LowerBound())
    assert [client.backoff(n) for n in range(4)] == [0.0, 0.0, 0.0, 0.0]


# Requests ------------------------------------------------------------------------------------
async def test_json_in_and_out_with_bearer_token() -> None:
    peer = Peer((201, {"id": "s1"}))
    client = make_client(peer, token=lambda: "tok-123")
    answer = await client._make_request("POST", "/servers", json_data={"user_id": "u"}, params={"q": "1"})
    assert answer == {"id": "s1"}
    request = peer.requests[0]
    assert request.headers["authorization"] == "Bearer tok-123"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["accept"] == "application/json"
    assert json.loads(request.content) == {"user_id": "u"}
    assert request.url.params["q"] == "1"
    await client.close()


async def test_no_authorization_header_without_token_factory() -> None:
    peer = Peer(200)
    client = make_client(peer)
    await client._request("GET", "/x")
    assert "authorization" not in peer.requests[0].headers
    await client.close()


async def test_token_factory_is_asked_on_every_attempt() -> None:
    tokens = iter(["t1", "t2"])
    peer = Peer(503, 200)
    client = make_client(peer, token=lambda: next(tokens))
    await client._request("GET", "/x")
    assert [r.headers["authorization"] for r in peer.requests] == ["Bearer t1", "Bearer t2"]
    await client.close()


async def test_explicit_idempotency_key_is_sent_on_every_attempt() -> None:
    peer = Peer(503, 503, 200)
    client = make_client(peer)
    await client._request("POST", "/x", json_data={}, idempotency_key="delivery-1")
    assert [r.headers["idempotency-key"] for r in peer.requests] == ["delivery-1"] * 3
    await client.close()


async def test_post_without_key_gets_one_key_shared_by_its_retries() -> None:
    peer = Peer(503, 200, 200)
    client = make_client(peer)
    await client._request("POST", "/x", json_data={})
    await client._request("POST", "/x", json_data={})
    keys = [r.headers["idempotency-key"] for r in peer.requests]
    assert keys[0] == keys[1] and keys[2] != keys[0]
    await client.close()


async def test_get_carries_no_idempotency_key() -> None:
    peer = Peer(200)
    client = make_client(peer)
    await client._request("GET", "/x")
    assert "idempotency-key" not in peer.requests[0].headers
    await client.close()


async def test_no_content_answers_empty_object_and_non_json_is_an_error() -> None:
    async def empty(request: httpx.Request) -> httpx.Response:
        return httpx.Response(204)

    async def html(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>")

    client = make_client(Peer(empty, html))
    assert await client._make_request("DELETE", "/x") == {}
    with pytest.raises(ServiceError, match="not JSON"):
        await client._request("GET", "/x")
    await client.close()


async def test_make_request_refuses_a_non_object_answer() -> None:
    client = make_client(Peer((200, [1, 2])))
    with pytest.raises(ServiceError, match="not an object"):
        await client._make_request("GET", "/x")
    await client.close()


async def test_error_message_names_peer_call_and_body_excerpt() -> None:
    client = make_client(Peer((409, {"detail": "already recording"})))
    with pytest.raises(ServiceError) as caught:
        await client._request("POST", "/recordings/start", json_data={})
    assert "peer: POST /recordings/start answered HTTP 409" in str(caught.value)
    assert "already recording" in str(caught.value)
    await client.close()


async def test_relative_or_unsafe_paths_are_refused() -> None:
    client = make_client(Peer(200))
    for path in ("servers", "http://evil.test/x", "/a b"):
        with pytest.raises(ValueError):
            await client._request("GET", path)
    await client.close()


# URLs ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    ["", "ftp://peer:21", "peer:8080", "file:///etc/passwd", "http://", "http://peer?x=1", "javascript:x"],
)
def test_refuses_non_http_urls(url: str) -> None:
    with pytest.raises(ValueError, match="service URL"):
        check_base_url(url)


@pytest.mark.parametrize("url", ["http://session-recorder:8093", "https://peer.example/api/", "HTTP://peer"])
def test_accepts_http_urls(url: str) -> None:
    assert check_base_url(url) == url.rstrip("/")


def test_constructor_refuses_a_non_http_url() -> None:
    with pytest.raises(ValueError):
        make_client(Peer(200), base_url="ftp://peer")


def test_credentials_are_redacted() -> None:
    assert redact_url("https://user:secret@peer:8443/x") == "https://peer:8443/x"
    client = make_client(Peer(200), base_url="http://user:pw@peer:1")
    assert client.url == "http://peer:1"


# The circuit breaker, as the client's calls move it ------------------------------------------
async def test_breaker_half_open_trial_failure_reopens_after_a_single_attempt() -> None:
    clock = Clock()
    peer = Peer(503)
    client = make_client(peer, retry_count=3, failure_threshold=1, reset_seconds=10, clock=clock)
    with pytest.raises(ServiceError):
        await client._request("GET", "/x")
    assert client.breaker.state is CircuitState.OPEN
    clock.now += 10
    before = len(peer.requests)
    with pytest.raises(ServiceError) as caught:
        await client._request("GET", "/x")
    assert not isinstance(caught.value, CircuitOpenError)
    assert len(peer.requests) == before + 1  # the trial is one attempt
    assert client.breaker.state is CircuitState.OPEN
    assert client.breaker.retry_in() == pytest.approx(10)
    await client.close()


async def test_cancelled_trial_lets_the_next_call_try() -> None:
    clock = Clock()

    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    peer = Peer(503)
    client = make_client(peer, retry_count=1, failure_threshold=1, reset_seconds=5, clock=clock)
    with pytest.raises(ServiceError):
        await client._request("GET", "/x")
    clock.now += 5
    peer.answers = [hang]
    trial = asyncio.create_task(client._request("GET", "/x"))
    await asyncio.sleep(0.01)
    trial.cancel()
    with pytest.raises(asyncio.CancelledError):
        await trial
    peer.answers = [(200, {})]
    assert await client._request("GET", "/x") == {}
    assert client.breaker.state is CircuitState.CLOSED
    await client.close()


async def test_4xx_counts_as_the_peer_being_up() -> None:
    clock = Clock()
    peer = Peer(503, 503, 400, 503, 503)
    client = make_client(peer, retry_count=1, failure_threshold=3, clock=clock)
    for _ in range(2):
        with pytest.raises(ServiceError):
            await client._request("GET", "/x")
    with pytest.raises(ServiceError):
        await client._request("GET", "/x")  # 400: resets the count
    for _ in range(2):
        with pytest.raises(ServiceError):
            await client._request("GET", "/x")
    assert client.breaker.state is CircuitState.CLOSED
    assert client.breaker.consecutive_failures == 2
    await client.close()


# Health --------------------------------------------------------------------------------------
async def test_health_healthy_with_latency() -> None:
    peer = Peer((200, {"status": "healthy"}))
    client = make_client(peer, token=lambda: "t")
    health = await client.health_check()
    assert (
        health["status"] == "healthy"
        and health["latency_ms"] >= 0
        and health["url"] == "http://peer.test:8080"
    )
    assert peer.requests[0].url.path == "/health"
    assert peer.requests[0].headers["authorization"] == "Bearer t"
    jsonschema.validate(health, INTEGRATION_SCHEMA)
    await client.close()


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (503, "HTTP 503"),
        ((200, {"status": "unhealthy"}), "unhealthy"),
        (httpx.ConnectError("refused"), "ConnectError"),
        (httpx.ReadTimeout("slow"), "timed out"),
    ],
)
async def test_health_unhealthy_never_raises(answer: Any, error: str) -> None:
    client = make_client(Peer(answer))
    health = await client.health_check()
    assert health["status"] == "unhealthy" and error in health["error"]
    jsonschema.validate(health, INTEGRATION_SCHEMA)
    await client.close()


async def test_health_reports_an_open_circuit_without_calling() -> None:
    peer = Peer(503)
    client = make_client(peer, retry_count=1, failure_threshold=1)
    with pytest.raises(ServiceError):
        await client._request("GET", "/x")
    calls = len(peer.requests)
    health = await client.health_check()
    assert health["status"] == "circuit_open" and "next trial" in health["error"]
    assert len(peer.requests) == calls
    jsonschema.validate(health, INTEGRATION_SCHEMA)
    # A health check does not move the breaker.
    assert client.breaker.state is CircuitState.OPEN
    await client.close()


async def test_close_closes_the_shared_client() -> None:
    client = make_client(Peer(200))
    await client.close()
    with pytest.raises(RuntimeError):
        await client._request("GET", "/x")
