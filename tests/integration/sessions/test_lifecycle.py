"""A session through its whole life over the API, every illegal move refused, idempotent create."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from rdp_controller.models import SessionStatus
from rdp_controller.session_states import CONTROLLER_ONLY, TRANSITIONS
from tests.support.app import SERVICE, auth, register_server

ALICE = auth("alice", "user")


async def create(client: httpx.AsyncClient, user: str = "alice", **body: Any) -> dict[str, Any]:
    response = await client.post("/api/v1/sessions", json={"user_id": user, **body}, headers=SERVICE)
    assert response.status_code == 201, response.text
    session: dict[str, Any] = response.json()
    return session


async def call(client: httpx.AsyncClient, method: str, path: str, expected: int = 200, **kw: Any) -> Any:
    response = await client.request(method, path, headers=kw.pop("headers", SERVICE), **kw)
    assert response.status_code == expected, response.text
    return (
        response.json()
        if response.headers.get("content-type", "").startswith("application/json")
        else response
    )


async def test_full_lifecycle_with_events(client: httpx.AsyncClient) -> None:
    server = await register_server(client, address="10.0.0.7", port=3390)
    config = {"display_resolution": "1280x720", "color_depth": 16, "audio_enabled": True, "idle_timeout": 600}
    session = await create(client, session_config=config)
    sid = session["session_id"]
    assert session["status"] == "ready" and session["server_id"] == server["server_id"]
    assert session["session_config"]["idle_timeout"] == 600
    assert session["session_config"]["disconnect_timeout"] == 900  # service default filled in
    assert session["max_deadline"] and session["idle_deadline"] and session["version"] == 1

    descriptor = await call(client, "POST", f"/api/v1/sessions/{sid}/connect", headers=ALICE)
    assert (descriptor["address"], descriptor["port"]) == ("10.0.0.7", 3390)
    assert descriptor["token"].startswith("rct_") and descriptor["connection_id"] == session["connection_id"]
    assert "full address:s:10.0.0.7:3390" in descriptor["rdp_file"]
    assert "desktopwidth:i:1280" in descriptor["rdp_file"] and "session bpp:i:16" in descriptor["rdp_file"]
    assert f"loadbalanceinfo:s:{descriptor['token']}" in descriptor["rdp_file"]

    rdp = await call(client, "GET", f"/api/v1/sessions/{sid}/rdp", headers=ALICE)
    assert rdp.headers["content-type"] == "application/x-rdp"
    assert "attachment" in rdp.headers["content-disposition"] and "loadbalanceinfo" not in rdp.text

    active = await call(client, "GET", f"/api/v1/sessions/{sid}", headers=ALICE)
    assert active["status"] == "active" and active["started_at"]
    idle = await call(client, "PUT", f"/api/v1/sessions/{sid}/status", json={"status": "idle"})
    assert idle["status"] == "idle"
    back = await call(
        client, "POST", f"/api/v1/sessions/{sid}/activity", json={"bytes_in": 10, "bytes_out": 20}
    )
    assert back["status"] == "active"
    suspended = await call(client, "POST", f"/api/v1/sessions/{sid}/disconnect", headers=ALICE)
    assert (
        suspended["status"] == "suspended"
        and suspended["disconnect_deadline"]
        and not suspended["idle_deadline"]
    )
    again = await call(client, "POST", f"/api/v1/sessions/{sid}/reconnect", headers=ALICE)
    assert again["server_id"] == server["server_id"] and again["connection_id"] != session["connection_id"]
    ended = await call(client, "DELETE", f"/api/v1/sessions/{sid}", headers=ALICE)
    assert ended["status"] == "terminated" and ended["termination_reason"] == "user_request"
    assert ended["terminated_at"] and ended["max_deadline"] is None
    assert (await call(client, "DELETE", f"/api/v1/sessions/{sid}", headers=ALICE))["version"] == ended[
        "version"
    ]

    events = (await call(client, "GET", f"/api/v1/sessions/{sid}/events", headers=ALICE))["items"]
    moves = [(e["from_status"], e["to_status"]) for e in events]
    assert moves == [
        (None, "ready"),  # created straight in ready: no move through creating happened
        ("ready", "active"),
        ("active", "idle"),
        ("idle", "active"),
        ("active", "suspended"),
        ("suspended", "active"),
        ("active", "terminated"),
    ]
    assert events[-1]["reason"] == "user_request" and events[-1]["actor"] == "alice"

    metrics = await call(client, "GET", f"/api/v1/sessions/{sid}/metrics", headers=ALICE)
    assert (
        metrics["connections"] == 2
        and metrics["bytes_in"] == 10
        and metrics["monitor"]["status"] == "not_configured"
    )
    health = await call(client, "GET", f"/api/v1/sessions/{sid}/health", headers=ALICE)
    assert health["status"] == "terminated" and health["healthy"] is False
    listed = await call(client, "GET", "/api/v1/servers", headers=auth("ops", "operator"))
    assert listed["items"][0]["live_sessions"] == 0  # the slot came back


async def session_in(client: httpx.AsyncClient, status: SessionStatus, user: str) -> str:
    """A session brought to ``status`` through the API."""
    sid = (await create(client, user=user))["session_id"]
    steps = {
        SessionStatus.READY: [],
        SessionStatus.ACTIVE: [("POST", "connect")],
        SessionStatus.IDLE: [("POST", "connect"), ("PUT", "idle")],
        SessionStatus.SUSPENDED: [("POST", "connect"), ("POST", "disconnect")],
        SessionStatus.TERMINATED: [("DELETE", "")],
    }[status]
    for method, what in steps:
        if method == "PUT":
            await call(client, "PUT", f"/api/v1/sessions/{sid}/status", json={"status": what})
        else:
            await call(client, method, f"/api/v1/sessions/{sid}" + (f"/{what}" if what else ""))
    return sid


REACHABLE = [
    SessionStatus.READY,
    SessionStatus.ACTIVE,
    SessionStatus.IDLE,
    SessionStatus.SUSPENDED,
    SessionStatus.TERMINATED,
]


async def test_every_illegal_transition_is_refused_with_the_allowed_targets(
    client: httpx.AsyncClient,
) -> None:
    await register_server(client, capacity=100)
    refused = 0
    for index, current in enumerate(REACHABLE):
        for target in SessionStatus:
            if target in TRANSITIONS[current] and target not in CONTROLLER_ONLY:
                continue
            if current is SessionStatus.TERMINATED and target is SessionStatus.TERMINATED:
                continue  # terminating a terminated session is idempotent, not a move
            sid = await session_in(client, current, user=f"u{index}")
            before = await call(client, "GET", f"/api/v1/sessions/{sid}")
            response = await client.put(
                f"/api/v1/sessions/{sid}/status", json={"status": target}, headers=SERVICE
            )
            assert response.status_code == 409, (current, target, response.text)
            error = response.json()["error"]
            assert error["code"] == "INVALID_TRANSITION"
            assert error["details"]["from"] == current.value
            assert sorted(error["details"]["allowed"]) == sorted(t.value for t in TRANSITIONS[current])
            after = await call(client, "GET", f"/api/v1/sessions/{sid}")
            assert after["version"] == before["version"] and after["status"] == current.value
            await call(client, "DELETE", f"/api/v1/sessions/{sid}")
            refused += 1
    assert refused >= 20


@pytest.mark.parametrize(
    ("setup", "action", "method"),
    [
        (SessionStatus.READY, "disconnect", "POST"),
        (SessionStatus.READY, "reconnect", "POST"),
        (SessionStatus.READY, "activity", "POST"),
        (SessionStatus.SUSPENDED, "connect", "POST"),
        (SessionStatus.SUSPENDED, "activity", "POST"),
        (SessionStatus.TERMINATED, "connect", "POST"),
        (SessionStatus.TERMINATED, "rdp", "GET"),
    ],
)
async def test_actions_refused_in_the_wrong_state(
    client: httpx.AsyncClient, setup: SessionStatus, action: str, method: str
) -> None:
    await register_server(client)
    sid = await session_in(client, setup, user="bob")
    response = await client.request(method, f"/api/v1/sessions/{sid}/{action}", headers=SERVICE)
    assert response.status_code == 409, response.text


async def test_idempotent_create(client: httpx.AsyncClient) -> None:
    await register_server(client)
    headers = {**SERVICE, "Idempotency-Key": "req-0001"}
    body = {"user_id": "carol", "session_config": {"color_depth": 32}}
    first = await client.post("/api/v1/sessions", json=body, headers=headers)
    second = await client.post("/api/v1/sessions", json=body, headers=headers)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["session_id"] == second.json()["session_id"]
    other_body = await client.post("/api/v1/sessions", json={**body, "new_session": True}, headers=headers)
    assert other_body.status_code == 422
    assert other_body.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    page = await call(client, "GET", "/api/v1/sessions?user_id=carol")
    assert len(page["items"]) == 1


async def test_create_offers_reconnect_to_a_suspended_session(client: httpx.AsyncClient) -> None:
    await register_server(client)
    sid = await session_in(client, SessionStatus.SUSPENDED, user="dave")
    offered = await client.post("/api/v1/sessions", json={"user_id": "dave"}, headers=SERVICE)
    assert offered.status_code == 200 and offered.json()["session_id"] == sid
    assert offered.json()["reconnected"] is True and offered.json()["status"] == "active"
    await call(client, "POST", f"/api/v1/sessions/{sid}/disconnect")
    fresh = await client.post(
        "/api/v1/sessions", json={"user_id": "dave", "new_session": True}, headers=SERVICE
    )
    assert fresh.status_code == 201 and fresh.json()["session_id"] != sid
    other = await client.post(
        "/api/v1/sessions",
        json={"user_id": "dave", "session_config": {"display_resolution": "800x600"}},
        headers=SERVICE,
    )
    assert other.status_code == 201 and other.json()["session_id"] not in (sid, fresh.json()["session_id"])


async def test_list_filters_and_cursor_pagination(client: httpx.AsyncClient) -> None:
    await register_server(client, capacity=50)
    created = [(await create(client, user=f"p{i % 3}"))["session_id"] for i in range(7)]
    seen: list[str] = []
    cursor = None
    while True:
        query = "/api/v1/sessions?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = await call(client, "GET", query)
        seen += [s["session_id"] for s in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(created))
    only_p0 = await call(client, "GET", "/api/v1/sessions?user_id=p0&status=ready")
    assert {s["user_id"] for s in only_p0["items"]} == {"p0"} and len(only_p0["items"]) == 3
    assert (await client.get("/api/v1/sessions?limit=201", headers=SERVICE)).status_code == 422
    bad_cursor = await client.get("/api/v1/sessions?cursor=nonsense", headers=SERVICE)
    assert bad_cursor.status_code == 422 and "cursor" in bad_cursor.json()["error"]["message"]


async def test_no_server_is_503_no_capacity_and_pinned_full_is_409(client: httpx.AsyncClient) -> None:
    none = await client.post("/api/v1/sessions", json={"user_id": "erin"}, headers=SERVICE)
    assert none.status_code == 503 and none.json()["error"]["code"] == "NO_CAPACITY"
    server = await register_server(client, capacity=1)
    await create(client, user="erin", server_id=server["server_id"])
    full = await client.post(
        "/api/v1/sessions", json={"user_id": "fay", "server_id": server["server_id"]}, headers=SERVICE
    )
    assert full.status_code == 409 and full.json()["error"]["code"] == "SERVER_FULL"
    missing = await client.post(
        "/api/v1/sessions",
        json={"user_id": "fay", "server_id": "00000000-0000-4000-8000-000000000000"},
        headers=SERVICE,
    )
    assert missing.status_code == 404
    unlabelled = await client.post(
        "/api/v1/sessions",
        json={"user_id": "fay", "session_config": {"labels": {"gpu": "yes"}}},
        headers=SERVICE,
    )
    assert unlabelled.status_code == 503


async def test_per_user_limit(client: httpx.AsyncClient) -> None:
    await register_server(client, capacity=50)
    for _ in range(3):
        await create(client, user="gail", new_session=True)
    over = await client.post(
        "/api/v1/sessions", json={"user_id": "gail", "new_session": True}, headers=SERVICE
    )
    assert over.status_code == 409 and over.json()["error"]["code"] == "USER_SESSION_LIMIT"
