"""Idempotency-Key whatever path the first create took, and every committed change's effects exactly once.

Regression tests of issue 12: a key replayed after the first create reconnected a suspended
session answered 201 with a second session; a change committed while its effects failed (the
caller answered 503) kept no event and held its slot, and a retry did not repair it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from fastapi import FastAPI
from pymongo.errors import AutoReconnect

from rdp_controller.config import RdpControllerSettings
from tests.support.app import SERVICE, register_server, running_app, test_settings

KEY = {"Idempotency-Key": "create-alice-1"}


async def events_of(client: httpx.AsyncClient, session_id: str) -> list[tuple[str | None, str]]:
    body = (await client.get(f"/api/v1/sessions/{session_id}/events", headers=SERVICE)).json()
    return [(e["from_status"], e["to_status"]) for e in body["items"]]


async def suspended_session(client: httpx.AsyncClient, user_id: str) -> str:
    """A session of ``user_id`` that was connected and dropped (direct mode: the API says so)."""
    created = await client.post("/api/v1/sessions", json={"user_id": user_id}, headers=SERVICE)
    session_id: str = created.json()["session_id"]
    assert (await client.post(f"/api/v1/sessions/{session_id}/connect", headers=SERVICE)).status_code == 200
    assert (
        await client.post(f"/api/v1/sessions/{session_id}/disconnect", headers=SERVICE)
    ).status_code == 200
    return session_id


async def test_a_key_replayed_after_a_reconnect_returns_the_reconnected_session(
    app_client: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = app_client
    await register_server(client, capacity=5)
    suspended = await suspended_session(client, "alice")

    first = await client.post("/api/v1/sessions", json={"user_id": "alice"}, headers={**SERVICE, **KEY})
    assert first.status_code == 200 and first.json()["reconnected"] is True
    assert first.json()["session_id"] == suspended
    replay = await client.post("/api/v1/sessions", json={"user_id": "alice"}, headers={**SERVICE, **KEY})
    assert replay.status_code == 200, replay.text
    assert replay.json()["session_id"] == suspended and replay.json()["reconnected"] is True
    assert await app.state.runtime.store.sessions.collection.count_documents({"user_id": "alice"}) == 1


async def test_racing_replays_of_one_key_on_two_replicas_get_one_session(
    settings: RdpControllerSettings,
) -> None:
    async with running_app(settings) as (app, first), running_app(settings) as (_b, second):
        await register_server(first, capacity=5)

        async def create(index: int) -> tuple[int, str]:
            client = first if index % 2 else second
            response = await client.post(
                "/api/v1/sessions", json={"user_id": "bob"}, headers={**SERVICE, **KEY}
            )
            return response.status_code, response.json().get("session_id", "")

        results = await asyncio.gather(*(create(i) for i in range(20)))
        assert sorted(code for code, _ in results) == [200] * 19 + [201], results
        assert len({session_id for _, session_id in results}) == 1
        assert await app.state.runtime.store.sessions.collection.count_documents({"user_id": "bob"}) == 1


async def test_a_key_whose_first_create_failed_is_free_for_the_retry(
    app_client: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    _app, client = app_client
    refused = await client.post("/api/v1/sessions", json={"user_id": "carol"}, headers={**SERVICE, **KEY})
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "NO_CAPACITY"
    await register_server(client, capacity=5)
    retried = await client.post("/api/v1/sessions", json={"user_id": "carol"}, headers={**SERVICE, **KEY})
    assert retried.status_code == 201, retried.text
    other = await client.post(
        "/api/v1/sessions", json={"user_id": "carol", "new_session": True}, headers={**SERVICE, **KEY}
    )
    assert other.status_code == 422 and other.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"


def failing_once(original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """``original``, except that its first call fails as a lost MongoDB connection would."""
    calls = 0

    async def call(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise AutoReconnect("connection lost (injected)")
        return await original(*args, **kwargs)

    return call


async def test_a_termination_whose_effects_failed_is_repaired_by_the_retry(
    app_client: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = app_client
    runtime = app.state.runtime
    server = await register_server(client, capacity=5)
    session_id = (await client.post("/api/v1/sessions", json={"user_id": "dave"}, headers=SERVICE)).json()[
        "session_id"
    ]
    runtime.store.events.append_once = failing_once(runtime.store.events.append_once)

    interrupted = await client.delete(f"/api/v1/sessions/{session_id}", headers=SERVICE)
    assert interrupted.status_code == 503  # the caller saw a failure, but the change is committed
    stored = await runtime.store.sessions.get(session_id)
    assert stored["status"] == "terminated" and len(stored["pending_transitions"]) == 1
    assert ("ready", "terminated") not in await events_of(client, session_id)

    retried = await client.delete(f"/api/v1/sessions/{session_id}", headers=SERVICE)
    assert retried.status_code == 200 and retried.json()["status"] == "terminated"
    assert await events_of(client, session_id) == [(None, "ready"), ("ready", "terminated")]
    assert (await runtime.store.sessions.get(session_id))["pending_transitions"] == []
    assert await runtime.coordination.live_count(server["server_id"]) == 0
    again = await client.delete(f"/api/v1/sessions/{session_id}", headers=SERVICE)
    assert again.status_code == 200
    assert await events_of(client, session_id) == [(None, "ready"), ("ready", "terminated")]  # once


async def test_an_interrupted_change_nobody_retries_is_settled_by_the_background_pass(
    mongo_url: str, redis_url: str
) -> None:
    settings = test_settings(mongo_url, redis_url, RDP_CONTROLLER_REAPER_INTERVAL=0.2)
    async with running_app(settings) as (app, client):
        runtime = app.state.runtime
        server = await register_server(client, capacity=5)
        warm_up = await client.post("/api/v1/sessions", json={"user_id": "frank"}, headers=SERVICE)
        assert warm_up.status_code == 201, warm_up.text  # the slot leases are trusted: creates go through
        runtime.store.events.append_once = failing_once(runtime.store.events.append_once)
        created = await client.post("/api/v1/sessions", json={"user_id": "erin"}, headers=SERVICE)
        # The session is written; its event and hooks are not (the injected failure).
        assert created.status_code == 503 and created.json()["error"]["code"] == "BACKEND_UNAVAILABLE"
        (stored,) = await runtime.store.sessions.collection.find({"user_id": "erin"}).to_list(length=None)
        assert stored["status"] == "ready" and stored["pending_transitions"]
        assert await runtime.coordination.live_count(server["server_id"]) == 2  # its slot is held

        for _ in range(200):  # the settle loop's grace is 3 backend timeouts (6 s by default)
            if await events_of(client, stored["session_id"]) == [(None, "ready")]:
                break
            await asyncio.sleep(0.1)
        assert await events_of(client, stored["session_id"]) == [(None, "ready")]
        assert (await runtime.store.sessions.get(stored["session_id"]))["pending_transitions"] == []


async def test_a_key_whose_create_was_written_but_answered_503_returns_that_session(
    app_client: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = app_client
    runtime = app.state.runtime
    await register_server(client, capacity=5)
    runtime.store.events.append_once = failing_once(runtime.store.events.append_once)
    first = await client.post("/api/v1/sessions", json={"user_id": "gina"}, headers={**SERVICE, **KEY})
    assert first.status_code == 503  # written, its effects interrupted
    (written,) = await runtime.store.sessions.collection.find({"user_id": "gina"}).to_list(length=None)
    replay = await client.post("/api/v1/sessions", json={"user_id": "gina"}, headers={**SERVICE, **KEY})
    assert replay.status_code == 200, replay.text
    assert replay.json()["session_id"] == written["session_id"]  # not a second session
    assert await runtime.store.sessions.collection.count_documents({"user_id": "gina"}) == 1
