"""/health against real backends that stop and come back."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from common.devstack import DevStackError, EmbeddedStack
from rdp_controller.schema_validator import SchemaValidator
from tests.conftest import unavailable
from tests.support.app import running_app, test_settings

SCHEMAS = SchemaValidator()


@pytest.fixture
def private_stack() -> Iterator[EmbeddedStack]:
    """Servers of this test's own, so stopping them disturbs no other test."""
    try:
        stack = EmbeddedStack(None).start()
    except DevStackError as exc:
        unavailable(str(exc))
        raise
    try:
        yield stack
    finally:
        stack.stop()


async def health(client: httpx.AsyncClient) -> tuple[int, dict[str, Any]]:
    response = await client.get("/health")
    body: dict[str, Any] = response.json()
    assert SCHEMAS.errors("health", body) == []
    return response.status_code, body


async def wait_for_status(client: httpx.AsyncClient, wanted: str, within: float = 30) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        _code, body = await health(client)
        if body["status"] == wanted or asyncio.get_running_loop().time() > deadline:
            return body
        await asyncio.sleep(0.2)


async def test_healthy_with_both_backends(mongo_url: str, redis_url: str) -> None:
    async with running_app(test_settings(mongo_url, redis_url)) as (_app, client):
        code, body = await health(client)
    assert code == 200 and body["status"] == "healthy"
    assert body["service"] == "rdp-controller" and body["version"] == "1.0.0"
    assert body["components"]["mongodb"] == {
        **body["components"]["mongodb"],
        "status": "up",
        "indexes": "ready",
    }
    assert body["components"]["redis"]["status"] == "up"
    assert body["components"]["schemas"] == {"status": "loaded", "errors": {}}
    assert body["integrations"]["session_recorder"] == {"status": "not_configured"}


# /health reports the background checks' last round: a short period, so a change shows quickly.
FAST_CHECKS = {"BACKEND_TIMEOUT_SECONDS": 1.0, "RDP_CONTROLLER_HEALTH_INTERVAL": 0.2}


async def test_health_answers_from_the_last_round_of_checks_with_their_age(
    mongo_url: str, redis_url: str
) -> None:
    settings = test_settings(mongo_url, redis_url, RDP_CONTROLLER_HEALTH_INTERVAL=30.0)
    async with running_app(settings) as (app, client):
        checks = app.state.runtime.health
        code, first = await health(client)
        rounds = checks.rounds
        answers = await asyncio.gather(*(client.get("/health") for _ in range(50)))
        assert {answer.status_code for answer in answers} == {200}
        assert checks.rounds == rounds  # a scrape storm makes no backend or peer call
        _code, later = await health(client)
    assert code == 200 and first["status"] == "healthy"
    for backend in ("mongodb", "redis"):
        assert 0 <= first["components"][backend]["age_seconds"] <= later["components"][backend]["age_seconds"]
    assert first["components"]["background"]["health"] in ("running", "starting")


async def test_mongodb_stopped_is_503_and_names_mongodb(private_stack: EmbeddedStack) -> None:
    settings = test_settings(private_stack.mongodb_url, private_stack.redis_url, **FAST_CHECKS)
    async with running_app(settings) as (_app, client):
        private_stack.kill("SecantusDB")
        await wait_for_status(client, "unhealthy")
        code, body = await health(client)
        assert code == 503
        assert body["status"] == "unhealthy"
        assert body["components"]["mongodb"]["status"] == "down"
        assert body["components"]["mongodb"]["error"]
        private_stack.restart("SecantusDB")
        assert (await wait_for_status(client, "healthy"))["status"] == "healthy"


async def test_redis_stopped_is_200_degraded_and_names_redis(private_stack: EmbeddedStack) -> None:
    settings = test_settings(private_stack.mongodb_url, private_stack.redis_url, **FAST_CHECKS)
    async with running_app(settings) as (_app, client):
        private_stack.kill("Redis")
        await wait_for_status(client, "degraded")
        code, body = await health(client)
        assert code == 200
        assert body["status"] == "degraded"
        assert body["components"]["redis"]["status"] == "down"
        assert body["components"]["mongodb"]["status"] == "up"
        private_stack.restart("Redis")
        assert (await wait_for_status(client, "healthy"))["status"] == "healthy"


async def test_service_starts_with_mongodb_down_and_finishes_setup_when_it_answers(
    private_stack: EmbeddedStack,
) -> None:
    private_stack.kill("SecantusDB")
    settings = test_settings(private_stack.mongodb_url, private_stack.redis_url, BACKEND_TIMEOUT_SECONDS=0.5)
    from rdp_controller.main import create_app

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            code, body = await health(client)
            assert code == 503 and body["components"]["mongodb"]["status"] == "down"
            private_stack.restart("SecantusDB")
            body = await wait_for_status(client, "healthy")
            assert body["components"]["mongodb"]["indexes"] == "ready"
            indexes = await app.state.runtime.store.database["rdp_sessions"].index_information()
            assert "session_id_unique" in indexes
