"""Integration tier: the app in-process against the real MongoDB-compatible server and Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from rdp_controller.config import RdpControllerSettings
from tests.support.app import running_app, test_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(mongo_url: str, redis_url: str) -> RdpControllerSettings:
    return test_settings(mongo_url, redis_url)


@pytest.fixture
async def app_client(settings: RdpControllerSettings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with running_app(settings) as pair:
        yield pair


@pytest.fixture
async def client(app_client: tuple[FastAPI, httpx.AsyncClient]) -> httpx.AsyncClient:
    return app_client[1]
