"""RdpServerManagerClient calls rdp-server-manager's contract paths with its bodies, reads what a created
server answers (its id, where it is reached) and escapes identifiers in paths."""

from __future__ import annotations

from typing import Any

import pytest

from rdp_controller.integration.errors import ServiceError
from rdp_controller.integration.rdp_server_manager_client import RdpServerManagerClient
from tests.unit.rdp_controller.integration.peer_recorder import SID, Call, Recorder, build, check_contract

CASES: list[tuple[Call, str, str, Any]] = [
    (
        lambda c: c.create_server(user_id="alice", session_id=SID, idempotency_key="k"),
        "POST",
        "/servers",
        {"user_id": "alice", "session_id": SID},
    ),
    (
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
    (lambda c: c.get_server("srv-1"), "GET", "/servers/srv-1", None),
    (lambda c: c.start_server("srv-1", idempotency_key="k"), "POST", "/servers/srv-1/start", None),
    (lambda c: c.stop_server("srv-1", idempotency_key="k"), "POST", "/servers/srv-1/stop", None),
    (lambda c: c.restart_server("srv-1", idempotency_key="k"), "POST", "/servers/srv-1/restart", None),
    (lambda c: c.delete_server("srv-1", idempotency_key="k"), "DELETE", "/servers/srv-1", None),
]


@pytest.mark.parametrize(("call", "method", "path", "body"), CASES)
async def test_contract_paths_and_bodies(call: Call, method: str, path: str, body: Any) -> None:
    await check_contract(RdpServerManagerClient, call, method, path, body)


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


async def test_identifiers_are_escaped_in_paths() -> None:
    recorder = Recorder()
    client = build(RdpServerManagerClient, recorder)
    await client.get_server("../admin")
    assert recorder.last[1] == "/servers/..%2Fadmin"
    await client.close()
