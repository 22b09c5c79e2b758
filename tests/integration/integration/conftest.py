"""Fixtures of the integration-layer tests: a throw-away MongoDB database and mock peers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from common.backends import MongoDocument
from rdp_controller.config import RdpControllerSettings
from rdp_controller.storage.mongo import MongoStore

SECRET = "integration-secret-" + "z" * 40
PEER_URLS = {
    "RDP_SERVER_MANAGER_URL": "http://rdp-server-manager.test",
    "SESSION_RECORDER_URL": "http://session-recorder.test",
    "SESSION_PROCESSOR_URL": "http://session-processor.test",
    "RDP_MONITOR_URL": "http://rdp-monitor.test",
}


def layer_settings(mongo_url: str, redis_url: str, **values: Any) -> RdpControllerSettings:
    base: dict[str, Any] = {
        "LUCID_ENV": "test",
        "MONGODB_URL": mongo_url,
        "REDIS_URL": redis_url,
        "JWT_SECRET_KEY": SECRET,
        "SERVICE_TIMEOUT_SECONDS": 2.0,
        "SERVICE_RETRY_COUNT": 1,
        "SERVICE_RETRY_DELAY_SECONDS": 0,
        **PEER_URLS,
    }
    return RdpControllerSettings.model_validate({**base, **values})


@pytest.fixture
async def database(mongo_url: str) -> AsyncIterator[AsyncDatabase[MongoDocument]]:
    client: AsyncMongoClient[MongoDocument] = AsyncMongoClient(mongo_url, tz_aware=True)
    name = f"test_integration_{uuid.uuid4().hex[:12]}"
    try:
        yield client[name]
    finally:
        await client.drop_database(name)
        await client.close()


@pytest.fixture
async def store(database: AsyncDatabase[MongoDocument]) -> MongoStore:
    store = MongoStore(database, event_retention_days=1)
    await store.ensure_indexes()
    return store
