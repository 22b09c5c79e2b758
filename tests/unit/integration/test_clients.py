"""Each peer client calls the contract's paths with the contract's bodies."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from rdp_controller.integration.errors import ServiceError, ServiceNotFoundError
from rdp_controller.integration.rdp_monitor_client import RdpMonitorClient
from rdp_controller.integration.rdp_server_manager_client import RdpServerManagerClient
from rdp_controller.integration.service_base import ServiceClientBase
from rdp_controller.integration.session_processor_client import SessionProcessorClient
from rdp_controller.integration.session_recorder_client import SessionRecorderClient

SID = "5f0c8a9e-0a43-4c1e-9b0e-3f8f5b0d2a11"


class Recorder:
    def __init__(self, answer: Any = None, status: int = 200) -> None:
        self.requests: list[httpx.Request] = []
        self.answer = {"ok": True} if answer is None else answer
        self.status = status

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.status, json=self.answer)

    @property
    def last(self) -> tuple[str, str, Any, str | None]:
        request = self.requests[-1]
        body = json.loads(request.content) if request.content else None
        return request.method, request.url.raw_path.decode(), body, request.headers.get("idempotency-key")


def build(cls: type[ServiceClientBase], recorder: Recorder) -> Any:
    async def no_sleep(_: float) -> None:
        return None

    return cls(
        "http://peer.test:9000/",
        timeout=1.0,
        retry_count=1,
        retry_delay=0.0,
        transport=httpx.MockTransport(recorder),
        peer_name=cls.__name__,
        sleep=no_sleep,
    )


Call = Callable[[Any], Awaitable[Any]]
CASES: list[tuple[type[ServiceClientBase], Call, str, str, Any]] = [
    (
        RdpServerManagerClient,
        lambda c: c.create_server(user_id="alice", session_id=SID, idempotency_key="k"),
        "POST",
        "/servers",
        {"user_id": "alice", "session_id": SID},
    ),
    (
        RdpServerManagerClient,
        lambda c: c.create_server(
            user_id="alice",
            session_id=SID,
            display_config={"resolution": "1920x1080"},
            resource_limits={"cpu": 2},
            idempotency_key="k",
        ),
        "POST",
        "/servers",
        {
            "user_id": "alice",
            "session_id": SID,
            "display_config": {"resolution": "1920x1080"},
            "resource_limits": {"cpu": 2},
        },
    ),
    (RdpServerManagerClient, lambda c: c.get_server("srv-1"), "GET", "/servers/srv-1", None),
    (
        RdpServerManagerClient,
        lambda c: c.start_server("srv-1", idempotency_key="k"),
        "POST",
        "/servers/srv-1/start",
        None,
    ),
    (
        RdpServerManagerClient,
        lambda c: c.stop_server("srv-1", idempotency_key="k"),
        "POST",
        "/servers/srv-1/stop",
        None,
    ),
    (
        RdpServerManagerClient,
        lambda c: c.restart_server("srv-1", idempotency_key="k"),
        "POST",
        "/servers/srv-1/restart",
        None,
    ),
    (
        RdpServerManagerClient,
        lambda c: c.delete_server("srv-1", idempotency_key="k"),
        "DELETE",
        "/servers/srv-1",
        None,
    ),
    (
        SessionRecorderClient,
        lambda c: c.start_recording(SID, owner_address="alice", metadata={"a": 1}, idempotency_key="k"),
        "POST",
        "/recordings/start",
        {"session_id": SID, "owner_address": "alice", "metadata": {"a": 1}},
    ),
    (
        SessionRecorderClient,
        lambda c: c.stop_recording(SID, idempotency_key="k"),
        "POST",
        f"/recordings/{SID}/stop",
        None,
    ),
    (SessionRecorderClient, lambda c: c.get_recording(SID), "GET", f"/recordings/{SID}", None),
    (
        SessionProcessorClient,
        lambda c: c.finalize_session(SID, idempotency_key="k"),
        "POST",
        f"/api/v1/sessions/{SID}/finalize",
        None,
    ),
    (
        RdpMonitorClient,
        lambda c: c.start_monitoring(SID, session_config={"color_depth": 24}, idempotency_key="k"),
        "POST",
        "/api/v1/monitoring/start",
        {"session_id": SID, "session_config": {"color_depth": 24}},
    ),
    (
        RdpMonitorClient,
        lambda c: c.stop_monitoring(SID, idempotency_key="k"),
        "POST",
        f"/api/v1/monitoring/sessions/{SID}/stop",
        None,
    ),
    (
        RdpMonitorClient,
        lambda c: c.get_session_metrics(SID),
        "GET",
        f"/api/v1/monitoring/sessions/{SID}/metrics",
        None,
    ),
]


@pytest.mark.parametrize(("cls", "call", "method", "path", "body"), CASES)
async def test_contract_paths_and_bodies(
    cls: type[ServiceClientBase], call: Call, method: str, path: str, body: Any
) -> None:
    recorder = Recorder({"server_id": "srv-9", "status": "running"})
    client = build(cls, recorder)
    answer = await call(client)
    sent_method, sent_path, sent_body, key = recorder.last
    assert (sent_method, sent_path, sent_body) == (method, path, body)
    assert key == ("k" if method in ("POST", "DELETE") else None)
    assert answer == {"server_id": "srv-9", "status": "running"}
    await client.close()


async def test_create_server_answer_fields() -> None:
    created = {
        "server_id": "srv-1",
        "status": "running",
        "port": 13389,
        "created_at": "2025-01-01T00:00:00Z",
        "connection_info": {"host": "rdp-xrdp-1", "port": 13389},
    }
    client = build(RdpServerManagerClient, Recorder(created, status=201))
    assert await client.create_server(user_id="u", session_id=SID) == created
    await client.close()


@pytest.mark.parametrize(
    ("created", "endpoint"),
    [
        ({"port": 13389, "connection_info": {"host": "rdp-xrdp-1"}}, ("rdp-xrdp-1", 13389)),
        ({"connection_info": {"ip": "10.0.0.7", "port": "3390"}}, ("10.0.0.7", 3390)),
        ({"port": 3389}, ("peer.test", 3389)),  # no host named: the manager's own
    ],
)
async def test_endpoint_of_a_created_server(created: dict[str, Any], endpoint: tuple[str, int]) -> None:
    client = build(RdpServerManagerClient, Recorder())
    assert client.endpoint({"server_id": "srv-1", **created}) == endpoint
    await client.close()


@pytest.mark.parametrize("port", [None, True, "13389a"])
async def test_endpoint_without_a_usable_port_is_refused(port: Any) -> None:
    client = build(RdpServerManagerClient, Recorder())
    with pytest.raises(ValueError, match="no usable port"):
        client.endpoint({"server_id": "srv-1", "port": port, "connection_info": {"host": "h"}})
    await client.close()


async def test_create_server_without_server_id_is_an_error() -> None:
    client = build(RdpServerManagerClient, Recorder({"status": "running"}))
    with pytest.raises(ServiceError, match="server_id"):
        await client.create_server(user_id="u", session_id=SID)
    await client.close()


@pytest.mark.parametrize("answer", [[{"server_id": "a"}], {"servers": [{"server_id": "a"}]}])
async def test_list_servers_accepts_a_list_or_an_envelope(answer: Any) -> None:
    recorder = Recorder(answer)
    client = build(RdpServerManagerClient, recorder)
    assert await client.list_servers() == [{"server_id": "a"}]
    assert recorder.last[:2] == ("GET", "/servers")
    await client.close()


async def test_list_servers_refuses_garbage() -> None:
    client = build(RdpServerManagerClient, Recorder({"servers": "nope"}))
    with pytest.raises(ServiceError):
        await client.list_servers()
    await client.close()


async def test_finalize_404_is_not_found() -> None:
    client = build(SessionProcessorClient, Recorder({"detail": "unknown session"}, status=404))
    with pytest.raises(ServiceNotFoundError):
        await client.finalize_session(SID)
    await client.close()


async def test_identifiers_are_escaped_in_paths() -> None:
    recorder = Recorder()
    client = build(RdpServerManagerClient, recorder)
    await client.get_server("../admin")
    assert recorder.last[1] == "/servers/..%2Fadmin"
    await client.close()
