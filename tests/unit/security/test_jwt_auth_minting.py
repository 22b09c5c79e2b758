"""mint_token: what it signs verifies to the principal asked for; bad arguments are refused."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from security.jwt_auth import decode_claims, mint_token
from security.principals import Role
from tests.unit.security.jwt_tokens import AUDIENCE, SECRET, refused, verify


def test_mint_round_trip() -> None:
    token = mint_token(
        secret=SECRET, subject="svc", roles=[Role.SERVICE, "operator"], audience=AUDIENCE, ttl_seconds=60
    )
    principal = verify(token)
    assert principal.subject == "svc"
    assert principal.roles == frozenset({Role.SERVICE, Role.OPERATOR})
    assert principal.token_id is not None
    decoded = decode_claims(token, secret=SECRET, audience=AUDIENCE, leeway=0)
    assert decoded["exp"] - decoded["iat"] == 60
    assert decoded["roles"] == ["operator", "service"]
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_mint_each_token_has_its_own_jti() -> None:
    kwargs: dict[str, Any] = {"secret": SECRET, "subject": "a", "roles": ["user"], "audience": AUDIENCE}
    first = verify(mint_token(**kwargs, ttl_seconds=60))
    second = verify(mint_token(**kwargs, ttl_seconds=60))
    assert first.token_id != second.token_id


def test_mint_not_before() -> None:
    later = datetime.now(UTC) + timedelta(minutes=10)
    token = mint_token(
        secret=SECRET, subject="a", roles=["user"], audience=AUDIENCE, ttl_seconds=3600, not_before=later
    )
    assert "not yet valid" in refused(token)
    epoch = mint_token(
        secret=SECRET,
        subject="a",
        roles=["user"],
        audience=AUDIENCE,
        ttl_seconds=60,
        not_before=time.time() - 5,
    )
    assert verify(epoch).subject == "a"


def test_mint_extra_claims_are_carried_and_ignored() -> None:
    token = mint_token(
        secret=SECRET, subject="a", roles=["user"], audience=AUDIENCE, ttl_seconds=60, extra={"tenant": "t-9"}
    )
    assert decode_claims(token, secret=SECRET, audience=AUDIENCE, leeway=0)["tenant"] == "t-9"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"secret": "short"}, "at least 32"),
        ({"roles": ["admin"]}, "unknown role"),
        ({"subject": " "}, "subject"),
        ({"ttl_seconds": 0}, "ttl_seconds"),
        ({"extra": {"sub": "mallory", "exp": 1}}, "exp, sub"),
    ],
)
def test_mint_refuses_bad_arguments(overrides: dict[str, Any], message: str) -> None:
    kwargs: dict[str, Any] = {
        "secret": SECRET,
        "subject": "a",
        "roles": ["user"],
        "audience": AUDIENCE,
        "ttl_seconds": 60,
        **overrides,
    }
    with pytest.raises(ValueError, match=message):
        mint_token(**kwargs)
