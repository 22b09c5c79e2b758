"""The outbox's calls: each peer client declares its own, the integration manager gathers them."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from rdp_controller.config import RdpControllerSettings
from rdp_controller.integration.errors import PeerNotConfigured
from rdp_controller.integration.integration_manager import IntegrationManager

URLS = {
    "RDP_SERVER_MANAGER_URL": "http://rdp-server-manager:8081",
    "SESSION_RECORDER_URL": "http://session-recorder:8093",
    "SESSION_PROCESSOR_URL": "http://session-processor:8087",
    "RDP_MONITOR_URL": "http://rdp-monitor:8091",
}


def manager(
    urls: dict[str, str], answer: dict[str, Any] | None = None
) -> tuple[IntegrationManager, list[Any]]:
    seen: list[httpx.Request] = []

    def peer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=answer or {"ok": True})

    settings = RdpControllerSettings.model_validate(
        {
            "LUCID_ENV": "test",
            "MONGODB_URL": "mongodb://db.test:27017",
            "REDIS_URL": "redis://cache.test:6379/0",
            "SERVICE_RETRY_COUNT": 1,
            **{name: "" for name in URLS},
            **urls,
        }
    )
    return IntegrationManager(settings, transport=httpx.MockTransport(peer)), seen


async def test_each_peer_client_declares_its_calls() -> None:
    calls = manager({})[0].deliverable_calls()
    assert {key: call.not_found_is_done for key, call in calls.items()} == {
        ("rdp_server_manager", "delete_server"): True,
        ("session_recorder", "start_recording"): False,
        ("session_recorder", "stop_recording"): True,
        ("session_processor", "finalize_session"): True,
        ("rdp_monitor", "start_monitoring"): False,
        ("rdp_monitor", "stop_monitoring"): True,
    }


async def test_a_peer_without_a_client_is_not_called() -> None:
    calls = manager({})[0].deliverable_calls()
    with pytest.raises(PeerNotConfigured, match="session_processor"):
        await calls[("session_processor", "finalize_session")].send({"session_id": "s-1"}, "d-1")


async def test_a_call_goes_through_the_client_created_on_first_use() -> None:
    peers, seen = manager(URLS)
    calls = peers.deliverable_calls()
    assert peers.rdp_monitor is not None  # created now, not when the calls were gathered
    assert await calls[("rdp_monitor", "stop_monitoring")].send({"session_id": "s-1"}, "d-1") is None
    assert [(r.url.host, r.url.path, r.headers["idempotency-key"]) for r in seen] == [
        ("rdp-monitor", "/api/v1/monitoring/sessions/s-1/stop", "d-1")
    ]
    await peers.close_all()


async def test_finalize_is_noted_with_the_merkle_root() -> None:
    peers, _ = manager(URLS, {"session_id": "s-1", "merkle_root": "ab" * 32, "finalized": True})
    finalize = peers.deliverable_calls()[("session_processor", "finalize_session")]
    assert await finalize.send({"session_id": "s-1"}, "d-1") == "merkle_root=" + "ab" * 32
    await peers.close_all()
