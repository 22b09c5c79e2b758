"""One-time connection tokens.

A connection token lets a client open one RDP connection for a session without presenting its
bearer JWT to the gateway. It is ``rct_`` + ``secrets.token_urlsafe(32)`` (256 random bits,
47 characters in all), valid for ``RDP_CONTROLLER_CONNECTION_TOKEN_TTL`` seconds, and works
**once**.

Redis holds only the token's SHA-256 (as part of the key), never the token itself, so a Redis
dump or ``MONITOR`` does not yield usable tokens. ``redeem`` uses ``GETDEL``, which reads and
deletes in one atomic command: of two concurrent redemptions exactly one succeeds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from redis.asyncio import Redis
from redis.exceptions import RedisError

from common.errors import BackendUnavailable, ErrorCode, Unauthorized
from security.redaction import CONNECTION_TOKEN_PREFIX

logger = logging.getLogger(__name__)

TOKEN_BYTES: Final = 32
TOKEN_INVALID: Final = ErrorCode.TOKEN_INVALID
"""The error code of ``Unauthorized`` raised for an unknown, expired or reused token."""
DEFAULT_KEY_PREFIX: Final = "lucid:conntoken:"
TOKEN_PATTERN: Final = re.compile(rf"^{re.escape(CONNECTION_TOKEN_PREFIX)}[A-Za-z0-9_\-]{{43}}$")
_INVALID_MESSAGE: Final = "connection token is invalid, expired or already used"


def hash_token(token: str) -> str:
    """The SHA-256 hex digest of ``token`` (what Redis stores)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def generate() -> tuple[str, str]:
    """A new token and its SHA-256 hex hash: ``("rct_...", "9f86d0...")``."""
    token = CONNECTION_TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
    return token, hash_token(token)


def _text(value: str | bytes) -> str:
    """A Redis reply as text, whether the client decodes replies or not."""
    return value.decode() if isinstance(value, bytes) else value


def _invalid() -> Unauthorized:
    return Unauthorized(_INVALID_MESSAGE, code=TOKEN_INVALID)


class ConnectionTokenStore:
    """Issues and redeems one-time connection tokens in Redis.

    ``issue`` stores ``{"session_id": ..., "payload": {...}}`` as JSON under
    ``<key_prefix><sha256(token)>`` with a TTL. ``redeem`` returns the payload with
    ``session_id`` added, and deletes the entry in the same command. Redis failures raise
    ``BackendUnavailable``.
    """

    def __init__(self, redis: Redis, *, key_prefix: str = DEFAULT_KEY_PREFIX) -> None:
        self._redis = redis
        self._key_prefix = key_prefix

    def key_for_hash(self, token_hash: str) -> str:
        return f"{self._key_prefix}{token_hash}"

    def _session_key(self, session_id: str) -> str:
        # The hashes of a session's outstanding tokens, so that ``revoke_session`` finds them.
        return f"{self._key_prefix}session:{session_id}"

    async def issue(self, session_id: str, payload: Mapping[str, Any], ttl: int) -> tuple[str, datetime]:
        """Create a token for ``session_id``; returns the token and when it expires (UTC).

        ``payload`` must be JSON-serialisable; a ``session_id`` key in it, if any, must equal
        ``session_id``. The token is returned to the caller only - it is not stored.
        """
        if not session_id:
            raise ValueError("session_id must not be empty")
        if ttl < 1:
            raise ValueError("ttl must be at least 1 second")
        if payload.get("session_id", session_id) != session_id:
            raise ValueError("payload['session_id'] differs from session_id")
        token, token_hash = generate()
        expires_at = datetime.now(UTC) + timedelta(seconds=ttl)
        record = json.dumps({"session_id": session_id, "payload": dict(payload)}, separators=(",", ":"))
        try:
            stored = await self._redis.set(self.key_for_hash(token_hash), record, ex=ttl, nx=True)
            if stored:
                async with self._redis.pipeline(transaction=True) as pipe:
                    pipe.sadd(self._session_key(session_id), token_hash)
                    pipe.expire(self._session_key(session_id), ttl, gt=True)
                    pipe.expire(self._session_key(session_id), ttl, nx=True)
                    await pipe.execute()
        except RedisError as exc:
            raise BackendUnavailable(f"connection token store unavailable ({type(exc).__name__})") from exc
        if not stored:  # 256 random bits: a collision means something is badly wrong
            raise RuntimeError("connection token collision: refusing to overwrite an existing token")
        return token, expires_at

    async def redeem(self, token: str) -> dict[str, Any]:
        """Consume ``token`` and return its payload (with ``session_id``); it never works twice.

        Unknown, malformed, expired and already-used tokens all raise
        ``Unauthorized(code="TOKEN_INVALID")`` with the same message, so a caller learns nothing
        about which case it hit.
        """
        if not isinstance(token, str) or TOKEN_PATTERN.match(token) is None:
            raise _invalid()
        token_hash = hash_token(token)
        try:
            raw = await self._redis.getdel(self.key_for_hash(token_hash))
        except RedisError as exc:
            raise BackendUnavailable(f"connection token store unavailable ({type(exc).__name__})") from exc
        if raw is None:
            raise _invalid()
        try:
            record = json.loads(raw)
            payload = dict(record["payload"])
            session_id = record["session_id"]
        except (ValueError, TypeError, KeyError) as exc:
            logger.error("connection token record %s… is corrupt (%s)", token_hash[:12], type(exc).__name__)
            raise _invalid() from exc
        payload["session_id"] = session_id
        return payload

    async def revoke_session(self, session_id: str) -> int:
        """Invalidate every outstanding token of ``session_id``; returns how many were still valid."""
        try:
            hashes = await self._redis.smembers(self._session_key(session_id))
            keys = [self.key_for_hash(_text(token_hash)) for token_hash in hashes]
            if not keys:
                return 0
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(*keys)
                pipe.delete(self._session_key(session_id))
                deleted, _ = await pipe.execute()
        except RedisError as exc:
            raise BackendUnavailable(f"connection token store unavailable ({type(exc).__name__})") from exc
        return int(deleted)
