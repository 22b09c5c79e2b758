"""Authorisation: what each role may do.

``user`` sees and acts on its own sessions only - another user's session is a 404, never a 403,
so a user cannot even learn that it exists. Servers are for operators; connections (and token
redemption) for operators and services. ``service`` acts for any ``user_id``.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.support.app import OPERATOR, SERVICE, auth, register_server

pytestmark = pytest.mark.integration

ALICE = auth("alice", "user")
BOB = auth("bob", "user")
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


async def create_for(
    client: httpx.AsyncClient, user_id: str, headers: dict[str, str] = SERVICE
) -> dict[str, Any]:
    response = await client.post("/api/v1/sessions", json={"user_id": user_id}, headers=headers)
    assert response.status_code == 201, response.text
    session: dict[str, Any] = response.json()
    return session


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"code", "message", "details"}
    if code is not None:
        assert error["code"] == code, error
    return error


@pytest.fixture
async def alice_session(client: httpx.AsyncClient) -> dict[str, Any]:
    await register_server(client, capacity=20)
    return await create_for(client, "alice")


async def test_another_users_session_is_not_found(
    app_client: tuple[FastAPI, httpx.AsyncClient], alice_session: dict[str, Any]
) -> None:
    app, client = app_client
    sid = alice_session["session_id"]
    sessions = app.state.runtime.store.database["rdp_sessions"]
    before = await sessions.find_one({"session_id": sid})
    attempts = [
        ("GET", f"/api/v1/sessions/{sid}", None),
        ("DELETE", f"/api/v1/sessions/{sid}", None),
        ("POST", f"/api/v1/sessions/{sid}/connect", None),
        ("GET", f"/api/v1/sessions/{sid}/rdp", None),
        ("GET", f"/api/v1/sessions/{sid}/events", None),
        ("POST", f"/api/v1/sessions/{sid}/disconnect", None),
        ("POST", f"/api/v1/sessions/{sid}/reconnect", None),
        ("POST", f"/api/v1/sessions/{sid}/activity", {}),
        ("PUT", f"/api/v1/sessions/{sid}/status", {"status": "terminated", "reason": "user_request"}),
        ("GET", f"/api/v1/sessions/{sid}/metrics", None),
        ("GET", f"/api/v1/sessions/{sid}/health", None),
    ]
    for method, path, body in attempts:
        response = await client.request(method, path, json=body, headers=BOB)
        error = assert_error(response, 404, "SESSION_NOT_FOUND")
        # Indistinguishable from a session that does not exist at all.
        missing = await client.request(method, path.replace(sid, UNKNOWN_ID), json=body, headers=BOB)
        unknown = assert_error(missing, 404, "SESSION_NOT_FOUND")
        assert error["message"].replace(sid, UNKNOWN_ID) == unknown["message"], (method, path)
        assert error["details"] == unknown["details"], (method, path)
        assert "alice" not in error["message"], (method, path, error)
    after = await sessions.find_one({"session_id": sid})
    assert after == before, "bob's attempts changed alice's session"
    # Alice still owns a live session she can use.
    mine = await client.get(f"/api/v1/sessions/{sid}", headers=ALICE)
    assert mine.status_code == 200 and mine.json()["status"] == "ready", mine.text
    connected = await client.post(f"/api/v1/sessions/{sid}/connect", headers=ALICE)
    assert connected.status_code == 200, connected.text
    events = await client.get(f"/api/v1/sessions/{sid}/events", headers=ALICE)
    assert events.status_code == 200 and events.json()["items"], events.text
    rdp = await client.get(f"/api/v1/sessions/{sid}/rdp", headers=ALICE)
    assert rdp.status_code == 200, rdp.text


async def test_user_lists_only_its_own_sessions(client: httpx.AsyncClient) -> None:
    await register_server(client, capacity=20)
    alice_ids = {(await create_for(client, "alice"))["session_id"] for _ in range(2)}
    bob_ids = {(await create_for(client, "bob"))["session_id"]}

    def ids(response: httpx.Response) -> set[str]:
        assert response.status_code == 200, response.text
        return {item["session_id"] for item in response.json()["items"]}

    assert ids(await client.get("/api/v1/sessions", headers=ALICE)) == alice_ids
    assert ids(await client.get("/api/v1/sessions", headers=BOB)) == bob_ids
    # Naming another user changes nothing: the filter is the token's subject.
    assert ids(await client.get("/api/v1/sessions", params={"user_id": "bob"}, headers=ALICE)) == set()
    assert ids(await client.get("/api/v1/sessions", params={"user_id": "alice"}, headers=ALICE)) == alice_ids
    by_server = await client.get(
        "/api/v1/sessions", params={"status": "ready", "user_id": "bob"}, headers=ALICE
    )
    assert ids(by_server) == set()
    assert ids(await client.get("/api/v1/sessions", headers=auth("carol", "user"))) == set()
    # Operators and services see everyone's, and may filter by user.
    assert ids(await client.get("/api/v1/sessions", headers=OPERATOR)) == alice_ids | bob_ids
    assert ids(await client.get("/api/v1/sessions", headers=SERVICE)) == alice_ids | bob_ids
    assert ids(await client.get("/api/v1/sessions", params={"user_id": "bob"}, headers=OPERATOR)) == bob_ids


async def test_user_reaches_no_server_route(client: httpx.AsyncClient) -> None:
    server = await register_server(client)
    sid = server["server_id"]
    body = {"name": "xrdp-9", "address": "10.9.9.9"}
    attempts = [
        ("POST", "/api/v1/servers", body),
        ("GET", "/api/v1/servers", None),
        ("GET", f"/api/v1/servers/{sid}", None),
        ("PATCH", f"/api/v1/servers/{sid}", {"capacity": 1}),
        ("DELETE", f"/api/v1/servers/{sid}", None),
        ("POST", f"/api/v1/servers/{sid}/probe", None),
    ]
    for headers in (ALICE, SERVICE):
        for method, path, payload in attempts:
            response = await client.request(method, path, json=payload, headers=headers)
            assert_error(response, 403, "OPERATOR_REQUIRED")
    # Nothing changed.
    listed = await client.get("/api/v1/servers", headers=OPERATOR)
    assert [(s["server_id"], s["capacity"]) for s in listed.json()["items"]] == [(sid, server["capacity"])]


async def test_user_reaches_no_connection_route(client: httpx.AsyncClient) -> None:
    attempts = [
        ("GET", "/api/v1/connections", None),
        ("GET", "/api/v1/connections/health", None),
        ("GET", "/api/v1/connections/metrics", None),
        ("POST", "/api/v1/connections/redeem", {"token": "rct_" + "a" * 43}),
    ]
    for method, path, payload in attempts:
        response = await client.request(method, path, json=payload, headers=ALICE)
        assert_error(response, 403, "PRIVILEGED_REQUIRED")
    for method, path, payload in attempts[:3]:
        for headers in (OPERATOR, SERVICE):
            response = await client.request(method, path, json=payload, headers=headers)
            assert response.status_code == 200, (path, response.text)


async def test_service_creates_for_any_user(client: httpx.AsyncClient) -> None:
    await register_server(client, capacity=20)
    for user_id in ("alice", "bob", "user@example.org"):
        session = await create_for(client, user_id, SERVICE)
        assert session["user_id"] == user_id
    assert (await create_for(client, "dave", OPERATOR))["user_id"] == "dave"
    # Privileged callers must say for whom.
    missing = await client.post("/api/v1/sessions", json={}, headers=SERVICE)
    error = assert_error(missing, 422, "VALIDATION_ERROR")
    assert "user_id" in error["message"]


async def test_user_creates_for_itself_only(app_client: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, client = app_client
    await register_server(client, capacity=20)
    own = await client.post("/api/v1/sessions", json={}, headers=ALICE)
    assert own.status_code == 201, own.text
    assert own.json()["user_id"] == "alice"
    explicit = await client.post("/api/v1/sessions", json={"user_id": "alice"}, headers=ALICE)
    assert explicit.status_code == 201 and explicit.json()["user_id"] == "alice", explicit.text

    sessions = app.state.runtime.store.database["rdp_sessions"]
    before = await sessions.count_documents({})
    other = await client.post("/api/v1/sessions", json={"user_id": "bob"}, headers=ALICE)
    error = assert_error(other, 403, "FORBIDDEN")
    assert "user_id" in error["message"]
    assert await sessions.count_documents({}) == before
    assert await sessions.count_documents({"user_id": "bob"}) == 0


async def test_user_may_not_redeem_or_manage_even_its_own(client: httpx.AsyncClient) -> None:
    """Roles are not implied by ownership: a user's own session gives it no operator route."""
    await register_server(client)
    session = await create_for(client, "alice")
    connected = await client.post(f"/api/v1/sessions/{session['session_id']}/connect", headers=ALICE)
    assert connected.status_code == 200, connected.text
    redeem = await client.post(
        "/api/v1/connections/redeem", json={"token": connected.json()["token"]}, headers=ALICE
    )
    assert_error(redeem, 403, "PRIVILEGED_REQUIRED")
    # The refused attempt did not consume the token.
    redeemed = await client.post(
        "/api/v1/connections/redeem", json={"token": connected.json()["token"]}, headers=SERVICE
    )
    assert redeemed.status_code == 200, redeemed.text


async def test_operator_acts_on_any_session(client: httpx.AsyncClient, alice_session: dict[str, Any]) -> None:
    sid = alice_session["session_id"]
    seen = await client.get(f"/api/v1/sessions/{sid}", headers=OPERATOR)
    assert seen.status_code == 200 and seen.json()["user_id"] == "alice", seen.text
    ended = await client.delete(f"/api/v1/sessions/{sid}", headers=OPERATOR)
    assert ended.status_code == 200, ended.text
    assert ended.json()["status"] == "terminated"
    assert ended.json()["termination_reason"] == "admin"
    events = await client.get(f"/api/v1/sessions/{sid}/events", headers=OPERATOR)
    assert events.json()["items"][-1]["actor"] == "ops", events.text


async def test_user_terminates_its_own_with_user_request(
    client: httpx.AsyncClient, alice_session: dict[str, Any]
) -> None:
    ended = await client.delete(f"/api/v1/sessions/{alice_session['session_id']}", headers=ALICE)
    assert ended.status_code == 200, ended.text
    assert ended.json()["termination_reason"] == "user_request"
