"""Tokens for the tests of ``security/jwt_auth.py``: the secret and audience they are signed for,
claims and signing, base64url pieces to craft a token by hand, and ``refused`` that checks a refusal."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest

from common.errors import Unauthorized
from security.jwt_auth import verify_token

# 64 characters: long enough for HS512 too, so PyJWT's short-key warning never fires.
SECRET = "unit-test-secret-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJK"
OTHER_SECRET = "another-secret-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLM"
AUDIENCE = "rdp-controller"
LEEWAY = 30


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {"sub": "alice", "roles": ["user"], "aud": AUDIENCE, "iat": now, "exp": now + 300}
    base.update(overrides)
    return {key: value for key, value in base.items() if value is not None}


def encode(payload: dict[str, Any], *, secret: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(payload, secret, algorithm=algorithm)


def verify(token: str, *, leeway: int = LEEWAY) -> Any:
    return verify_token(token, secret=SECRET, audience=AUDIENCE, leeway=leeway)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64json(obj: dict[str, Any]) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


def refused(token: str, *, leeway: int = LEEWAY) -> str:
    """The Unauthorized message for ``token``; also checks that it does not echo the token."""
    with pytest.raises(Unauthorized) as caught:
        verify(token, leeway=leeway)
    message = caught.value.message
    assert caught.value.status_code == 401
    assert caught.value.code == "UNAUTHORIZED"
    if token:
        assert token not in message
        for segment in token.split("."):
            if len(segment) >= 8:
                assert segment not in message
    return message
