"""IntegrationManager: lazy clients from the *_URL settings, health aggregation, service tokens, close."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import jwt
import pytest

from rdp_controller.config import RdpControllerSettings
from rdp_controller.integration.integration_manager import IntegrationManager, ServiceTokens
from rdp_controller.integration.rdp_monitor_client import RdpMonitorClient
from rdp_controller.integration.rdp_server_manager_client import RdpServerManagerClient
from rdp_controller.integration.session_processor_client import SessionProcessorClient
from rdp_controller.integration.session_recorder_client import SessionRecorderClient

SECRET = "unit-secret-" + "y" * 40
PEER_KEYS = {"rdp_server_manager", "session_recorder", "session_processor", "rdp_monitor"}
HEALTH_SCHEMA = json.loads(
    (Path(__file__).parents[4] / "rdp-controller" / "health-schema.json").read_text(encoding="utf-8")
)
INTEGRATIONS_SCHEMA = {
    **HEALTH_SCHEMA["definitions"]["Health"]["properties"]["integrations"],
    "definitions": HEALTH_SCHEMA["definitions"],
}
ALL_URLS = {
    "RDP_SERVER_MANAGER_URL": "http://rdp-server-manager:8081",
    "SESSION_RECORDER_URL": "http://session-recorder:8093",
    "SESSION_PROCESSOR_URL": "http://session-processor:8087",
    "RDP_MONITOR_URL": "http://rdp-monitor:8091",
}


def settings(**values: Any) -> RdpControllerSettings:
    base: dict[str, Any] = {
        "LUCID_ENV": "test",
        "MONGODB_URL": "mongodb://db.test:27017",
        "REDIS_URL": "redis://cache.test:6379/0",
        "JWT_SECRET_KEY": SECRET,
        "SERVICE_TIMEOUT_SECONDS": 1.0,
        "SERVICE_RETRY_COUNT": 1,
        **{name: "" for name in ALL_URLS},
    }
    return RdpControllerSettings.model_validate({**base, **values})


class Peers:
    """One mock transport for every peer host; records requests, answers per host."""

    def __init__(self, **answers: Any) -> None:
        self.answers = answers
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.get(request.url.host, 200)
        if answer == "hang":
            await asyncio.sleep(30)
        if isinstance(answer, BaseException):
            raise answer
        return httpx.Response(answer if isinstance(answer, int) else 200, json={"status": "healthy"})


async def test_unset_urls_are_not_configured() -> None:
    manager = IntegrationManager(settings())
    assert manager.rdp_server_manager is None
    assert manager.session_recorder is None
    assert manager.session_processor is None
    assert manager.rdp_monitor is None
    health = await manager.health_check_all()
    assert set(health) == PEER_KEYS
    assert all(value == {"status": "not_configured"} for value in health.values())
    jsonschema.validate(health, INTEGRATIONS_SCHEMA)
    await manager.close_all()


async def test_clients_are_created_lazily_once_and_typed() -> None:
    manager = IntegrationManager(settings(**ALL_URLS), transport=httpx.MockTransport(Peers()))
    assert manager._clients == {}
    recorder = manager.session_recorder
    assert isinstance(recorder, SessionRecorderClient)
    assert set(manager._clients) == {"session_recorder"}
    assert manager.session_recorder is recorder
    assert isinstance(manager.rdp_server_manager, RdpServerManagerClient)
    assert isinstance(manager.session_processor, SessionProcessorClient)
    assert isinstance(manager.rdp_monitor, RdpMonitorClient)
    assert recorder.base_url == "http://session-recorder:8093"
    assert recorder.timeout == 1.0 and recorder.retry_count == 1
    assert recorder.breaker.failure_threshold == 5
    await manager.close_all()


async def test_close_all_closes_created_clients_and_is_repeatable() -> None:
    manager = IntegrationManager(settings(**ALL_URLS), transport=httpx.MockTransport(Peers()))
    recorder = manager.session_recorder
    assert recorder is not None
    await manager.close_all()
    assert recorder._client.is_closed
    await manager.close_all()
    # A later use builds a fresh client (e.g. a test reusing the manager).
    fresh = manager.session_recorder
    assert fresh is not None and fresh is not recorder
    await manager.close_all()


async def test_health_check_all_matches_the_schema() -> None:
    peers = Peers(**{"session-recorder": 503, "rdp-monitor": httpx.ConnectError("refused")})
    manager = IntegrationManager(
        settings(**{**ALL_URLS, "SESSION_PROCESSOR_URL": ""}), transport=httpx.MockTransport(peers)
    )
    health = await manager.health_check_all()
    assert set(health) == PEER_KEYS
    assert health["rdp_server_manager"]["status"] == "healthy"
    assert health["rdp_server_manager"]["url"] == "http://rdp-server-manager:8081"
    assert health["session_recorder"]["status"] == "unhealthy"
    assert health["session_processor"] == {"status": "not_configured"}
    assert health["rdp_monitor"]["status"] == "unhealthy"
    jsonschema.validate(health, INTEGRATIONS_SCHEMA)
    await manager.close_all()


async def test_health_checks_run_concurrently_and_are_bounded() -> None:
    # Every peer hangs; the mock transport ignores httpx timeouts, so only the manager's bound stops it.
    peers = Peers(**{host.split("//")[1].split(":")[0]: "hang" for host in ALL_URLS.values()})
    manager = IntegrationManager(
        settings(**ALL_URLS, SERVICE_TIMEOUT_SECONDS=0.2), transport=httpx.MockTransport(peers)
    )
    started = time.perf_counter()
    health = await manager.health_check_all()
    elapsed = time.perf_counter() - started
    assert all(value["status"] == "unhealthy" for value in health.values())
    assert all("0.2" in value["error"] for value in health.values())
    assert elapsed < 3.0  # four peers, each bounded at ~1.2 s, checked at the same time
    await manager.close_all()


async def test_an_unusable_url_is_reported_not_raised() -> None:
    manager = IntegrationManager(settings(RDP_MONITOR_URL="ftp://rdp-monitor:21"))
    assert manager.rdp_monitor is None
    assert manager.is_configured("rdp_monitor")
    health = await manager.health_check_all()
    assert health["rdp_monitor"]["status"] == "unhealthy"
    assert "RDP_MONITOR_URL" in health["rdp_monitor"]["error"]
    jsonschema.validate(health, INTEGRATIONS_SCHEMA)


async def test_service_token_audience_is_the_peer() -> None:
    peers = Peers()
    manager = IntegrationManager(settings(**ALL_URLS), transport=httpx.MockTransport(peers))
    await manager.health_check_all()
    audiences = {}
    for request in peers.requests:
        token = request.headers["authorization"].removeprefix("Bearer ")
        claims = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_aud": False})
        audiences[request.url.host] = claims["aud"]
        assert claims["sub"] == "rdp-controller" and claims["roles"] == ["service"]
        assert claims["exp"] - claims["iat"] == 300
    assert audiences == {
        "rdp-server-manager": "rdp-server-manager",
        "session-recorder": "session-recorder",
        "session-processor": "session-processor",
        "rdp-monitor": "rdp-monitor",
    }
    await manager.close_all()


@pytest.mark.parametrize("secret", ["", "short"])
async def test_no_token_without_a_usable_secret(secret: str) -> None:
    peers = Peers()
    manager = IntegrationManager(
        settings(SESSION_RECORDER_URL="http://session-recorder:8093", JWT_SECRET_KEY=secret),
        transport=httpx.MockTransport(peers),
    )
    await manager.health_check_all()
    assert "authorization" not in peers.requests[0].headers
    await manager.close_all()


def test_service_tokens_are_cached_until_near_expiry() -> None:
    now = [1_000_000.0]
    tokens = ServiceTokens(SECRET, ttl_seconds=300, clock=lambda: now[0])
    factory = tokens.factory("session-recorder")
    first = factory()
    now[0] += 200
    assert factory() == first
    now[0] += 50  # within a minute of expiry: a fresh one
    assert factory() != first
