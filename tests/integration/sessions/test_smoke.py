from __future__ import annotations

import httpx

from tests.support.app import SERVICE, auth, register_server


async def test_create_connect_terminate(client: httpx.AsyncClient) -> None:
    server = await register_server(client)
    created = await client.post("/api/v1/sessions", json={"user_id": "alice"}, headers=SERVICE)
    assert created.status_code == 201, created.text
    session = created.json()
    assert session["server_id"] == server["server_id"] and session["status"] == "ready"
    alice = auth("alice", "user")
    connected = await client.post(f"/api/v1/sessions/{session['session_id']}/connect", headers=alice)
    assert connected.status_code == 200, connected.text
    ended = await client.delete(f"/api/v1/sessions/{session['session_id']}", headers=alice)
    assert ended.json()["status"] == "terminated", ended.text
