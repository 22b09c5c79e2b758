"""The clients over real HTTP (uvicorn on loopback): timeouts, refused connections, recovery."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from rdp_controller.integration.errors import ServiceError, ServiceTimeoutError
from rdp_controller.integration.integration_manager import IntegrationManager
from tests.support.peers import PROCESSOR, PeerServer

from .conftest import layer_settings

pytestmark = pytest.mark.integration

SID = "5f0c8a9e-0a43-4c1e-9b0e-3f8f5b0d2a11"


@pytest.fixture
def peers() -> Iterator[PeerServer]:
    server = PeerServer().start()
    yield server
    server.stop()


def manager_for(url: str) -> IntegrationManager:
    settings = layer_settings(
        "mongodb://unused.test",
        "redis://unused.test",
        SESSION_PROCESSOR_URL=url,
        SERVICE_TIMEOUT_SECONDS=0.3,
        SERVICE_RETRY_COUNT=2,
        SERVICE_CIRCUIT_FAILURE_THRESHOLD=100,
    )
    return IntegrationManager(settings)


async def test_a_hanging_peer_times_out(peers: PeerServer) -> None:
    peers.state.hang(PROCESSOR, 3.0)
    manager = manager_for(peers.url)
    client = manager.session_processor
    assert client is not None
    started = time.perf_counter()
    with pytest.raises(ServiceTimeoutError):
        await client.finalize_session(SID)
    assert time.perf_counter() - started < 2.5  # two attempts of 0.3 s plus a short backoff
    assert len(peers.state.seen(PROCESSOR)) == 2
    health = (await manager.health_check_all())["session_processor"]
    assert health["status"] == "unhealthy" and "timed out" in health["error"]
    await manager.close_all()


async def test_a_stopped_peer_is_refused_then_recovers_on_the_same_port(peers: PeerServer) -> None:
    manager = manager_for(peers.url)
    client = manager.session_processor
    assert client is not None
    peers.stop()
    with pytest.raises(ServiceError) as caught:
        await client.finalize_session(SID)
    assert caught.value.retryable and "ConnectError" in str(caught.value)
    assert (await manager.health_check_all())["session_processor"]["status"] == "unhealthy"
    peers.start()
    answer = await client.finalize_session(SID, idempotency_key="k1")
    assert answer["finalized"] is True and answer["session_id"] == SID
    assert (await manager.health_check_all())["session_processor"]["status"] == "healthy"
    await manager.close_all()
