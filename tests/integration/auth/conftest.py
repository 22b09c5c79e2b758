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
from tests.support.app import running_app, test_settings

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
