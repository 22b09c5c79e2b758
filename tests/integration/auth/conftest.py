"""Fixtures of the authentication / authorisation / hostile-input tests.

The app runs with its background loops "quiet": long intervals, and the client is handed out
only once every loop has finished its first round. A test then never shuts the app down while
a loop is in the middle of a round (a Redis command in flight can absorb the cancellation and
leave the loop sleeping through the stop bound), and no loop writes to MongoDB while a test
counts documents.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from rdp_controller.config import RdpControllerSettings
from tests.integration.auth.refused_requests import SESSIONS
from tests.support.app import SERVICE, register_server, running_app, test_settings

QUIET_LOOPS: dict[str, Any] = {
    "RDP_CONTROLLER_REAPER_INTERVAL": 3600,
    "RDP_CONTROLLER_RECONCILE_INTERVAL": 3600,
    "RDP_CONTROLLER_PROBE_INTERVAL": 3600,
    "RDP_CONTROLLER_OUTBOX_INTERVAL": 3600,
}
_UNSETTLED = ("starting", "waiting for MongoDB")


def quiet_settings(mongo_url: str, redis_url: str, **overrides: Any) -> RdpControllerSettings:
    return test_settings(mongo_url, redis_url, **{**QUIET_LOOPS, **overrides})


async def loops_settled(app: FastAPI, timeout: float = 15.0) -> None:  # noqa: ASYNC109
    """Wait until every background loop has finished its first round (it is then asleep)."""
    background = app.state.runtime.background
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = list(background.states.values())
        if states and all(state.status not in _UNSETTLED for state in states):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"background loops did not settle: {background.summary()}")


@asynccontextmanager
async def quiet_app(settings: RdpControllerSettings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """``running_app`` whose background loops have settled."""
    async with running_app(settings) as (app, client):
        await loops_settled(app)
        yield app, client


SettingsFactory = Callable[..., RdpControllerSettings]
AppFactory = Callable[[RdpControllerSettings], AbstractAsyncContextManager[tuple[FastAPI, httpx.AsyncClient]]]


@pytest.fixture
def settings_factory(mongo_url: str, redis_url: str) -> SettingsFactory:
    """``settings_factory(**overrides)``: isolated, quiet settings."""

    def make(**overrides: Any) -> RdpControllerSettings:
        return quiet_settings(mongo_url, redis_url, **overrides)

    return make


@pytest.fixture
def app_factory() -> AppFactory:
    """``async with app_factory(settings) as (app, client)``: the app, its loops settled."""
    return quiet_app


@pytest.fixture
def settings(settings_factory: SettingsFactory) -> RdpControllerSettings:
    return settings_factory()


@pytest.fixture
async def app_client(settings: RdpControllerSettings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with quiet_app(settings) as pair:
        yield pair


HOSTILE_INPUT_COLLECTIONS = ("rdp_sessions", "rdp_servers", "rdp_session_events", "rdp_connections")


class Ledger:
    """Document counts of the collections a bad request could write to."""

    def __init__(self, app: FastAPI) -> None:
        self.database = app.state.runtime.store.database

    async def counts(self) -> dict[str, int]:
        return {name: await self.database[name].count_documents({}) for name in HOSTILE_INPUT_COLLECTIONS}


@pytest.fixture
async def world(app_client: tuple[FastAPI, httpx.AsyncClient]) -> AsyncIterator[dict[str, Any]]:
    """The hostile-input tests' target: a server and a live session; yields their ids, and asserts at
    the end that nothing changed (the documents of ``rdp_sessions`` and ``rdp_servers``, and the
    counts of the events and connections)."""
    app, client = app_client
    server = await register_server(client, capacity=20)
    created = await client.post(SESSIONS, json={"user_id": "alice"}, headers=SERVICE)
    assert created.status_code == 201, created.text
    ledger = Ledger(app)
    before = await ledger.counts()
    session_before = await ledger.database["rdp_sessions"].find_one({}, {"_id": 0})
    server_before = await ledger.database["rdp_servers"].find_one({}, {"_id": 0})
    yield {"server_id": server["server_id"], "session_id": created.json()["session_id"]}
    assert await ledger.counts() == before, "a refused request wrote to MongoDB"
    assert await ledger.database["rdp_sessions"].find_one({}, {"_id": 0}) == session_before
    assert await ledger.database["rdp_servers"].find_one({}, {"_id": 0}) == server_before
