"""The backend clients (common/backends.py): the MongoDB client's operation timeout."""

from __future__ import annotations

from common.backends import create_mongo_client


async def test_the_mongo_client_bounds_every_operation() -> None:
    client = create_mongo_client("mongodb://127.0.0.1:1/", timeout_seconds=1.5, app_name="t")
    try:
        options = client.options
        assert options.timeout == 1.5  # timeoutMS: client-side operation timeout (CSOT)
        assert options.server_selection_timeout == 1.5
    finally:
        await client.close()
