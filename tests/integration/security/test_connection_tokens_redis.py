"""ConnectionTokenStore against a real Redis: one use only, hash-only storage, expiry."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from common.errors import Unauthorized
from security.connection_tokens import TOKEN_INVALID, ConnectionTokenStore, generate, hash_token

pytestmark = pytest.mark.integration


@pytest.fixture
def store(redis: Redis, prefix: str) -> ConnectionTokenStore:
    return ConnectionTokenStore(redis, key_prefix=prefix)


async def assert_invalid(store: ConnectionTokenStore, token: str) -> None:
    with pytest.raises(Unauthorized) as caught:
        await store.redeem(token)
    assert caught.value.code == TOKEN_INVALID
    assert caught.value.message == "connection token is invalid, expired or already used"
    assert token not in caught.value.message


async def test_issue_and_redeem(store: ConnectionTokenStore) -> None:
    before = datetime.now(UTC)
    token, expires_at = await store.issue("s-1", {"server": "rdp-01", "port": 3389}, ttl=120)
    assert before + timedelta(seconds=119) <= expires_at <= datetime.now(UTC) + timedelta(seconds=121)
    assert await store.redeem(token) == {"server": "rdp-01", "port": 3389, "session_id": "s-1"}


async def test_a_token_works_once(store: ConnectionTokenStore) -> None:
    token, _ = await store.issue("s-1", {}, ttl=120)
    await store.redeem(token)
    await assert_invalid(store, token)


async def test_only_the_hash_is_stored(redis: Redis, store: ConnectionTokenStore, prefix: str) -> None:
    token, _ = await store.issue("s-1", {"user_id": "alice"}, ttl=60)
    keys = sorted([key async for key in redis.scan_iter(match=f"{prefix}*")])
    # The token's record, and the session's set of its tokens' hashes (for revoking them).
    assert keys == [f"{prefix}{hash_token(token)}".encode(), f"{prefix}session:s-1".encode()]
    assert await redis.smembers(keys[1]) == {hash_token(token).encode()}
    assert 0 < await redis.ttl(keys[1]) <= 60
    raw = await redis.get(keys[0])
    assert raw is not None
    secret_part = token.split("_", 1)[1]
    assert secret_part.encode() not in raw
    assert secret_part.encode() not in keys[0]
    assert json.loads(raw) == {"session_id": "s-1", "payload": {"user_id": "alice"}}
    assert 0 < await redis.ttl(keys[0]) <= 60


async def test_unknown_token_is_refused(store: ConnectionTokenStore) -> None:
    await assert_invalid(store, generate()[0])


async def test_expired_token_is_refused(redis: Redis, store: ConnectionTokenStore, prefix: str) -> None:
    token, _ = await store.issue("s-1", {}, ttl=60)
    await redis.pexpire(f"{prefix}{hash_token(token)}", 50)
    await asyncio.sleep(0.2)
    await assert_invalid(store, token)


async def test_ttl_expiry_end_to_end(store: ConnectionTokenStore) -> None:
    token, _ = await store.issue("s-1", {}, ttl=1)
    await asyncio.sleep(1.2)
    await assert_invalid(store, token)


async def test_concurrent_redemptions_only_one_wins(store: ConnectionTokenStore) -> None:
    token, _ = await store.issue("s-1", {"n": 1}, ttl=60)
    results = await asyncio.gather(*(store.redeem(token) for _ in range(20)), return_exceptions=True)
    winners = [result for result in results if isinstance(result, dict)]
    assert winners == [{"n": 1, "session_id": "s-1"}]
    assert all(isinstance(result, Unauthorized) for result in results if not isinstance(result, dict))


async def test_stores_with_different_prefixes_are_separate(redis: Redis, prefix: str) -> None:
    first = ConnectionTokenStore(redis, key_prefix=f"{prefix}a:")
    second = ConnectionTokenStore(redis, key_prefix=f"{prefix}b:")
    token, _ = await first.issue("s-1", {}, ttl=60)
    await assert_invalid(second, token)
    assert (await first.redeem(token))["session_id"] == "s-1"


async def test_works_with_decoded_responses(redis_url: str, prefix: str) -> None:
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        store = ConnectionTokenStore(client, key_prefix=prefix)
        token, _ = await store.issue("s-9", {"a": [1, 2]}, ttl=30)
        assert await store.redeem(token) == {"a": [1, 2], "session_id": "s-9"}
    finally:
        await client.aclose()


async def test_revoking_a_session_invalidates_its_unused_tokens(store: ConnectionTokenStore) -> None:
    first, _ = await store.issue("s-1", {}, ttl=60)
    second, _ = await store.issue("s-1", {}, ttl=60)
    other, _ = await store.issue("s-2", {}, ttl=60)
    assert await store.revoke_session("s-1") == 2
    await assert_invalid(store, first)
    await assert_invalid(store, second)
    assert (await store.redeem(other))["session_id"] == "s-2"
    assert await store.revoke_session("s-1") == 0
