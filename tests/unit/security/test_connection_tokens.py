"""Connection tokens without a server: format, hashing, argument checks, Redis failures."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from common.errors import BackendUnavailable, Unauthorized
from security.connection_tokens import (
    TOKEN_INVALID,
    TOKEN_PATTERN,
    ConnectionTokenStore,
    generate,
    hash_token,
)
from security.redaction import CONNECTION_TOKEN_PREFIX, RedactingFilter


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
async def unreachable_store() -> AsyncIterator[ConnectionTokenStore]:
    client = Redis.from_url(f"redis://127.0.0.1:{unused_port()}/0", socket_connect_timeout=1)
    yield ConnectionTokenStore(client)
    await client.aclose()


def test_generate_format_and_hash() -> None:
    token, token_hash = generate()
    assert token.startswith(CONNECTION_TOKEN_PREFIX)
    assert len(token) == len(CONNECTION_TOKEN_PREFIX) + 43
    assert TOKEN_PATTERN.match(token)
    assert token_hash == hashlib.sha256(token.encode()).hexdigest() == hash_token(token)
    assert token[len(CONNECTION_TOKEN_PREFIX) :] not in token_hash


def test_generated_tokens_are_unique() -> None:
    assert len({generate()[0] for _ in range(1000)}) == 1000


def test_generated_tokens_are_redacted_in_logs() -> None:
    token, _ = generate()
    assert RedactingFilter().redact(f"issued {token}") == f"issued {CONNECTION_TOKEN_PREFIX}[REDACTED]"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "rct_",
        "rct_short",
        "xyz_" + "a" * 43,
        CONNECTION_TOKEN_PREFIX + "a" * 42,
        CONNECTION_TOKEN_PREFIX + "!" * 43,
    ],
)
async def test_malformed_tokens_are_refused_without_asking_redis(
    unreachable_store: ConnectionTokenStore, token: str
) -> None:
    with pytest.raises(Unauthorized) as caught:
        await unreachable_store.redeem(token)
    assert caught.value.code == TOKEN_INVALID
    assert caught.value.status_code == 401


@pytest.mark.parametrize(
    ("session_id", "payload", "ttl", "message"),
    [
        ("", {}, 60, "session_id"),
        ("s-1", {}, 0, "ttl"),
        ("s-1", {"session_id": "s-2"}, 60, "differs"),
    ],
)
async def test_issue_refuses_bad_arguments(
    unreachable_store: ConnectionTokenStore, session_id: str, payload: dict[str, str], ttl: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await unreachable_store.issue(session_id, payload, ttl)


async def test_redis_failure_is_backend_unavailable(unreachable_store: ConnectionTokenStore) -> None:
    with pytest.raises(BackendUnavailable):
        await unreachable_store.issue("s-1", {}, 60)
    with pytest.raises(BackendUnavailable):
        await unreachable_store.redeem(generate()[0])
